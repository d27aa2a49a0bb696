//! Server tests on loopback: a real server started with `start`, answered by
//! real sockets; blocks without `forward` answer SERVFAIL, which is enough to see
//! which listeners serve.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::{start, Options};
use crate::config::parse_corefile;
use testkit::process::free_port;

/// One unpinned shard, every other option as `Options::default()` has it.
fn one_shard() -> Options {
    Options {
        shards: Some(1),
        pin: false,
        ..Default::default()
    }
}

fn corefile(ports: &[u16]) -> crate::config::Config {
    let text: String = ports
        .iter()
        .map(|p| format!(".:{p} {{\n    bind 127.0.0.1\n}}\n"))
        .collect();
    parse_corefile(&text, std::path::Path::new("test")).unwrap()
}

/// Sends a query for `. IN NS` and returns the rcode of the answer, if any.
fn ask(port: u16) -> Option<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let query = [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    socket.send_to(&query, to).ok()?;
    let mut answer = [0u8; 512];
    let (len, _) = socket.recv_from(&mut answer).ok()?;
    (len >= 12 && answer[..2] == [0x12, 0x34]).then_some(answer[3] & 0x0f)
}

fn ask_until(port: u16, want: Option<u8>) -> Option<u8> {
    let mut got = None;
    for _ in 0..30 {
        got = ask(port);
        if got == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    got
}

#[test]
fn reload_keeps_unchanged_listeners_and_applies_the_new_set() {
    let (a, b) = (free_port(), free_port());
    let options = Options {
        shards: Some(2),
        pin: false,
        ..Default::default()
    };
    let mut running = start(corefile(&[a]), &options).unwrap();
    assert_eq!(
        ask_until(a, Some(2)),
        Some(2),
        "SERVFAIL from the first listener"
    );
    assert_eq!(ask(b), None);

    running.reload(corefile(&[a, b])).unwrap();
    assert_eq!(ask_until(b, Some(2)), Some(2), "the added listener serves");
    assert_eq!(ask(a), Some(2), "the kept listener still serves");

    running.reload(corefile(&[b])).unwrap();
    assert_eq!(ask_until(a, None), None, "the removed listener is closed");
    assert_eq!(ask(b), Some(2));
    assert_eq!(
        running.endpoints,
        vec![SocketAddr::from(([127, 0, 0, 1], b))]
    );

    running.shutdown();
    running.join();
    assert_eq!(ask(b), None, "nothing serves after shutdown");
}

#[test]
fn a_bind_error_leaves_the_running_config() {
    let a = free_port();
    let mut running = start(corefile(&[a]), &one_shard()).unwrap();
    // 192.0.2.1 is not an address of this host: binding it fails.
    let bad = parse_corefile(
        &format!(".:{a} {{\n    bind 192.0.2.1\n}}\n"),
        std::path::Path::new("t"),
    )
    .unwrap();
    assert!(running.reload(bad).is_err());
    assert_eq!(ask_until(a, Some(2)), Some(2));
    running.shutdown();
    running.join();
}

/// Asks `to` from a socket connected to it: the kernel only delivers an answer whose
/// source is exactly `to`, so an answer proves it left from the queried address.
fn ask_connected(to: SocketAddr) -> Option<u8> {
    let local: SocketAddr = if to.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(local).ok()?;
    socket.connect(to).ok()?;
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let query = [0x43, 0x21, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1];
    for _ in 0..20 {
        if socket.send(&query).is_err() {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let mut answer = [0u8; 512];
        if let Ok(len) = socket.recv(&mut answer) {
            return (len >= 12 && answer[..2] == [0x43, 0x21]).then_some(answer[3] & 0x0f);
        }
    }
    None
}

#[test]
fn wildcard_bind_answers_from_the_queried_address() {
    let port = free_port();
    let text = format!(".:{port} {{\n    bind 0.0.0.0 ::\n}}\n");
    let config = parse_corefile(&text, std::path::Path::new("t")).unwrap();
    let options = Options {
        shards: Some(2),
        pin: false,
        ..Default::default()
    };
    let running = start(config, &options).unwrap();
    // 127.0.0.0/8 is all local: the answer must come from the address asked.
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.53"] {
        let to = SocketAddr::new(ip.parse().unwrap(), port);
        assert_eq!(ask_connected(to), Some(2), "answer from {to}");
    }
    if running.endpoints.iter().any(|e| e.is_ipv6()) {
        assert_eq!(
            ask_connected(SocketAddr::new("::1".parse().unwrap(), port)),
            Some(2)
        );
    }
    running.shutdown();
    running.join();
}

/// Sends `count` queries from one socket, keeping up to 16 outstanding, and counts
/// the answers (each waited for at most 300 ms).
fn answered_of(port: u16, count: u16) -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let (mut sent, mut answered) = (0u16, 0u16);
    let mut answer = [0u8; 512];
    while answered < count {
        while sent < count && sent - answered < 16 {
            socket.send_to(&query_for(sent, b""), to).unwrap();
            sent += 1;
        }
        match socket.recv_from(&mut answer) {
            Ok(_) => answered += 1,
            Err(_) => break,
        }
    }
    answered
}

/// A server on a free port with `options`, once it answers; and the port.
fn serving(options: Options) -> (super::Running, u16) {
    let port = free_port();
    let running = start(corefile(&[port]), &options).unwrap();
    assert_eq!(ask_until(port, Some(2)), Some(2));
    (running, port)
}

#[test]
fn a_dense_stream_is_answered_whether_udp_waits_hot_or_not() {
    for udp_hot_wait in [true, false] {
        let (running, port) = serving(Options {
            udp_hot_wait,
            ..one_shard()
        });
        // Back-to-back datagrams turn the loop hot when hot waits are allowed.
        assert_eq!(answered_of(port, 5000), 5000, "udp_hot_wait {udp_hot_wait}");
        running.shutdown();
        running.join();
    }
}

#[test]
fn quiet_udp_sockets_outlast_many_parks_of_their_shard() {
    // Eight sockets on one shard, all traffic on the first and no hot waits: the
    // shard parks before each query (the client pauses between them), and the peeks
    // of the seven quiet sockets stay armed throughout. Ten thousand parks times
    // seven is more than a task's waker count holds (i16::MAX): an armed peek must not
    // keep a waker of the loop per park.
    const QUERIES: u16 = 10_000;
    let ports: Vec<u16> = (0..8).map(|_| free_port()).collect();
    let options = Options {
        udp_hot_wait: false,
        ..one_shard()
    };
    let running = start(corefile(&ports), &options).unwrap();
    assert_eq!(ask_until(ports[0], Some(2)), Some(2));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let to: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let mut answer = [0u8; 512];
    let mut answered = 0u16;
    for id in 0..QUERIES {
        std::thread::sleep(Duration::from_micros(20));
        socket.send_to(&query_for(id, b""), to).unwrap();
        if socket.recv(&mut answer).is_err() {
            break;
        }
        answered += 1;
    }
    assert_eq!(answered, QUERIES, "one at a time, every query answered");
    for &quiet in &ports[1..] {
        assert_eq!(
            ask(quiet),
            Some(2),
            "the quiet socket on {quiet} still serves"
        );
    }
    running.shutdown();
    running.join();
}

/// A `name IN A` query with `id`; `name` is one label (empty for the root).
fn query_for(id: u16, name: &[u8]) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    if !name.is_empty() {
        q.push(name.len() as u8);
        q.extend_from_slice(name);
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[test]
fn bursts_from_one_socket_get_every_answer_as_its_own_datagram() {
    // Back-to-back queries from two sockets, two name lengths interleaved: the
    // answers of a batch to one socket with one length leave as a GSO send (when
    // on), and each must still arrive as its own datagram with its own ID.
    // Fewer answers than a client's default receive buffer holds (about 250).
    const BURST: u16 = 200;
    for udp_gso in [true, false] {
        let (running, port) = serving(Options {
            udp_gso,
            ..one_shard()
        });
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let clients: Vec<UdpSocket> = (0..2)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                s
            })
            .collect();
        let name_of = |id: u16| if id % 3 == 0 { &b"abc"[..] } else { &b""[..] };
        for id in 0..BURST {
            let client = &clients[usize::from(id % 7 == 0)];
            client.send_to(&query_for(id, name_of(id)), to).unwrap();
        }
        let mut seen = vec![false; usize::from(BURST)];
        let mut answer = [0u8; 4096];
        for client in &clients {
            while let Ok(len) = client.recv(&mut answer) {
                let id = u16::from_be_bytes([answer[0], answer[1]]);
                let query = query_for(id, name_of(id));
                assert_eq!(len, query.len(), "udp_gso {udp_gso}: answer {id} alone");
                assert_eq!(answer[12..len], query[12..], "udp_gso {udp_gso}: question");
                assert_eq!(answer[3] & 0x0f, 2, "udp_gso {udp_gso}: SERVFAIL");
                assert!(!seen[usize::from(id)], "udp_gso {udp_gso}: {id} twice");
                seen[usize::from(id)] = true;
            }
        }
        let answered = seen.iter().filter(|s| **s).count();
        assert_eq!(answered, usize::from(BURST), "udp_gso {udp_gso}");
        running.shutdown();
        running.join();
    }
}
