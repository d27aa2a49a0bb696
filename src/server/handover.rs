//! Zero-loss hand-over of the SO_REUSEPORT sockets to a successor process.
//!
//! Closing a reuseport UDP socket loses the datagrams queued in it, and until it is
//! closed the kernel keeps hashing new datagrams to it. So a stopping shard first
//! takes its sockets out of the kernel's selection and only then drains them:
//!
//! 1. [`leave`]: `connect()` each UDP socket to the discard port on loopback. The
//!    kernel's reuseport selection skips connected sockets
//!    (`reuseport_select_sock_by_hash`), and a wildcard socket is re-hashed out of its
//!    group; a connected socket only matches datagrams from its peer, which never
//!    sends. New queries therefore go to the successor's sockets in the same group;
//!    already queued ones stay readable. Answers still go out: `sendmsg` with an
//!    explicit address works on a connected UDP socket. `--reuseport-cpu` steers
//!    with SO_INCOMING_CPU, which that same selection honours (`listen.rs`).
//!    The caller closes the TCP listeners of those endpoints at the same time (new
//!    connections went to the successor since it started, and queued ones migrate to
//!    it: `migrate.rs`); connected clients are still served.
//! 2. [`drain`]: keep the socket loops running until, on **every** shard at once, the
//!    receive queues are empty and no query is in flight (a few quiet polls), bounded
//!    by [`limits::HANDOVER_DRAIN_MILLIS_MAX`] (with a successor, which needs no
//!    teardown first, [`limits::HANDOVER_DRAIN_SUCCESSOR_MILLIS_MAX`]: a miss whose
//!    upstream datagram was lost is then retried and answered). Every shard, not only this one: a miss
//!    may be waiting for the shard that owns its key (`owner.rs`), and a shard that
//!    left early would drop that request with its tasks.
//! 3. Close.
//!
//! Step 1 happens only for an endpoint where a successor has a socket (another
//! process's socket bound to the same address and port, read from
//! `/proc/net/udp{,6}`): without one, leaving the group would turn the queries that
//! arrive while the node still routes to us into ICMP errors, so the sockets keep
//! serving while they drain (a plain restart, or the last instance stopping).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use crate::limits;

/// Polls with every shard quiet before the sockets close.
const QUIET_POLLS: u32 = 3;
const POLL_MILLIS: u64 = 10;

/// Which shards of the process have nothing queued or in flight, as each last saw
/// itself: the only state the shards share while stopping (never on the packet path).
pub struct Quiet {
    shards: Vec<AtomicBool>,
}

impl Quiet {
    pub fn new(shards: usize) -> Arc<Quiet> {
        Arc::new(Quiet {
            shards: (0..shards).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    fn all(&self) -> bool {
        self.shards.iter().all(|s| s.load(Ordering::Acquire))
    }
}

/// One shard's place in [`Quiet`].
pub struct Member {
    pub quiet: Arc<Quiet>,
    pub index: usize,
}

impl Member {
    fn set(&self, quiet: bool) {
        if let Some(flag) = self.quiet.shards.get(self.index) {
            flag.store(quiet, Ordering::Release);
        }
    }
}

/// Takes the UDP sockets `fds` whose endpoint has a successor out of the reuseport
/// group; returns those endpoints.
pub fn leave(fds: &[(RawFd, SocketAddr)]) -> Vec<SocketAddr> {
    let ours = own_socket_inodes();
    let mut left = Vec::new();
    tracing::debug!(sockets = fds.len(), "stopping: looking for a successor");
    for &(fd, addr) in fds
        .iter()
        .filter(|(_, addr)| successor_present(*addr, &ours))
    {
        match leave_group(fd, addr) {
            Ok(()) => {
                tracing::info!(%addr, "a successor holds the port: left the reuseport group");
                left.push(addr)
            }
            Err(err) => {
                tracing::warn!(%addr, %err, "cannot take the UDP socket out of the reuseport group")
            }
        }
    }
    left
}

/// Waits until the UDP sockets `fds` hold nothing and `busy` (this shard's queries in
/// flight, described) is None on every shard at once, or the drain bound passes (a
/// longer one when `handed_over`: a successor serves, nothing else waits for us).
pub async fn drain(
    member: &Member,
    fds: &[(RawFd, SocketAddr)],
    handed_over: bool,
    busy: impl Fn() -> Option<String>,
) {
    let started = Instant::now();
    let bound = Duration::from_millis(if handed_over {
        limits::HANDOVER_DRAIN_SUCCESSOR_MILLIS_MAX
    } else {
        limits::HANDOVER_DRAIN_MILLIS_MAX
    });
    let mut quiet = 0;
    let (mut queued, mut working) = (0, None);
    while quiet < QUIET_POLLS && started.elapsed() < bound {
        crate::engine::sleep(Duration::from_millis(POLL_MILLIS)).await;
        queued = fds.iter().map(|&(fd, _)| queued_bytes(fd)).sum::<usize>();
        working = busy();
        member.set(queued == 0 && working.is_none());
        quiet = if member.quiet.all() { quiet + 1 } else { 0 };
    }
    let elapsed_ms = started.elapsed().as_millis() as u64;
    if quiet >= QUIET_POLLS {
        tracing::debug!(elapsed_ms, "UDP sockets drained");
    } else {
        let working = working.unwrap_or_else(|| "another shard".into());
        tracing::warn!(
            elapsed_ms,
            queued_bytes = queued,
            %working,
            "stopping with queries still queued or in flight (drain bound reached)"
        );
    }
}

/// A reload removed `addr`: takes its UDP socket out of service (connected to the
/// discard port, so no new datagram reaches it) and waits until the UDP loop has read
/// the datagrams already queued, at most [`limits::RELOAD_DRAIN_MILLIS_MAX`]. Their
/// answers still leave: the socket closes only after the loop and every miss task let
/// go of it.
pub async fn drain_removed(fd: RawFd, addr: SocketAddr) {
    if let Err(err) = leave_group(fd, addr) {
        tracing::debug!(%addr, %err, "removed address: cannot stop new datagrams while draining");
    }
    let started = Instant::now();
    let bound = Duration::from_millis(limits::RELOAD_DRAIN_MILLIS_MAX);
    while queued_bytes(fd) > 0 && started.elapsed() < bound {
        crate::engine::sleep(Duration::from_millis(1)).await;
    }
    if queued_bytes(fd) > 0 {
        tracing::warn!(%addr, "removed address: closing with datagrams still queued (drain bound reached)");
    }
}

/// `connect()` to the discard port of the loopback of the socket's family.
pub(super) fn leave_group(fd: RawFd, addr: SocketAddr) -> std::io::Result<()> {
    let peer: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 9).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 9).into(),
    };
    let peer = SockAddr::from(peer);
    // SAFETY: `fd` is an open socket of this shard; the address outlives the call.
    let rc = unsafe { libc::connect(fd, peer.as_ptr().cast(), peer.len()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Bytes waiting in the socket's receive queue (SIOCINQ); 0 on error.
pub(super) fn queued_bytes(fd: RawFd) -> usize {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut bytes) };
    if rc == 0 {
        usize::try_from(bytes).unwrap_or(0)
    } else {
        0
    }
}

/// True when another process has a UDP socket on one of `addrs`.
pub fn successor_on_any(addrs: &[SocketAddr]) -> bool {
    let ours = own_socket_inodes();
    addrs.iter().any(|&addr| successor_present(addr, &ours))
}

/// Inodes of this process's sockets (from the `socket:[N]` links in /proc/self/fd).
fn own_socket_inodes() -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// True when a UDP socket bound to `addr` belongs to another process.
fn successor_present(addr: SocketAddr, ours: &[u64]) -> bool {
    let table = if addr.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    let Ok(text) = std::fs::read_to_string(table) else {
        return false;
    };
    text.lines()
        .skip(1)
        .filter_map(parse_udp_line)
        .any(|(local, inode)| local == addr && inode != 0 && !ours.contains(&inode))
}

/// The local address and inode of one /proc/net/udp line (`sl local rem st ... inode`).
fn parse_udp_line(line: &str) -> Option<(SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (ip_hex, port_hex) = fields.get(1)?.split_once(':')?;
    let inode = fields.get(9)?.parse().ok()?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    // The kernel prints the address as 32-bit words in host byte order.
    let mut bytes = Vec::with_capacity(16);
    for i in (0..ip_hex.len()).step_by(8) {
        let word = u32::from_str_radix(ip_hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip: std::net::IpAddr = match bytes.len() {
        4 => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into(),
        16 => Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?).into(),
        _ => return None,
    };
    Some((SocketAddr::new(ip, port), inode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{self, Engine};
    use std::os::fd::AsRawFd;

    #[test]
    fn reads_proc_net_udp_lines() {
        let v4 = "  12: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 0";
        let v6 = "  3: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_udp_line(v4),
                Some(("127.0.0.1:53".parse().unwrap(), 12345))
            );
            assert_eq!(parse_udp_line(v6), Some(("[::1]:53".parse().unwrap(), 777)));
        }
        assert_eq!(parse_udp_line("garbage"), None);
    }

    #[test]
    fn a_socket_of_another_process_is_a_successor_ours_is_not() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        assert!(
            !successor_present(addr, &own_socket_inodes()),
            "our own socket"
        );
        assert!(successor_present(addr, &[]), "seen as another process's");
    }

    #[test]
    fn a_removed_address_is_drained_and_takes_no_new_datagrams() {
        for engine in [Engine::IoUring, Engine::Epoll] {
            let read = drained_on(engine);
            assert_eq!(
                read,
                [0, 1, 2, 3, 4],
                "{engine:?}: every queued datagram read, nothing new"
            );
        }
    }

    /// Five datagrams queued, then a drain on a shard of `engine` while a slow task
    /// reads them; what the reader got.
    fn drained_on(engine: Engine) -> Vec<u8> {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        server.set_nonblocking(true).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            client.send_to(&[i], addr).unwrap();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let spec = engine::ShardSpec {
            index: 0,
            core: None,
            io_memory_bytes: 1 << 20,
        };
        let shard = engine::spawn_shard(engine, spec, move || async move {
            let fd = server.as_raw_fd();
            // A slow reader, as a busy UDP loop would be: one datagram per
            // millisecond, so the drain must wait ~5 ms (50× inside its bound).
            let reader = engine::spawn_local(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 8];
                let started = Instant::now();
                while started.elapsed() < Duration::from_millis(400) {
                    engine::sleep(Duration::from_millis(1)).await;
                    if let Ok(n) = server.recv(&mut buf) {
                        got.extend_from_slice(&buf[..n]);
                    }
                }
                got
            });
            engine::sleep(Duration::from_millis(1)).await;
            drain_removed(fd, addr).await;
            assert_eq!(queued_bytes(fd), 0, "drained before returning");
            // Sent after the drain began: refused, never queued.
            let _ = client.send_to(&[99], addr);
            let _ = tx.send(reader.await);
        })
        .unwrap();
        shard.join().unwrap();
        rx.recv().unwrap()
    }
}
