//! The `loop` directive: at start, each block that forwards sends itself a query for
//! `HINFO <random>.<random>.<zone>`. If the forward path leads back to us, we see
//! that name again and again; more than twice means a forwarding loop, and the
//! process exits with a clear message instead of amplifying every query (CoreDNS's
//! behaviour, see SIGHTINGS_MAX). Only HINFO queries consult the probe list, so the hot path never does.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::Duration;

use super::flow::{Flow, Request};
use crate::config::ServerBlock;
use crate::wire;

/// The plugin: looks for the block's probes among the HINFO queries, passes all on.
pub struct Loop;

impl Loop {
    pub fn new(block: &ServerBlock) -> Option<Loop> {
        block.loop_detect.then_some(Loop)
    }

    #[inline]
    pub fn serve(&self, req: &Request<'_>) -> Flow {
        if req.query.qtype == HINFO {
            check(req.query.qname);
        }
        Flow::Next
    }
}

/// Query type HINFO.
pub const HINFO: u16 = 13;
/// Sightings of a probe name that mean a loop. CoreDNS waits for more than 2, but
/// here a looping copy joins the identical upstream query already in flight on its
/// shard (coalescing), so a loop may show the name only twice: our probe, and its
/// return. Any return is a loop.
const SIGHTINGS_MAX: u32 = 1;

struct Probe {
    /// Lower-cased wire form of the probe name.
    name: Vec<u8>,
    zone: String,
    /// Where the probe was sent, for the message.
    target: SocketAddr,
    seen: AtomicU32,
}

fn probes() -> &'static RwLock<Vec<Probe>> {
    static PROBES: OnceLock<RwLock<Vec<Probe>>> = OnceLock::new();
    PROBES.get_or_init(|| RwLock::new(Vec::new()))
}

/// Called for every HINFO query: counts sightings of a probe name and ends the
/// process once a loop is certain.
pub fn check(qname: &[u8]) {
    let Ok(probes) = probes().read() else {
        return;
    };
    for probe in probes.iter() {
        if wire::name::eq_ignore_case(qname, &probe.name) {
            let seen = probe.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if seen > SIGHTINGS_MAX {
                tracing::error!(
                    zone = %probe.zone,
                    "Loop ({} -> forward) detected for zone {:?}: the query for {} came back {seen} times; \
                     the upstream forwards to this cache (see the loop plugin's troubleshooting)",
                    probe.target,
                    probe.zone,
                    wire::name_to_string(&probe.name)
                );
                std::process::exit(1);
            }
        }
    }
}

/// Sends one probe for `zone` to `target` from a helper thread (bounded: one query,
/// a 2 s wait for its answer).
pub fn probe(zone: &str, target: SocketAddr) {
    let label = |n: u64| format!("{n:016x}");
    let name = format!(
        "{}.{}.{}",
        label(rand::random()),
        label(rand::random()),
        zone.trim_start_matches('.')
    );
    let Some(wire_name) = wire::name::zone_to_wire(&name) else {
        return;
    };
    let query = wire::simple_query(rand::random(), &wire_name, HINFO, true);
    if let Ok(mut list) = probes().write() {
        list.push(Probe {
            name: wire_name,
            zone: zone.to_string(),
            target,
            seen: AtomicU32::new(0),
        });
    }
    let spawned = std::thread::Builder::new()
        .name("loop-probe".into())
        .spawn(move || {
            let local: SocketAddr = if target.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(socket) = UdpSocket::bind(local) else {
                return;
            };
            let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
            if socket.send_to(&query, target).is_ok() {
                let mut answer = [0u8; 512];
                let _ = socket.recv_from(&mut answer);
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(%err, "could not start the loop probe");
    }
}
