//! Replay input (`--replay FILE`): the DNS queries of a packet capture (pcap or
//! pcapng, read with `pcap-file`, packets taken apart with `etherparse`, messages
//! checked with `hickory-proto`) or of a text query log, each with its time and
//! its original client, turned into a [`Trace`]: the distinct queries encoded
//! once, and one event per query (when, relative to the first, and which client).
//!
//! Each distinct client (source address and port, or the log's client field) gets
//! its own socket, in order of first appearance, as DNS Shotgun does. Nothing here
//! sends; the loop that does is [`crate::replayer`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use hickory_proto::op::{Message, MessageType, OpCode};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use thiserror::Error;

use crate::limits::EDNS_UDP_PAYLOAD_BYTES_DEFAULT;
use crate::limits::{QUERY_LINE_BYTES_MAX, REPLAY_CLIENTS_MAX, REPLAY_QUERIES_MAX};
use crate::queries::{self, QuerySet};
use crate::wire::QueryOptions;

/// Why a replay input cannot be used. Every variant names the file.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A capture whose header or a packet record does not parse (also a file cut
    /// off in the middle of a record).
    #[error("{path}: not a readable {format} capture after {packets} packets: {reason}")]
    Capture {
        path: PathBuf,
        format: &'static str,
        packets: u64,
        reason: String,
    },
    /// A capture of a link type other than Ethernet, Linux cooked, raw IP or loopback.
    #[error("{path}: link type {link} is not supported (Ethernet, Linux cooked (SLL), raw IP, BSD loopback are)")]
    LinkType { path: PathBuf, link: String },
    /// A line of a text query log is malformed.
    #[error("{path}:{line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// Nothing to replay.
    #[error("{path}: no DNS queries to UDP port {port} in it")]
    Empty { path: PathBuf, port: u16 },
    /// More queries than one run holds.
    #[error("{path}: more than {REPLAY_QUERIES_MAX} queries")]
    TooManyQueries { path: PathBuf },
    /// More clients than sockets.
    #[error("{path}: {clients} clients; at most {max} sockets ({REPLAY_CLIENTS_MAX} per thread): add threads (-T)")]
    TooManyClients {
        path: PathBuf,
        clients: usize,
        max: usize,
    },
}

/// One query to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds after the first query, as captured (not yet scaled).
    pub at_ns: u64,
    /// Client index (one socket each).
    pub client: u32,
    /// Index into [`Trace::queries`].
    pub query: u32,
}

/// A replay input, ready to send.
#[derive(Debug, Default)]
pub struct Trace {
    /// Distinct queries, encoded with ID 0.
    pub queries: QuerySet,
    /// Every query in file order, times never decreasing.
    pub events: Vec<Event>,
    /// Clients in order of first appearance (their original address or name).
    pub clients: Vec<String>,
    /// Packets or lines that were not queries to the port (answers, other traffic,
    /// messages that do not parse), skipped.
    pub skipped: u64,
}

/// What is read from a file: where it is, which port the original server had.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplaySpec {
    /// The file.
    pub path: PathBuf,
    /// Queries to this UDP port are replayed (captures only).
    pub port: u16,
    /// Time scale: 2 replays twice as fast.
    pub speed: f64,
}

/// Accumulates events while a file is read.
struct Builder {
    trace: Trace,
    path: PathBuf,
    /// Time of the first query, ns since the capture's epoch.
    first_ns: Option<u128>,
    /// Latest relative time so far (events never go back in time).
    last_ns: u64,
    /// Client key → index.
    clients: HashMap<String, u32>,
    /// (name, type, options) → query index.
    seen: HashMap<(String, u16, bool, bool, u16, bool), u32>,
    /// Sockets available.
    clients_max: usize,
}

impl Builder {
    fn new(path: &Path, clients_max: usize) -> Self {
        Self {
            trace: Trace::default(),
            path: path.into(),
            first_ns: None,
            last_ns: 0,
            clients: HashMap::new(),
            seen: HashMap::new(),
            clients_max,
        }
    }

    /// Adds one query asked by `client` at `time_ns`.
    fn add(
        &mut self,
        time_ns: u128,
        client: &str,
        name: &str,
        qtype: u16,
        opts: &QueryOptions,
    ) -> Result<(), ReplayError> {
        if self.trace.events.len() >= REPLAY_QUERIES_MAX {
            return Err(ReplayError::TooManyQueries {
                path: self.path.clone(),
            });
        }
        let first = *self.first_ns.get_or_insert(time_ns);
        let at = u64::try_from(time_ns.saturating_sub(first)).unwrap_or(u64::MAX);
        self.last_ns = self.last_ns.max(at);
        let client = match self.clients.get(client) {
            Some(index) => *index,
            None => {
                let index = self.clients.len() as u32;
                self.clients.insert(client.to_owned(), index);
                self.trace.clients.push(client.to_owned());
                index
            }
        };
        if self.clients.len() > self.clients_max {
            return Err(ReplayError::TooManyClients {
                path: self.path.clone(),
                clients: self.clients.len(),
                max: self.clients_max,
            });
        }
        let key = (
            name.to_ascii_lowercase(),
            qtype,
            opts.recursion_desired,
            opts.edns,
            opts.edns_udp_bytes,
            opts.dnssec_ok,
        );
        let query =
            match self.seen.get(&key) {
                Some(q) => *q,
                None => {
                    let q = self.trace.queries.add(name, qtype, opts).map_err(|e| {
                        ReplayError::Line {
                            path: self.path.clone(),
                            line: self.trace.events.len() + 1,
                            reason: e.to_string(),
                        }
                    })?;
                    self.seen.insert(key, q);
                    q
                }
            };
        self.trace.events.push(Event {
            at_ns: self.last_ns,
            client,
            query,
        });
        Ok(())
    }

    fn finish(self, port: u16) -> Result<Trace, ReplayError> {
        if self.trace.events.is_empty() {
            return Err(ReplayError::Empty {
                path: self.path,
                port,
            });
        }
        Ok(self.trace)
    }
}

/// Reads `spec.path`: pcap, pcapng (by their magic numbers) or a text query log.
/// `clients_max` is the number of sockets the run may open.
pub fn read(spec: &ReplaySpec, clients_max: usize) -> Result<Trace, ReplayError> {
    let path = &spec.path;
    let read_err = |source| ReplayError::Read {
        path: path.clone(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut file, &mut magic).map_err(read_err)?;
    let file = File::open(path).map_err(read_err)?;
    let mut b = Builder::new(path, clients_max);
    match (got, magic) {
        (4, [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4])
        | (4, [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d]) => {
            read_pcap(file, spec.port, &mut b)?
        }
        (4, [0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(file, spec.port, &mut b)?,
        _ => read_log(file, &mut b)?,
    }
    b.finish(spec.port)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn capture_err(b: &Builder, format: &'static str, packets: u64, reason: String) -> ReplayError {
    ReplayError::Capture {
        path: b.path.clone(),
        format,
        packets,
        reason,
    }
}

fn read_pcap(file: File, port: u16, b: &mut Builder) -> Result<(), ReplayError> {
    let mut reader = PcapReader::new(BufReader::new(file))
        .map_err(|e| capture_err(b, "pcap", 0, e.to_string()))?;
    let link = reader.header().datalink;
    check_link(link, b)?;
    let mut packets = 0;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(|e| capture_err(b, "pcap", packets, e.to_string()))?;
        packets += 1;
        take_packet(link, packet.timestamp.as_nanos(), &packet.data, port, b)?;
    }
    Ok(())
}

fn read_pcapng(file: File, port: u16, b: &mut Builder) -> Result<(), ReplayError> {
    let mut reader = PcapNgReader::new(BufReader::new(file))
        .map_err(|e| capture_err(b, "pcapng", 0, e.to_string()))?;
    let mut packets = 0;
    // (link type, if_tsresol) of each interface of the current section.
    let mut interfaces: Vec<(DataLink, u8)> = Vec::new();
    while let Some(block) = reader.next_block() {
        let block = block.map_err(|e| capture_err(b, "pcapng", packets, e.to_string()))?;
        let epb = match block {
            Block::SectionHeader(_) => {
                interfaces.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                // Timestamps count units of if_tsresol (microseconds unless given).
                let resolution = idb.options.iter().find_map(|o| match o {
                    InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                    _ => None,
                });
                interfaces.push((idb.linktype, resolution.unwrap_or(6)));
                continue;
            }
            Block::EnhancedPacket(epb) => epb,
            _ => continue,
        };
        packets += 1;
        let Some(&(link, resolution)) = interfaces.get(epb.interface_id as usize) else {
            let why = format!("packet on undeclared interface {}", epb.interface_id);
            return Err(capture_err(b, "pcapng", packets, why));
        };
        check_link(link, b)?;
        // pcap-file hands over the raw timestamp count as if it were nanoseconds.
        let ns = scale_timestamp(epb.timestamp.as_nanos(), resolution);
        take_packet(link, ns, &epb.data, port, b)?;
    }
    Ok(())
}

/// Converts a pcapng timestamp count in units of `resolution` (if_tsresol: a
/// power of ten, or of two with the top bit set) to nanoseconds.
fn scale_timestamp(count: u128, resolution: u8) -> u128 {
    let exp = u32::from(resolution & 0x7f);
    if resolution & 0x80 != 0 {
        return count.saturating_mul(1_000_000_000) >> exp.min(127);
    }
    match exp {
        0..=9 => count.saturating_mul(10u128.pow(9 - exp)),
        _ => count / 10u128.pow((exp - 9).min(30)),
    }
}

fn check_link(link: DataLink, b: &Builder) -> Result<(), ReplayError> {
    match link {
        DataLink::ETHERNET
        | DataLink::LINUX_SLL
        | DataLink::RAW
        | DataLink::IPV4
        | DataLink::IPV6
        | DataLink::NULL
        | DataLink::LOOP => Ok(()),
        other => Err(ReplayError::LinkType {
            path: b.path.clone(),
            link: format!("{other:?}"),
        }),
    }
}

/// Takes the query out of one captured frame, if it is one.
fn take_packet(
    link: DataLink,
    time_ns: u128,
    data: &[u8],
    port: u16,
    b: &mut Builder,
) -> Result<(), ReplayError> {
    let sliced = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data),
        DataLink::NULL | DataLink::LOOP => SlicedPacket::from_ip(data.get(4..).unwrap_or_default()),
        _ => SlicedPacket::from_ip(data),
    };
    let Some((client, payload)) = sliced.ok().and_then(|s| udp_query(&s, port)) else {
        b.trace.skipped += 1;
        return Ok(());
    };
    let Some((name, qtype, opts)) = parse_query(payload) else {
        b.trace.skipped += 1;
        return Ok(());
    };
    b.add(time_ns, &client, &name, qtype, &opts)
}

/// The client (source address:port) and payload of a UDP datagram to `port`.
fn udp_query<'a>(s: &SlicedPacket<'a>, port: u16) -> Option<(String, &'a [u8])> {
    let Some(TransportSlice::Udp(udp)) = &s.transport else {
        return None;
    };
    if udp.destination_port() != port {
        return None;
    }
    let source: IpAddr = match &s.net {
        Some(NetSlice::Ipv4(ip)) => ip.header().source_addr().into(),
        Some(NetSlice::Ipv6(ip)) => ip.header().source_addr().into(),
        _ => return None,
    };
    let client = std::net::SocketAddr::new(source, udp.source_port()).to_string();
    Some((client, udp.payload()))
}

/// A standard query with one question: its name, type and header options.
fn parse_query(payload: &[u8]) -> Option<(String, u16, QueryOptions)> {
    let msg = Message::from_vec(payload).ok()?;
    if msg.message_type() != MessageType::Query || msg.op_code() != OpCode::Query {
        return None;
    }
    let [q] = msg.queries() else {
        return None;
    };
    let edns = msg.extensions().as_ref();
    let opts = QueryOptions {
        edns: edns.is_some(),
        dnssec_ok: edns.is_some_and(|e| e.flags().dnssec_ok),
        edns_udp_bytes: edns.map_or(EDNS_UDP_PAYLOAD_BYTES_DEFAULT, |e| e.max_payload()),
        recursion_desired: msg.recursion_desired(),
    };
    Some((q.name().to_ascii(), u16::from(q.query_type()), opts))
}

/// A text query log: `SECONDS CLIENT NAME [TYPE]` per line (seconds as a decimal
/// number, any origin; the client any word, e.g. `10.0.0.7:41000`), `#`/`;`
/// comments and blank lines skipped. Queries are sent with RD set, no EDNS.
fn read_log(file: File, b: &mut Builder) -> Result<(), ReplayError> {
    let opts = QueryOptions::default();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        number += 1;
        let n = (&mut reader)
            .take(QUERY_LINE_BYTES_MAX as u64 + 1)
            .read_line(&mut line)
            .map_err(|e| log_err(b, number, format!("not a text query log ({e})")))?;
        if n == 0 {
            return Ok(());
        }
        if n > QUERY_LINE_BYTES_MAX {
            return Err(log_err(
                b,
                number,
                format!("longer than {QUERY_LINE_BYTES_MAX} bytes"),
            ));
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let mut fields = trimmed.splitn(3, char::is_whitespace);
        let (time, client, rest) = (fields.next(), fields.next(), fields.next());
        let (Some(time), Some(client), Some(rest)) = (time, client, rest) else {
            return Err(log_err(
                b,
                number,
                "expected SECONDS CLIENT NAME [TYPE]".into(),
            ));
        };
        let secs: f64 = time
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| {
                log_err(
                    b,
                    number,
                    format!("time {time:?} is not a number of seconds"),
                )
            })?;
        let Some((name, qtype)) = queries::parse_line(rest).map_err(|r| log_err(b, number, r))?
        else {
            return Err(log_err(
                b,
                number,
                "expected SECONDS CLIENT NAME [TYPE]".into(),
            ));
        };
        b.add((secs * 1e9) as u128, client, name, qtype, &opts)
            .map_err(|e| match e {
                ReplayError::Line { reason, .. } => log_err(b, number, reason),
                other => other,
            })?;
    }
}

fn log_err(b: &Builder, line: usize, reason: String) -> ReplayError {
    ReplayError::Line {
        path: b.path.clone(),
        line,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &Path) -> ReplaySpec {
        ReplaySpec {
            path: path.into(),
            port: 53,
            speed: 1.0,
        }
    }

    #[test]
    fn text_log_keeps_order_times_and_clients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.log");
        std::fs::write(
            &path,
            "# t client name type\n100.5 a www.example. A\n100.25 b www.example. AAAA\n\n101 a x.example\n",
        )
        .unwrap();
        let t = read(&spec(&path), 10).unwrap();
        let at: Vec<u64> = t.events.iter().map(|e| e.at_ns).collect();
        // The second line is earlier than the first: kept in order, not sent before it.
        assert_eq!(at, [0, 0, 500_000_000]);
        let clients: Vec<u32> = t.events.iter().map(|e| e.client).collect();
        assert_eq!(clients, [0, 1, 0]);
        assert_eq!(t.clients, ["a", "b"]);
        assert_eq!(t.queries.len(), 3);
        assert!(read(&spec(&path), 1)
            .unwrap_err()
            .to_string()
            .contains("2 clients"));
    }

    #[test]
    fn bad_logs_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, says) in [
            ("1 a\n", ":1: expected SECONDS CLIENT NAME"),
            ("soon a www.example A\n", ":1: time \"soon\""),
            ("1 a www.example BOGUS\n", ":1: unknown query type"),
            ("1 a a..b A\n", ":1: name \"a..b\": empty label"),
            ("# nothing\n", "no DNS queries"),
        ] {
            let path = dir.path().join("bad.log");
            std::fs::write(&path, text).unwrap();
            let err = read(&spec(&path), 10).unwrap_err().to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        let path = dir.path().join("binary.log");
        std::fs::write(&path, [0xff, 0xfe, 0, 1, 2, 3]).unwrap();
        let err = read(&spec(&path), 10).unwrap_err().to_string();
        assert!(err.contains("not a text query log"), "{err}");
    }

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(scale_timestamp(1_500_000, 6), 1_500_000_000);
        assert_eq!(scale_timestamp(7, 9), 7);
        assert_eq!(scale_timestamp(1 << 20, 0x80 | 20), 1_000_000_000);
    }
}
