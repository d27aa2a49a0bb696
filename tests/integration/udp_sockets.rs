//! A shard serves all of its UDP sockets, however many (listen addresses, IPv4 and
//! IPv6, ports), with one wait: while one socket carries steady traffic (which keeps
//! the io_uring loop in its hot waits), queries to every other socket are answered,
//! from the address they were sent to, hits and misses, and misses owned by the other
//! shard come back across the mesh.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::client;
use crate::harness::{Cache, CACHE_30};
use crate::zones;

/// How long a query to a quiet socket may wait for its one answer: far above any
/// wait of the loop (milliseconds), so only a socket left out of the wait fails.
const ANSWER_BOUND: Duration = Duration::from_secs(2);

/// Sends `msg` once from a socket connected to `to` and returns the answer, if one
/// came within [`ANSWER_BOUND`]. The kernel delivers to a connected socket only what
/// comes from exactly `to`, so an answer proves it left from the address asked.
fn ask_connected(to: SocketAddr, msg: &Message) -> Option<Message> {
    let local = if to.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(local).expect("binding a client socket");
    socket.connect(to).expect("connecting the client socket");
    socket
        .set_read_timeout(Some(ANSWER_BOUND))
        .expect("read timeout");
    socket.send(&client::encode(msg)).expect("sending a query");
    let mut buf = [0u8; 4096];
    let len = socket.recv(&mut buf).ok()?;
    let reply = client::decode(&buf[..len]);
    assert_eq!(reply.id(), msg.id(), "reply ID differs from query ID");
    Some(reply)
}

/// Clients asking `to` back to back until `stop`: a steady stream of hits. Counts
/// answers and queries left unanswered.
fn steady(to: SocketAddr, stop: Arc<AtomicBool>, answered: Arc<AtomicU64>, lost: Arc<AtomicU64>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("binding a client socket");
    socket
        .set_read_timeout(Some(ANSWER_BOUND))
        .expect("read timeout");
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let query = client::query("www.test.", RecordType::A);
        socket
            .send_to(&client::encode(&query), to)
            .expect("send_to");
        match socket.recv(&mut buf) {
            Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
            Err(_) => lost.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Two shards, each with four UDP sockets: three addresses (127.0.0.1, 127.0.0.10,
/// ::1) on one port and 127.0.0.1 on another. Steady hits go to 127.0.0.1 on the first
/// port; 16 cold names per other socket, each from a fresh client (SO_REUSEPORT
/// spreads them over both shards, and each name's owner is either shard), are each
/// answered at the first try, and a repeat is a hit. Knot sees each name once.
fn every_udp_socket_of_a_shard_answers_while_another_is_busy() {
    const SHARDS: usize = 2;
    const NAMES: usize = 16;
    let knot = zones::knot();
    let forward = format!("forward . 127.0.0.1:{}", knot.port);
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1 127.0.0.10 ::1\n    {CACHE_30}\n    {forward}\n}}\n\
         .:$FREEPORT1 {{\n    bind 127.0.0.1\n    {CACHE_30}\n    {forward}\n}}\n"
    );
    let cache = Cache::start(&corefile, SHARDS);
    let (stop, answered, lost) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let (to, stop, answered, lost) =
                (cache.addr(), stop.clone(), answered.clone(), lost.clone());
            std::thread::spawn(move || steady(to, stop, answered, lost))
        })
        .collect();
    let streaming = testkit::process::wait_until(Duration::from_secs(10), || {
        answered.load(Ordering::Relaxed) >= 1000
    });
    let quiet = [
        SocketAddr::from(([127, 0, 0, 10], cache.port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, cache.port)),
        SocketAddr::from(([127, 0, 0, 1], cache.free_ports[0])),
    ];
    let mut unanswered = Vec::new();
    for (socket, to) in quiet.iter().enumerate() {
        for i in 0..NAMES {
            let name = format!("n{i}-s{socket}.many.test.");
            for ask in ["miss", "hit"] {
                let query = client::query(&name, RecordType::A);
                match ask_connected(*to, &query) {
                    Some(reply) => {
                        assert_eq!(
                            reply.response_code(),
                            ResponseCode::NoError,
                            "{ask} {name} at {to}"
                        );
                        let addrs: Vec<String> = reply
                            .answers()
                            .iter()
                            .filter_map(|r| match r.data() {
                                RData::A(a) => Some(a.to_string()),
                                _ => None,
                            })
                            .collect();
                        assert_eq!(addrs, [zones::MANY_ADDR], "{ask} {name} at {to}");
                    }
                    None => unanswered.push(format!("{ask} {name} at {to}")),
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in busy {
        thread.join().expect("a steady client");
    }
    assert!(
        streaming,
        "the steady stream never got going; log:\n{}",
        cache.log()
    );
    assert!(
        unanswered.is_empty(),
        "queries to a quiet socket went unanswered while another was busy: {unanswered:?}; log:\n{}",
        cache.log()
    );
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "the steady stream lost queries"
    );
    assert_eq!(
        knot.queries_of_type("A"),
        1 + (quiet.len() * NAMES) as u64,
        "each name reached knot once (www.test. and the cold names); stats: {:?}",
        knot.stats()
    );
}

crate::on_each_engine!(every_udp_socket_of_a_shard_answers_while_another_is_busy);
