//! A scripted faulty upstream on UDP and TCP (same port). The fault is chosen by a
//! label of the query name (`x.<fault>.f.test.`); the fault is the point of it, the
//! healthy upstream in these tests is a real knotd.
//!
//! | label | UDP | TCP |
//! |---|---|---|
//! | `silence` | no answer | no answer |
//! | `delay` | answer after 1.9 s | answer after 1.9 s, reading nothing meanwhile (one query at a time, as CoreDNS) |
//! | `garbage` | random bytes | random bytes framed |
//! | `wrongid` | answer with another ID (poison 6.6.6.6) | same |
//! | `wrongq` | answer for another name (poison) | same |
//! | `wrongsrc` | answer (poison) from another port | normal |
//! | `tc` | TC=1 without records | normal answer (10.2.2.2) |
//! | `big` | 3 000-byte TXT answer | same |
//! | `reset` | normal | half an answer, then RST |
//! | `closeafter` | normal | connection closed after 3 answers |
//! | `eof` | normal | on a connection that answered before: closed (FIN) unanswered; else normal |
//! | `hold` | normal | answer after [`HOLD`], the connection reading on meanwhile |
//! | anything else | normal answer (10.1.1.1) | same |

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{Name, RData, Record};

pub const POISON: [u8; 4] = [6, 6, 6, 6];
/// How long a `hold` query's TCP answer is held back.
pub const HOLD: Duration = Duration::from_millis(600);

pub struct FaultUpstream {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    pub udp_queries: Arc<AtomicU64>,
    pub tcp_queries: Arc<AtomicU64>,
    /// Connections closed unanswered under an `eof` query.
    pub eof_closes: Arc<AtomicU64>,
}

impl Drop for FaultUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn fault_of(m: &Message) -> String {
    let Some(q) = m.queries().first() else {
        return String::new();
    };
    let name = q.name().to_ascii().to_ascii_lowercase();
    for fault in [
        "silence",
        "delay",
        "garbage",
        "wrongid",
        "wrongq",
        "wrongsrc",
        "tc",
        "big",
        "reset",
        "closeafter",
        "eof",
        "hold",
    ] {
        if name.split('.').any(|l| l == fault) {
            return fault.to_string();
        }
    }
    String::new()
}

fn answer(m: &Message, ip: [u8; 4]) -> Message {
    let mut r = Message::new();
    r.set_id(m.id())
        .set_message_type(MessageType::Response)
        .set_recursion_desired(m.recursion_desired())
        .set_recursion_available(true);
    r.add_queries(m.queries().iter().cloned());
    if let Some(q) = m.queries().first() {
        r.add_answer(Record::from_rdata(
            q.name().clone(),
            60,
            RData::A(A::from(std::net::Ipv4Addr::from(ip))),
        ));
    }
    r
}

/// The answer for `fault` (None = stay silent), and whether to delay it.
fn respond(m: &Message, fault: &str, tcp: bool) -> Option<Vec<u8>> {
    let mut r = answer(m, if tcp { [10, 2, 2, 2] } else { [10, 1, 1, 1] });
    match fault {
        "silence" => return None,
        "delay" => std::thread::sleep(Duration::from_millis(1900)),
        "garbage" => return Some((0..64).map(|_| rand::random::<u8>()).collect()),
        "wrongid" => {
            r = answer(m, POISON);
            r.set_id(m.id().wrapping_add(1));
        }
        "wrongq" => {
            let other = Name::from_ascii("other.f.test.").unwrap();
            let mut q = m.queries()[0].clone();
            q.set_name(other);
            let mut fixed = Message::new();
            fixed
                .set_id(m.id())
                .set_message_type(MessageType::Response)
                .add_query(q.clone());
            fixed.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A::from(std::net::Ipv4Addr::from(POISON))),
            ));
            r = fixed;
        }
        "tc" if !tcp => {
            r = answer(m, POISON);
            r.take_answers();
            r.set_truncated(true);
        }
        "big" => {
            let q = &m.queries()[0];
            r.take_answers();
            for i in 0..12 {
                let text = format!("{i:02}{}", "x".repeat(240));
                r.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::TXT(TXT::new(vec![text])),
                ));
            }
        }
        _ => {}
    }
    r.to_vec().ok()
}

impl FaultUpstream {
    pub fn start() -> FaultUpstream {
        let port = crate::harness::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let udp = UdpSocket::bind(addr).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let tcp = TcpListener::bind(addr).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (udp_queries, tcp_queries) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, n) = (stop.clone(), udp_queries.clone());
        std::thread::spawn(move || serve_udp(udp, s, n));
        let eof_closes = Arc::new(AtomicU64::new(0));
        let counts = [tcp_queries.clone(), eof_closes.clone()];
        let s = stop.clone();
        std::thread::spawn(move || serve_tcp(tcp, s, counts));
        FaultUpstream {
            addr,
            stop,
            udp_queries,
            tcp_queries,
            eof_closes,
        }
    }
}

fn serve_udp(udp: UdpSocket, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp = Arc::new(udp);
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = udp.recv_from(&mut buf) else {
            continue;
        };
        count.fetch_add(1, Ordering::Relaxed);
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let fault = fault_of(&m);
        let reply_socket = udp.clone();
        let from_other = fault == "wrongsrc";
        let other = other.try_clone().unwrap();
        let send = move || {
            let mut reply = respond(&m, &fault, false);
            if from_other {
                reply = answer(&m, POISON).to_vec().ok();
            }
            if let Some(bytes) = reply {
                let socket = if from_other { &other } else { &*reply_socket };
                let _ = socket.send_to(&bytes, peer);
            }
        };
        if fault_of_is_slow(&buf[..n]) {
            std::thread::spawn(send);
        } else {
            send();
        }
    }
}

fn fault_of_is_slow(packet: &[u8]) -> bool {
    Message::from_vec(packet).is_ok_and(|m| fault_of(&m) == "delay")
}

/// `counts`: TCP queries, then connections closed under an `eof` query.
fn serve_tcp(listener: TcpListener, stop: Arc<AtomicBool>, counts: [Arc<AtomicU64>; 2]) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let counts = counts.clone();
                std::thread::spawn(move || serve_conn(stream, counts));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve_conn(mut stream: TcpStream, [count, eof_closes]: [Arc<AtomicU64>; 2]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut answered = 0;
    // `hold` answers, written in the order they fall due by a thread of their own.
    let mut holder: Option<std::sync::mpsc::Sender<(std::time::Instant, Vec<u8>)>> = None;
    loop {
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        count.fetch_add(1, Ordering::Relaxed);
        let Ok(m) = Message::from_vec(&body) else {
            return;
        };
        let fault = fault_of(&m);
        if fault == "eof" && answered > 0 {
            eof_closes.fetch_add(1, Ordering::Relaxed);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        let Some(reply) = respond(&m, &fault, true) else {
            continue;
        };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if fault == "hold" {
            let due = std::time::Instant::now() + HOLD;
            let holder = holder.get_or_insert_with(|| hold_answers(&stream));
            let _ = holder.send((due, framed));
            continue;
        }
        if fault == "reset" {
            let _ = stream.write_all(&framed[..framed.len() / 2]);
            let socket = socket2::SockRef::from(&stream);
            let _ = socket.set_linger(Some(Duration::ZERO));
            return;
        }
        if stream.write_all(&framed).is_err() {
            return;
        }
        answered += 1;
        if fault == "closeafter" && answered >= 3 {
            return;
        }
    }
}

/// Writes the answers sent to it on a clone of `stream`, each once due.
fn hold_answers(stream: &TcpStream) -> std::sync::mpsc::Sender<(std::time::Instant, Vec<u8>)> {
    let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    let writer = stream.try_clone();
    std::thread::spawn(move || {
        let Ok(mut writer) = writer else {
            return;
        };
        for (due, framed) in rx {
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            if writer.write_all(&framed).is_err() {
                return;
            }
        }
    });
    tx
}
