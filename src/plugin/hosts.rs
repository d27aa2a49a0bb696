//! `hosts`: answers A, AAAA and PTR questions from a hosts(5) file and the entries
//! written inline in the Corefile, as CoreDNS's hosts plugin does (README.md in
//! `hosts/`). A name in the table gets its addresses (none of the asked family:
//! NODATA); a name not in it goes on down the chain if `fallthrough` covers it, and
//! is answered SERVFAIL otherwise (CoreDNS: there is no SOA to deny it with).
//!
//! Each shard keeps its own table (one chain per block per shard) and checks the
//! file every `reload` period, when a query comes or on the shard's once-a-second
//! sweep: a changed modification time or size re-reads it. A file
//! that cannot be read keeps the last good entries and counts an error.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Instant, SystemTime};

use super::flow::{Flow, Origin, Request};
use crate::config::{self, HostsConfig, HostsEntry, ServerBlock};
use crate::limits;
use crate::wire::{self, Rcode};

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;

/// What the entries answer: addresses by lower-cased wire name, names by address.
#[derive(Default)]
struct Table {
    v4: HashMap<Box<[u8]>, Vec<[u8; 4]>>,
    v6: HashMap<Box<[u8]>, Vec<[u8; 16]>>,
    ptr: HashMap<IpAddr, Vec<Box<[u8]>>>,
    /// (name, address) pairs, CoreDNS's `coredns_hosts_entries`.
    entries: usize,
}

impl Table {
    /// The file's entries first, then the inline ones (CoreDNS's lookup order).
    fn build(file: &[HostsEntry], inline: &[HostsEntry], reverse: bool) -> Table {
        let mut table = Table::default();
        for entry in file.iter().chain(inline) {
            for name in &entry.names {
                if let Some(wire_name) = wire::name::zone_to_wire(name) {
                    table.add(wire_name.into_boxed_slice(), entry.addr, reverse);
                }
            }
        }
        table
    }

    fn add(&mut self, name: Box<[u8]>, addr: IpAddr, reverse: bool) {
        let added = match addr {
            IpAddr::V4(ip) => push_new(self.v4.entry(name.clone()).or_default(), ip.octets()),
            IpAddr::V6(ip) => push_new(self.v6.entry(name.clone()).or_default(), ip.octets()),
        };
        if !added {
            return;
        }
        self.entries += 1;
        if reverse {
            push_new(self.ptr.entry(addr).or_default(), name);
        }
    }

    fn exists(&self, name: &[u8]) -> bool {
        self.v4.contains_key(name) || self.v6.contains_key(name)
    }
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, item: T) -> bool {
    if list.contains(&item) {
        return false;
    }
    list.push(item);
    true
}

/// What the file looked like when last read.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
}

pub struct Hosts {
    config: HostsConfig,
    zones: Vec<Vec<u8>>,
    /// None: no fallthrough; empty: every name.
    fallthrough: Option<Vec<Vec<u8>>>,
    table: RefCell<Table>,
    /// The file as last read (None: never read).
    stamp: Cell<Option<Stamp>>,
    next_check: Cell<Instant>,
    /// Failed reads of the file since start.
    errors: Cell<u64>,
    /// The file's modification time at the last read, in seconds since the epoch
    /// (CoreDNS's `coredns_hosts_reload_timestamp_seconds`).
    reloaded_at: Cell<f64>,
}

impl Hosts {
    pub fn new(block: &ServerBlock) -> Option<Hosts> {
        let config = block.hosts.clone()?;
        let wire_zones = |zones: &[config::Zone]| {
            zones
                .iter()
                .filter_map(|z| wire::name::zone_to_wire(&z.name))
                .collect::<Vec<_>>()
        };
        let hosts = Hosts {
            zones: wire_zones(&config.zones),
            fallthrough: config.fallthrough.as_deref().map(wire_zones),
            table: RefCell::new(Table::default()),
            stamp: Cell::new(None),
            next_check: Cell::new(Instant::now()),
            errors: Cell::new(0),
            reloaded_at: Cell::new(0.0),
            config,
        };
        hosts.load();
        Some(hosts)
    }

    /// Reads the file again if its period is over and it changed since the last read.
    pub fn refresh(&self, now: Instant) {
        let period = self.config.reload;
        if period.is_zero() || now < self.next_check.get() {
            return;
        }
        self.next_check.set(now + period);
        self.load();
    }

    /// Reads the file if it changed (or was never read); a failure keeps the table.
    fn load(&self) {
        let path = &self.config.path;
        let read = std::fs::metadata(path).and_then(|meta| {
            let stamp = Stamp {
                modified: meta.modified()?,
                len: meta.len(),
            };
            if self.stamp.get() == Some(stamp) {
                return Ok(None);
            }
            let text = config::read_text_bounded(path, limits::HOSTS_FILE_BYTES_MAX)?;
            Ok(Some((stamp, text)))
        });
        match read {
            Ok(None) => {}
            Ok(Some((stamp, text))) => {
                let (entries, _skipped) = config::parse_hosts_text(&text, &self.config.zones);
                let reverse = !self.config.no_reverse;
                *self.table.borrow_mut() = Table::build(&entries, &self.config.inline, reverse);
                self.stamp.set(Some(stamp));
                let since_epoch = stamp.modified.duration_since(SystemTime::UNIX_EPOCH);
                self.reloaded_at
                    .set(since_epoch.map_or(0.0, |d| d.as_secs_f64()));
            }
            Err(err) => {
                self.errors.set(self.errors.get() + 1);
                if self.stamp.get().is_none() && self.table.borrow().entries == 0 {
                    let reverse = !self.config.no_reverse;
                    *self.table.borrow_mut() = Table::build(&[], &self.config.inline, reverse);
                }
                tracing::warn!(path = %path.display(), %err, "hosts: cannot read the file, keeping the last entries");
            }
        }
    }

    /// The hosts file (the `hostsfile` label of `coredns_hosts_entries`).
    pub fn path(&self) -> &std::path::Path {
        &self.config.path
    }

    /// Entries, reload time (seconds since the epoch) and failed reads, for the metrics.
    pub fn stats(&self) -> (usize, f64, u64) {
        (
            self.table.borrow().entries,
            self.reloaded_at.get(),
            self.errors.get(),
        )
    }

    pub fn serve(&self, req: &Request<'_>, out: &mut [u8]) -> Flow {
        self.refresh(req.now);
        let q = req.query;
        let mut lower = [0u8; limits::NAME_BYTES_MAX];
        let Some(name) = wire::name::lowercase_into(q.qname, &mut lower) else {
            return Flow::Next;
        };
        let in_zone = self.zones.iter().any(|z| wire::name::in_zone(name, z));
        let table = self.table.borrow();
        if q.qtype == TYPE_PTR {
            return match reverse_addr(name).and_then(|a| table.ptr.get(&a)) {
                Some(names) => self.answer(q, names.iter().map(|n| (TYPE_PTR, &n[..])), out),
                None => Flow::Next,
            };
        }
        if !in_zone {
            return Flow::Next;
        }
        let answered = match q.qtype {
            TYPE_A => table
                .v4
                .get(name)
                .map(|ips| self.answer(q, ips.iter().map(|r| (TYPE_A, &r[..])), out)),
            TYPE_AAAA => table
                .v6
                .get(name)
                .map(|ips| self.answer(q, ips.iter().map(|r| (TYPE_AAAA, &r[..])), out)),
            _ => None,
        };
        if let Some(flow) = answered {
            return flow;
        }
        if table.exists(name) {
            // The name is ours, the type is not: NODATA.
            return self.answer(q, std::iter::empty(), out);
        }
        if self.falls_through(name) {
            return Flow::Next;
        }
        let len = wire::write_error_reply(q.packet, Rcode::ServFail, out);
        Flow::Answer(len, Origin::Hosts)
    }

    fn answer<'r>(
        &self,
        q: &wire::Query<'_>,
        records: impl Iterator<Item = (u16, &'r [u8])>,
        out: &mut [u8],
    ) -> Flow {
        let len = wire::write_local_answer(q, self.config.ttl, records, out);
        Flow::Answer(len, Origin::Hosts)
    }

    fn falls_through(&self, name: &[u8]) -> bool {
        self.fallthrough.as_ref().is_some_and(|zones| {
            zones.is_empty() || zones.iter().any(|z| wire::name::in_zone(name, z))
        })
    }
}

/// The address of a reverse name (lower-cased wire form): `4.3.2.1.in-addr.arpa.`
/// or the 32 nibbles of `....ip6.arpa.`; None for anything else.
fn reverse_addr(name: &[u8]) -> Option<IpAddr> {
    let mut labels: Vec<&[u8]> = Vec::with_capacity(36);
    let mut at = 0usize;
    while let Some(&len) = name.get(at) {
        if len == 0 {
            break;
        }
        labels.push(name.get(at + 1..at + 1 + usize::from(len))?);
        at += 1 + usize::from(len);
    }
    match labels.as_slice() {
        [a, b, c, d, b"in-addr", b"arpa"] => {
            let mut octets = [0u8; 4];
            for (slot, label) in octets.iter_mut().zip([d, c, b, a]) {
                if label.len() > 1 && label[0] == b'0' {
                    return None;
                }
                *slot = std::str::from_utf8(label).ok()?.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(octets)))
        }
        [nibbles @ .., b"ip6", b"arpa"] if nibbles.len() == 32 => {
            let mut bits = 0u128;
            for label in nibbles.iter().rev() {
                let [digit] = label else { return None };
                bits = bits << 4 | u128::from((*digit as char).to_digit(16)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bits)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_name(text: &str) -> Vec<u8> {
        wire::name::zone_to_wire(text).expect("name")
    }

    #[test]
    fn reverse_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1.0.0.10.in-addr.arpa.", Some("10.0.0.1")),
            ("255.2.168.192.in-addr.arpa.", Some("192.168.2.255")),
            ("1.0.0.in-addr.arpa.", None),
            ("256.0.0.10.in-addr.arpa.", None),
            ("01.0.0.10.in-addr.arpa.", None),
            (
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
                Some("2001:db8::1"),
            ),
            ("1.0.ip6.arpa.", None),
            ("example.org.", None),
        ];
        for (name, want) in cases {
            let got = reverse_addr(&wire_name(name)).map(|a| a.to_string());
            assert_eq!(got.as_deref(), *want, "{name}");
        }
    }

    #[test]
    fn table_order_dedup_and_count() {
        let entry = |addr: &str, names: &[&str]| HostsEntry {
            addr: addr.parse().unwrap(),
            names: names.iter().map(|n| n.to_string()).collect(),
        };
        let file = [
            entry("10.0.0.1", &["a.example.", "b.example."]),
            entry("10.0.0.1", &["a.example."]),
            entry("fd00::1", &["a.example."]),
        ];
        let inline = [entry("10.0.0.2", &["a.example."])];
        let table = Table::build(&file, &inline, true);
        assert_eq!(table.entries, 4);
        let a = wire_name("a.example.");
        assert_eq!(
            table.v4.get(&a[..]).unwrap(),
            &[[10, 0, 0, 1], [10, 0, 0, 2]]
        );
        assert_eq!(table.ptr[&"10.0.0.1".parse::<IpAddr>().unwrap()].len(), 2);
        assert!(Table::build(&file, &inline, false).ptr.is_empty());
    }
}
