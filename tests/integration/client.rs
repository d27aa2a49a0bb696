//! A small DNS client over std sockets: hickory-proto builds and parses the messages,
//! every read has a timeout so no test can hang.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

/// Read timeout of a single exchange.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A fresh, hard-to-guess-enough query ID.
pub fn next_id() -> u16 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed =
        nanos ^ std::process::id().rotate_left(16) ^ COUNTER.fetch_add(0x9e37, Ordering::Relaxed);
    (mixed ^ (mixed >> 16)) as u16
}

/// An IN query for `name`/`rtype` with RD set and no EDNS.
pub fn query(name: &str, rtype: RecordType) -> Message {
    query_class(name, rtype, DNSClass::IN)
}

pub fn query_class(name: &str, rtype: RecordType, class: DNSClass) -> Message {
    let mut q = Query::query(Name::from_ascii(name).expect("valid test name"), rtype);
    q.set_query_class(class);
    let mut msg = Message::new();
    msg.set_id(next_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(q);
    msg
}

/// `msg` with an OPT record advertising `payload` bytes and the DO bit `dnssec_ok`.
pub fn with_edns(mut msg: Message, payload: u16, dnssec_ok: bool) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload)
        .set_version(0)
        .set_dnssec_ok(dnssec_ok);
    msg.set_edns(edns);
    msg
}

pub fn encode(msg: &Message) -> Vec<u8> {
    msg.to_vec().expect("encoding a test query")
}

pub fn decode(bytes: &[u8]) -> Message {
    Message::from_vec(bytes).unwrap_or_else(|e| panic!("undecodable reply ({e}): {bytes:02x?}"))
}

/// Sends raw bytes over UDP and returns the first datagram back from `addr`, or None
/// on timeout.
///
/// Datagrams from any other address are skipped, as a stub resolver does: the
/// suite runs many servers at once, and a late answer one of them sends to a client
/// port that has since closed reaches whichever test's socket took the port next.
pub fn udp_raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let local = if addr.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let sock = UdpSocket::bind(local).expect("binding client socket");
    sock.send_to(bytes, addr).expect("send_to");
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(left)).expect("read timeout");
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == addr => return Some(buf[..n].to_vec()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("recv_from {addr}: {e}"),
        }
    }
}

/// One UDP exchange; None on timeout. The reply must carry the query's ID.
pub fn udp_try(addr: SocketAddr, msg: &Message, timeout: Duration) -> Option<Message> {
    let reply = decode(&udp_raw(addr, &encode(msg), timeout)?);
    assert_eq!(reply.id(), msg.id(), "reply ID differs from query ID");
    Some(reply)
}

/// One UDP exchange that must be answered within [`TIMEOUT`].
pub fn udp(addr: SocketAddr, msg: &Message) -> Message {
    udp_try(addr, msg, TIMEOUT)
        .unwrap_or_else(|| panic!("no UDP answer from {addr} to {}", describe(msg)))
}

/// Connects with a read timeout of [`TIMEOUT`].
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Writes one length-prefixed message.
pub fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(bytes);
    stream.write_all(&frame).expect("writing a TCP frame");
}

/// Reads one length-prefixed message.
pub fn tcp_recv(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

/// One exchange on a fresh TCP connection.
pub fn tcp(addr: SocketAddr, msg: &Message) -> Message {
    let mut stream = tcp_connect(addr);
    tcp_send(&mut stream, &encode(msg));
    let bytes = tcp_recv(&mut stream)
        .unwrap_or_else(|e| panic!("no TCP answer from {addr} to {}: {e}", describe(msg)));
    let reply = decode(&bytes);
    assert_eq!(reply.id(), msg.id(), "reply ID differs from query ID");
    reply
}

/// `name class type rdata` of each record, sorted: comparable regardless of TTL,
/// order and owner-name case.
pub fn records(records: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| {
            format!(
                "{} {} {} {}",
                r.name().to_lowercase(),
                r.dns_class(),
                r.record_type(),
                r.data()
            )
        })
        .collect();
    out.sort();
    out
}

/// TTLs of the answer section.
pub fn answer_ttls(msg: &Message) -> Vec<u32> {
    msg.answers().iter().map(Record::ttl).collect()
}

pub fn describe(msg: &Message) -> String {
    match msg.query() {
        Some(q) => format!(
            "{} {} {} (id {})",
            q.name(),
            q.query_class(),
            q.query_type(),
            msg.id()
        ),
        None => format!("<no question> (id {})", msg.id()),
    }
}

/// Whether the peer closed `stream` (EOF or reset) within its read timeout.
pub fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return true
            }
            Err(_) => return false,
        }
    }
}
