//! Upstream connections: concurrent misses are pipelined on few TCP connections.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client;
use crate::harness::{corefile, Cache, CACHE_30};
use crate::zones;

const SHARDS: usize = 2;
const MISSES: u16 = 128;

/// Established TCP connections whose destination port is `port`, as `ss` sees them.
pub fn established_to(port: u16) -> Vec<String> {
    let out = Command::new("ss")
        .args([
            "-Htn",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output()
        .expect("running ss (iproute2)");
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// 128 distinct misses sent at once with `force_tcp`: all answered, carried on at most
/// two upstream TCP connections per shard.
fn concurrent_misses_share_few_upstream_connections() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &["force_tcp"], &[]), SHARDS);
    // Several client sockets, so the kernel spreads the burst over the shards.
    let sockets: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut pending = HashSet::new();
    for i in 0..MISSES {
        let mut query = client::query(&format!("c{i}.many.test."), RecordType::A);
        query.set_id(i);
        sockets[i as usize % sockets.len()]
            .send_to(&client::encode(&query), cache.addr())
            .expect("send");
        pending.insert(i);
    }
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut buf = vec![0u8; 4096];
    for sock in &sockets {
        sock.set_nonblocking(true).expect("nonblocking");
    }
    while !pending.is_empty() && Instant::now() < deadline {
        let mut got_any = false;
        for sock in &sockets {
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                got_any = true;
                let reply = client::decode(&buf[..n]);
                assert_eq!(
                    reply.response_code(),
                    ResponseCode::NoError,
                    "ID {}",
                    reply.id()
                );
                assert!(
                    pending.remove(&reply.id()),
                    "unexpected or duplicate answer ID {}",
                    reply.id()
                );
            }
        }
        if !got_any {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let connections = established_to(knot.port);
    assert!(
        pending.is_empty(),
        "{} of {MISSES} misses unanswered",
        pending.len()
    );
    assert!(
        knot.queries_of_type("A") >= MISSES as u64,
        "every miss reached knot"
    );
    assert!(
        knot.stat("mod-stats.request-protocol[tcp4]") >= MISSES as u64,
        "force_tcp: over TCP"
    );
    assert!(
        !connections.is_empty(),
        "the upstream connections stay open (expire 10 s)"
    );
    assert!(
        connections.len() <= 2 * SHARDS,
        "{} upstream connections for {SHARDS} shards (at most {}):\n{}",
        connections.len(),
        2 * SHARDS,
        connections.join("\n")
    );
}

/// An upstream nobody listens on: the client gets SERVFAIL within the 5 s query
/// deadline, over UDP (ICMP unreachable) and with `force_tcp` (connection refused).
fn dead_upstream_gives_servfail() {
    let dead_port = crate::harness::free_port();
    for forward_opts in [&[][..], &["force_tcp"][..]] {
        let corefile = format!(
            ".:$PORT {{\n    bind 127.0.0.1\n    errors\n    {CACHE_30}\n    forward . 127.0.0.1:{dead_port}{}\n}}\n",
            if forward_opts.is_empty() { "" } else { " {\n        force_tcp\n    }" }
        );
        let cache = Cache::start(&corefile, 1);
        let query = client::query("www.test.", RecordType::A);
        let start = Instant::now();
        let reply =
            client::udp_try(cache.addr(), &query, Duration::from_secs(7)).unwrap_or_else(|| {
                panic!("no answer within 7 s from a dead upstream ({forward_opts:?})")
            });
        assert_eq!(
            reply.response_code(),
            ResponseCode::ServFail,
            "{forward_opts:?}: {reply:?}"
        );
        assert!(
            start.elapsed() <= Duration::from_millis(5500),
            "SERVFAIL took {:?}",
            start.elapsed()
        );
    }
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(
    concurrent_misses_share_few_upstream_connections,
    dead_upstream_gives_servfail,
);
