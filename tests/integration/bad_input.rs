//! Hostile and malformed input. After each one the server must still answer a normal
//! query and its open file descriptors must return to the baseline.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::thread::sleep;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, MessageType, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};

use crate::client;
use crate::harness::{corefile, Cache, Knot, CACHE_30};
use crate::zones;

const RD: u16 = 0x0100;
const QR: u16 = 0x8000;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// How long to wait for a reply that should not come.
const SILENCE: Duration = Duration::from_millis(700);

/// A server under attack, with the fd count it had after warming up.
struct Target {
    _knot: Knot,
    cache: Cache,
    fd_baseline: usize,
}

/// One shard, so every input reaches the same (and only) shard.
fn target() -> Target {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    for _ in 0..3 {
        normal_query(&cache);
    }
    sleep(Duration::from_millis(200));
    let fd_baseline = cache.fd_count();
    Target {
        _knot: knot,
        cache,
        fd_baseline,
    }
}

fn normal_query(cache: &Cache) {
    let reply = client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    assert_eq!(
        reply.response_code(),
        ResponseCode::NoError,
        "normal query: {reply:?}"
    );
    assert_eq!(reply.answers().len(), 2, "normal query: {reply:?}");
}

impl Target {
    /// Still running, still answering, and back to the baseline fd count within 5 s.
    fn assert_healthy(&mut self, after: &str) {
        assert!(
            self.cache.alive(),
            "nodelocaldns died after {after}:\n{}",
            self.cache.log()
        );
        normal_query(&self.cache);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut fds = self.cache.fd_count();
        while fds > self.fd_baseline && Instant::now() < deadline {
            sleep(Duration::from_millis(100));
            fds = self.cache.fd_count();
        }
        assert!(
            fds <= self.fd_baseline,
            "after {after}: {fds} fds open, baseline {}",
            self.fd_baseline
        );
    }

    fn send(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        client::udp_raw(self.cache.addr(), bytes, SILENCE)
    }
}

fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// Wire name from labels (no compression).
fn wire_name(labels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for label in labels {
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

fn question(name: &[u8], qtype: u16, qclass: u16) -> Vec<u8> {
    let mut out = name.to_vec();
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&qclass.to_be_bytes());
    out
}

fn www_test() -> Vec<u8> {
    wire_name(&[b"www", b"test"])
}

/// The reply's ID, flags and 4-bit rcode, read without a full parse.
fn reply_header(reply: &[u8]) -> (u16, u16, u16) {
    assert!(
        reply.len() >= 12,
        "reply shorter than a header: {reply:02x?}"
    );
    let id = u16::from_be_bytes([reply[0], reply[1]]);
    let flags = u16::from_be_bytes([reply[2], reply[3]]);
    (id, flags, flags & 0xf)
}

/// A reply with `rcode` to query `id` is required.
fn assert_rcode(reply: Option<Vec<u8>>, id: u16, rcode: u16, what: &str) {
    let reply = reply.unwrap_or_else(|| panic!("{what}: no reply, expected rcode {rcode}"));
    let (got_id, flags, got_rcode) = reply_header(&reply);
    assert_eq!(got_id, id, "{what}: reply ID");
    assert!(flags & QR != 0, "{what}: reply has QR=0");
    assert_eq!(got_rcode, rcode, "{what}: rcode (reply {reply:02x?})");
}

/// Either no reply or FORMERR for query `id`: never an answer, never a crash.
fn assert_formerr_or_silence(reply: Option<Vec<u8>>, id: u16, what: &str) {
    if let Some(reply) = reply {
        let (got_id, flags, rcode) = reply_header(&reply);
        assert_eq!(got_id, id, "{what}: reply ID");
        assert!(flags & QR != 0, "{what}: reply has QR=0");
        assert_eq!(
            rcode, 1,
            "{what}: only FORMERR is acceptable (reply {reply:02x?})"
        );
    }
}

fn random_garbage_datagrams() {
    let mut t = target();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let len = (next() % 700) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        sock.send_to(&bytes, t.cache.addr()).expect("send");
    }
    sleep(Duration::from_millis(300));
    t.assert_healthy("300 random datagrams");
}

#[test]
fn truncated_header() {
    let mut t = target();
    let reply = t.send(&[0x12, 0x34, 0x01, 0x00, 0x00]);
    assert!(
        reply.is_none(),
        "a 5-byte datagram has no header to answer: got {reply:02x?}"
    );
    t.assert_healthy("a 5-byte datagram");
}

#[test]
fn truncated_question() {
    let mut t = target();
    let mut packet = header(0x0101, RD, 1, 0, 0, 0);
    packet.extend_from_slice(&[3, b'w', b'w', b'w', 4, b't', b'e']);
    assert_formerr_or_silence(t.send(&packet), 0x0101, "truncated question");
    let mut packet = header(0x0102, RD, 1, 0, 0, 0);
    packet.extend_from_slice(&www_test());
    packet.push(0); // half a QTYPE
    assert_formerr_or_silence(t.send(&packet), 0x0102, "question without QTYPE/QCLASS");
    t.assert_healthy("a truncated question");
}

#[test]
fn compression_pointer_loop_in_question() {
    let mut t = target();
    let mut packet = header(0x0201, RD, 1, 0, 0, 0);
    packet.extend_from_slice(&question(&[0xc0, 0x0c], TYPE_A, CLASS_IN)); // points at itself
    assert_formerr_or_silence(t.send(&packet), 0x0201, "self-pointing name");
    let mut packet = header(0x0202, RD, 1, 0, 0, 0);
    packet.extend_from_slice(&question(&[1, b'a', 0xc0, 0x0c], TYPE_A, CLASS_IN)); // a → a → …
    assert_formerr_or_silence(t.send(&packet), 0x0202, "looping name");
    t.assert_healthy("compression pointer loops");
}

#[test]
fn label_of_64_bytes() {
    let mut t = target();
    let long = [b'a'; 64];
    let mut packet = header(0x0301, RD, 1, 0, 0, 0);
    packet.extend_from_slice(&question(&wire_name(&[&long, b"test"]), TYPE_A, CLASS_IN));
    assert_formerr_or_silence(t.send(&packet), 0x0301, "64-byte label");
    t.assert_healthy("a 64-byte label");
}

#[test]
fn name_over_255_bytes() {
    let mut t = target();
    let label = [b'b'; 63];
    let name = wire_name(&[&label, &label, &label, &label, b"test"]); // 4·64 + 5 + 1 = 262 bytes
    assert!(name.len() > 255);
    let mut packet = header(0x0401, RD, 1, 0, 0, 0);
    packet.extend_from_slice(&question(&name, TYPE_A, CLASS_IN));
    assert_formerr_or_silence(t.send(&packet), 0x0401, "262-byte name");
    t.assert_healthy("a name over 255 bytes");
}

#[test]
fn qdcount_0_is_formerr() {
    let mut t = target();
    assert_rcode(
        t.send(&header(0x0501, RD, 0, 0, 0, 0)),
        0x0501,
        1,
        "QDCOUNT 0",
    );
    t.assert_healthy("QDCOUNT 0");
}

#[test]
fn qdcount_2_is_formerr() {
    let mut t = target();
    let mut packet = header(0x0601, RD, 2, 0, 0, 0);
    packet.extend_from_slice(&question(&www_test(), TYPE_A, CLASS_IN));
    packet.extend_from_slice(&question(&www_test(), 28, CLASS_IN));
    assert_rcode(t.send(&packet), 0x0601, 1, "QDCOUNT 2");
    t.assert_healthy("QDCOUNT 2");
}

#[test]
fn opcode_2_is_notimp() {
    let mut t = target();
    let mut packet = header(0x0701, RD | (2 << 11), 1, 0, 0, 0);
    packet.extend_from_slice(&question(&www_test(), TYPE_A, CLASS_IN));
    assert_rcode(t.send(&packet), 0x0701, 4, "opcode 2 (STATUS)");
    t.assert_healthy("opcode 2");
}

#[test]
fn class_ch_is_refused() {
    let mut t = target();
    let query = client::query_class("version.bind.", RecordType::TXT, DNSClass::CH);
    let reply = t.send(&client::encode(&query));
    assert_rcode(reply, query.id(), 5, "version.bind CH TXT");
    t.assert_healthy("a CH query");
}

#[test]
fn edns_version_1_is_badvers() {
    let mut t = target();
    let mut query = client::query("www.test.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(1232).set_version(1);
    query.set_edns(edns);
    let reply = t
        .send(&client::encode(&query))
        .expect("EDNS version 1: no reply, expected BADVERS");
    let reply = client::decode(&reply);
    assert_eq!(reply.id(), query.id());
    assert!(
        reply.extensions().is_some(),
        "BADVERS comes with an OPT record: {reply:?}"
    );
    assert_eq!(
        u16::from(reply.response_code()),
        16,
        "extended rcode BADVERS: {reply:?}"
    );
    assert!(
        reply.answers().is_empty(),
        "BADVERS carries no answer: {reply:?}"
    );
    t.assert_healthy("EDNS version 1");
}

#[test]
fn response_packet_gets_no_answer() {
    let mut t = target();
    let mut packet = client::query("www.test.", RecordType::A);
    packet.set_message_type(MessageType::Response);
    let reply = t.send(&client::encode(&packet));
    assert!(
        reply.is_none(),
        "a QR=1 packet must not be answered (reflection): got {reply:02x?}"
    );
    t.assert_healthy("a QR=1 packet");
}

/// Connects, runs `act`, and returns how long until the server closed the connection
/// (panics if it did not within 6 s).
fn time_to_close(t: &Target, act: impl FnOnce(&mut TcpStream)) -> Duration {
    let mut stream = client::tcp_connect(t.cache.addr());
    stream
        .set_read_timeout(Some(Duration::from_secs(6)))
        .expect("read timeout");
    let start = Instant::now();
    act(&mut stream);
    assert!(
        client::closed_by_peer(&mut stream),
        "the server kept the connection open for 6 s"
    );
    start.elapsed()
}

#[test]
fn zero_length_tcp_frame_closes_the_connection() {
    let mut t = target();
    let took = time_to_close(&t, |s| s.write_all(&[0, 0]).expect("write"));
    assert!(
        took < Duration::from_secs(2),
        "a zero-length frame should close at once, took {took:?}"
    );
    t.assert_healthy("a zero-length TCP frame");
}

fn silent_tcp_client_is_closed_after_the_read_timeout() {
    let mut t = target();
    let took = time_to_close(&t, |_| {});
    assert!(
        took >= Duration::from_millis(2_500) && took < Duration::from_millis(5_800),
        "a silent client should be closed after the 3 s first-read timeout, took {took:?}"
    );
    t.assert_healthy("a silent TCP client");
}

fn half_a_tcp_frame_closes_the_connection() {
    let mut t = target();
    let took = time_to_close(&t, |s| {
        let mut frame = 40u16.to_be_bytes().to_vec();
        frame.extend_from_slice(&header(0x0801, RD, 1, 0, 0, 0)[..10]);
        s.write_all(&frame).expect("write");
    });
    assert!(
        took >= Duration::from_millis(2_500) && took < Duration::from_millis(5_800),
        "half a frame should be closed after the 3 s first-read timeout, took {took:?}"
    );
    t.assert_healthy("half a TCP frame");
}

fn two_hundred_idle_tcp_connections_do_not_stop_udp() {
    let mut t = target();
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| client::tcp_connect(t.cache.addr()))
        .collect();
    sleep(Duration::from_millis(200));
    let start = Instant::now();
    normal_query(&t.cache);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "UDP answer took {:?} with 200 idle TCP clients",
        start.elapsed()
    );
    drop(idle);
    t.assert_healthy("200 idle TCP connections");
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(
    random_garbage_datagrams,
    silent_tcp_client_is_closed_after_the_read_timeout,
    half_a_tcp_frame_closes_the_connection,
    two_hundred_idle_tcp_connections_do_not_stop_udp,
);
