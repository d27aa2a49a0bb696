//! Telemetry end to end: the real binary (`--shards 2`) on free loopback ports in
//! front of a real upstream (knotd with a zone this test writes), scraped over HTTP
//! and parsed with a Prometheus text-format parser. Only 127.0.0.1 is used; every
//! process is killed on drop; every wait is bounded.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use prometheus_parse::{Scrape, Value};
use testkit::process::free_port;

mod logs;
mod registry;
mod shards;
mod tls;

const ZONE: &str = "$ORIGIN example.
$TTL 300
@ SOA ns.example. host.example. 1 3600 600 86400 300
@ NS ns.example.
ns A 127.0.0.1
www A 192.0.2.1
*.w A 192.0.2.2
";

/// knotd serving `example.` on a free port, counting queries by type (`knotc
/// stats`); killed on drop.
struct Knot {
    child: Child,
    port: u16,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Knot {
    fn start() -> Knot {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        std::fs::write(dir.path().join("example.zone"), ZONE).expect("zone");
        let conf_path = testkit::knot::Conf::new(dir.path(), &[format!("127.0.0.1@{port}")])
            .default_workers()
            .control()
            .stats(testkit::knot::Stats::Full)
            .no_semantic_checks()
            .zone("example.", "example.zone")
            .write();
        let child = testkit::knot::spawn(&conf_path, Stdio::null(), Stdio::null());
        let knot = Knot {
            child,
            port,
            conf: conf_path,
            _dir: dir,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("knotd answers", Duration::from_secs(10), || {
            udp_exchange(addr, &query(1, "www.example.", RecordType::A, false)).is_some()
        });
        knot
    }
}

impl Knot {
    /// Queries of `qtype` knotd has answered (`mod-stats`, read with `knotc`).
    fn queries_of_type(&self, qtype: &str) -> u64 {
        let out = Command::new(testkit::process::find_program("knotc", "knot"))
            .arg("-c")
            .arg(&self.conf)
            .args(["-t", "3", "stats"])
            .output()
            .expect("running knotc stats");
        assert!(out.status.success(), "knotc stats failed: {out:?}");
        let key = format!("mod-stats.query-type[{qtype}] = ");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| line.trim().strip_prefix(&key)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP upstream that never answers (for timeouts); it lives as long as the value.
fn blackhole() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = socket.local_addr().expect("addr").port();
    (socket, port)
}

/// The nodelocaldns binary with a Corefile, stderr in a file; killed on drop.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(corefile: &str) -> Server {
        Server::start_with_env(corefile, &[])
    }

    fn start_with_env(corefile: &str, env: &[(&str, &Path)]) -> Server {
        Server::launch(corefile, &[], env)
    }

    /// With `args` after the Corefile's.
    fn start_with_args(corefile: &str, args: &[&str]) -> Server {
        Server::launch(corefile, args, &[])
    }

    fn launch(corefile: &str, args: &[&str], env: &[(&str, &Path)]) -> Server {
        Server::launch_shards(corefile, 2, args, env)
    }

    fn launch_shards(
        corefile: &str,
        shards: usize,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("Corefile");
        std::fs::write(&conf, corefile).expect("Corefile");
        let log = std::fs::File::create(dir.path().join("stderr")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_nodelocaldns"))
            .arg("-conf")
            .arg(&conf)
            .args(["--shards", &shards.to_string()])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start nodelocaldns");
        Server { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("stderr")
    }

    fn terminate(&self) {
        // SAFETY: a plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }

    /// Waits (bounded) for the process to exit; its success.
    fn wait_exit(&mut self, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, limit: Duration, check: impl FnMut() -> bool) {
    assert!(
        testkit::process::wait_until(limit, check),
        "timed out waiting for {what}"
    );
}

fn query(id: u16, name: &str, qtype: RecordType, dnssec_ok: bool) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if dnssec_ok {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(true);
        message.set_edns(edns);
    }
    message.to_vec().expect("encode")
}

fn udp_exchange(addr: SocketAddr, packet: &[u8]) -> Option<Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    udp_on(&socket, addr, packet)
}

fn udp_on(socket: &UdpSocket, addr: SocketAddr, packet: &[u8]) -> Option<Message> {
    socket.set_read_timeout(Some(Duration::from_secs(6))).ok()?;
    socket.send_to(packet, addr).ok()?;
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    Message::from_vec(&buf[..len]).ok()
}

fn tcp_on(stream: &mut TcpStream, packet: &[u8]) -> Message {
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    stream.write_all(&framed).expect("tcp write");
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).expect("tcp read len");
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).expect("tcp read");
    Message::from_vec(&buf).expect("decode")
}

/// GET `path` over HTTP/1.0: (status, body); None when nothing listens.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((status, body))
}

fn scrape(port: u16) -> Scrape {
    let (status, body) = http_get(port, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid exposition")
}

/// The exposition text's `# TYPE` of every family.
fn types(port: u16) -> std::collections::HashMap<String, String> {
    let (_, body) = http_get(port, "/metrics").expect("/metrics answers");
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// Sum of the samples of `metric` whose labels include `labels`; histograms count
/// their observations (+Inf bucket).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

fn label_names(scrape: &Scrape, metric: &str) -> BTreeSet<Vec<String>> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .map(|s| {
            let mut names: Vec<String> = s.labels.keys().cloned().collect();
            names.sort();
            names
        })
        .collect()
}

fn wait_ready(port: u16) {
    wait_until("/ready 200", Duration::from_secs(15), || {
        http_get(port, "/ready").is_some_and(|(s, _)| s == 200)
    });
}

struct Ports {
    dns: u16,
    metrics: u16,
    health: u16,
    ready: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            dns: free_port(),
            metrics: free_port(),
            health: free_port(),
            ready: free_port(),
        }
    }

    fn dns(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.dns).into()
    }
}

/// Every CoreDNS metric of the issue: name, type, label names (sorted).
const EXPECTED: &[(&str, &str, &[&str])] = &[
    (
        "coredns_dns_requests_total",
        "counter",
        &["family", "proto", "server", "type", "view", "zone"],
    ),
    (
        "coredns_dns_responses_total",
        "counter",
        &["plugin", "rcode", "server", "view", "zone"],
    ),
    (
        "coredns_dns_request_duration_seconds",
        "histogram",
        &["server", "view", "zone"],
    ),
    (
        "coredns_dns_request_size_bytes",
        "histogram",
        &["proto", "server", "view", "zone"],
    ),
    (
        "coredns_dns_response_size_bytes",
        "histogram",
        &["proto", "server", "view", "zone"],
    ),
    (
        "coredns_dns_do_requests_total",
        "counter",
        &["server", "view", "zone"],
    ),
    (
        "coredns_cache_entries",
        "gauge",
        &["server", "type", "view", "zones"],
    ),
    (
        "coredns_cache_requests_total",
        "counter",
        &["server", "view", "zones"],
    ),
    (
        "coredns_cache_hits_total",
        "counter",
        &["server", "type", "view", "zones"],
    ),
    (
        "coredns_cache_misses_total",
        "counter",
        &["server", "view", "zones"],
    ),
    (
        "coredns_cache_prefetch_total",
        "counter",
        &["server", "view", "zones"],
    ),
    (
        "coredns_cache_drops_total",
        "counter",
        &["server", "view", "zones"],
    ),
    (
        "coredns_cache_served_stale_total",
        "counter",
        &["server", "view", "zones"],
    ),
    (
        "coredns_cache_evictions_total",
        "counter",
        &["server", "type", "view", "zones"],
    ),
    (
        "coredns_proxy_request_duration_seconds",
        "histogram",
        &["proxy_name", "rcode", "to"],
    ),
    (
        "coredns_proxy_healthcheck_failures_total",
        "counter",
        &["proxy_name", "to"],
    ),
    (
        "coredns_proxy_conn_cache_hits_total",
        "counter",
        &["proto", "proxy_name", "to"],
    ),
    (
        "coredns_proxy_conn_cache_misses_total",
        "counter",
        &["proto", "proxy_name", "to"],
    ),
    ("coredns_forward_healthcheck_broken_total", "counter", &[]),
    (
        "coredns_forward_max_concurrent_rejects_total",
        "counter",
        &[],
    ),
    ("coredns_reload_failed_total", "counter", &[]),
    (
        "coredns_build_info",
        "gauge",
        &["goversion", "revision", "version"],
    ),
    ("coredns_panics_total", "counter", &[]),
    ("nodelocaldns_shard_queries_total", "counter", &["shard"]),
    (
        "nodelocaldns_shard_cache_entries",
        "gauge",
        &["shard", "type"],
    ),
    ("nodelocaldns_shard_cache_bytes", "gauge", &["shard"]),
    (
        "nodelocaldns_upstream_connections_open",
        "gauge",
        &["proto", "to"],
    ),
    ("nodelocaldns_upstream_queries_inflight", "gauge", &["to"]),
    (
        "nodelocaldns_forward_attempt_failures_total",
        "counter",
        &["reason", "to"],
    ),
    (
        "nodelocaldns_forward_connect_attempts_exceeded_total",
        "counter",
        &[],
    ),
    ("nodelocaldns_dropped_packets_total", "counter", &["reason"]),
    ("coredns_hosts_entries", "gauge", &["hostsfile"]),
    ("coredns_hosts_reload_timestamp_seconds", "gauge", &[]),
    ("nodelocaldns_hosts_read_failures_total", "counter", &[]),
];

#[test]
fn metrics_names_types_labels_and_exact_counts() {
    let knot = Knot::start();
    let ports = Ports::new();
    let corefile = format!(
        "example.:{dns} {{\n    bind 127.0.0.1\n    errors\n    log\n    hosts {{\n        192.0.2.9 pinned.example\n        fallthrough\n    }}\n    cache 30\n    forward . 127.0.0.1:{knot}\n    \
         prometheus 127.0.0.1:{metrics}\n    health 127.0.0.1:{health}\n    ready 127.0.0.1:{ready}\n}}\n",
        dns = ports.dns,
        knot = knot.port,
        metrics = ports.metrics,
        health = ports.health,
        ready = ports.ready,
    );
    let server = Server::start(&corefile);
    wait_ready(ports.ready);
    let dns = ports.dns();
    // One UDP socket and one TCP connection: each stays on one shard (REUSEPORT
    // hashes the 4-tuple), so repeated questions hit that shard's cache.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let ask = |id, name, qtype, dnssec_ok| {
        udp_on(&udp, dns, &query(id, name, qtype, dnssec_ok)).expect("UDP answer")
    };
    for id in 0..4 {
        let answer = ask(id, "www.example.", RecordType::A, false);
        assert_eq!(answer.response_code(), ResponseCode::NoError);
        assert_eq!(answer.answers().len(), 1);
    }
    for id in 10..13 {
        let answer = ask(id, "nx1.example.", RecordType::A, false);
        assert_eq!(answer.response_code(), ResponseCode::NXDomain);
    }
    assert_eq!(
        ask(20, "www.example.", RecordType::A, true).response_code(),
        ResponseCode::NoError
    );
    let mut tcp = TcpStream::connect(dns).expect("tcp connect");
    tcp.set_read_timeout(Some(Duration::from_secs(6)))
        .expect("timeout");
    for id in 30..32 {
        let answer = tcp_on(
            &mut tcp,
            &query(id, "www.example.", RecordType::AAAA, false),
        );
        assert_eq!(answer.response_code(), ResponseCode::NoError);
        assert!(answer.answers().is_empty());
    }
    drop(tcp);

    let scrape = scrape(ports.metrics);
    let text_types = types(ports.metrics);
    for (name, kind, labels) in EXPECTED {
        assert_eq!(
            text_types.get(*name).map(String::as_str),
            Some(*kind),
            "TYPE of {name}"
        );
        let expected: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        // The parser keys a histogram's buckets by the family name.
        let found = label_names(&scrape, name);
        assert!(!found.is_empty(), "{name} has no samples");
        assert!(
            found.iter().all(|l| *l == expected),
            "{name} labels {found:?}"
        );
    }

    let server_label = format!("dns://127.0.0.1:{}", ports.dns);
    let s = server_label.as_str();
    let base = [("server", s), ("zone", "example."), ("view", "")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut labels = base.to_vec();
        labels.extend_from_slice(extra);
        labels
    };
    let count = |metric: &str, labels: &[(&str, &str)]| value(&scrape, metric, labels);
    let requests = "coredns_dns_requests_total";
    let udp_a = with(&[("proto", "udp"), ("family", "1"), ("type", "A")]);
    assert_eq!(count(requests, &udp_a), 8.0);
    let tcp_aaaa = with(&[("proto", "tcp"), ("family", "1"), ("type", "AAAA")]);
    assert_eq!(count(requests, &tcp_aaaa), 2.0);
    assert_eq!(count(requests, &[]), 10.0);
    let responses = "coredns_dns_responses_total";
    let rcode = |r, p| with(&[("rcode", r), ("plugin", p)]);
    assert_eq!(count(responses, &rcode("NOERROR", "forward")), 3.0);
    assert_eq!(count(responses, &rcode("NOERROR", "cache")), 4.0);
    assert_eq!(count(responses, &rcode("NXDOMAIN", "forward")), 1.0);
    assert_eq!(count(responses, &rcode("NXDOMAIN", "cache")), 2.0);
    assert_eq!(count("coredns_dns_do_requests_total", &base), 1.0);
    let duration = "coredns_dns_request_duration_seconds";
    assert_eq!(count(duration, &base), 10.0);
    for metric in [
        "coredns_dns_request_size_bytes",
        "coredns_dns_response_size_bytes",
    ] {
        assert_eq!(count(metric, &with(&[("proto", "udp")])), 8.0, "{metric}");
        assert_eq!(count(metric, &with(&[("proto", "tcp")])), 2.0, "{metric}");
    }

    let cache = [("server", s), ("zones", "example."), ("view", "")];
    let typed = |t| {
        let mut labels = cache.to_vec();
        labels.push(("type", t));
        labels
    };
    assert_eq!(count("coredns_cache_requests_total", &cache), 10.0);
    assert_eq!(count("coredns_cache_hits_total", &typed("success")), 3.0);
    assert_eq!(count("coredns_cache_hits_total", &typed("denial")), 3.0);
    assert_eq!(count("coredns_cache_misses_total", &cache), 4.0);
    // Distinct entries: a name asked on a shard that does not own it is kept by the
    // asking shard too, as a copy the owner's entry counts for.
    for kind in ["success", "denial"] {
        let entries = count("coredns_cache_entries", &typed(kind));
        assert_eq!(entries, 2.0, "{kind} entries");
    }
    assert_eq!(count("coredns_cache_drops_total", &cache), 0.0);

    let upstream = format!("127.0.0.1:{}", knot.port);
    let to = [("proxy_name", "forward"), ("to", upstream.as_str())];
    let proxy = |extra: (&'static str, &'static str)| {
        let mut labels = to.to_vec();
        labels.push(extra);
        labels
    };
    let proxy_duration = "coredns_proxy_request_duration_seconds";
    assert_eq!(count(proxy_duration, &proxy(("rcode", "NOERROR"))), 3.0);
    assert_eq!(count(proxy_duration, &proxy(("rcode", "NXDOMAIN"))), 1.0);
    let misses = "coredns_proxy_conn_cache_misses_total";
    assert_eq!(count(misses, &proxy(("proto", "udp"))), 3.0);
    assert_eq!(count(misses, &proxy(("proto", "tcp"))), 1.0);
    assert_eq!(count("coredns_proxy_healthcheck_failures_total", &to), 0.0);
    assert_eq!(count("coredns_panics_total", &[]), 0.0);
    assert_eq!(count("nodelocaldns_shard_queries_total", &[]), 10.0);
    // A shard's entries include its copies: at least the distinct ones, at most a
    // copy of each besides.
    let entries = count("coredns_cache_entries", &[]);
    let held = count("nodelocaldns_shard_cache_entries", &[]);
    assert!(
        (entries..=2.0 * entries).contains(&held),
        "{held} held, {entries} distinct"
    );
    assert_eq!(count("coredns_build_info", &[]), 1.0);

    // Exactly once more: the counters are cumulative and scrapes do not disturb them.
    let again = self::scrape(ports.metrics);
    assert_eq!(value(&again, requests, &[]), 10.0);
    let log = server.log();
    assert!(log.contains("listening (http)"), "{log}");
    assert!(
        log.contains(&format!("127.0.0.1:{}", ports.metrics)),
        "{log}"
    );
    // `log`: one common-format line per answered query.
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("\"A IN www.example. udp "), 5, "{log}");
    assert_eq!(lines("\"A IN nx1.example. udp "), 3, "{log}");
    assert_eq!(lines("\"AAAA IN www.example. tcp "), 2, "{log}");
    assert_eq!(lines(" NXDOMAIN qr,"), 3, "{log}");
    assert!(log.contains(" - 20 \"A IN www.example. udp "), "{log}");
}

#[test]
fn health_and_ready_before_during_and_after_lameduck() {
    let knot = Knot::start();
    // A second upstream that never reads: nothing is sent upstream for /ready (as
    // node-cache, whose `ready` waits for no upstream), so it stays empty.
    let (hole_socket, hole) = blackhole();
    hole_socket.set_nonblocking(true).expect("nonblocking");
    let ports = Ports::new();
    let corefile = format!(
        "example.:{dns} {{\n    bind 127.0.0.1\n    forward . 127.0.0.1:{knot} 127.0.0.1:{hole} {{\n        policy sequential\n    }}\n    \
         health 127.0.0.1:{health} {{\n        lameduck 2s\n    }}\n    ready 127.0.0.1:{ready}\n}}\n",
        dns = ports.dns,
        knot = knot.port,
        health = ports.health,
        ready = ports.ready,
    );
    let mut server = Server::start(&corefile);
    wait_until(
        "/ready 200",
        Duration::from_secs(15),
        || matches!(http_get(ports.ready, "/ready"), Some((200, body)) if body == "OK"),
    );
    assert!(
        hole_socket.recv(&mut [0u8; 512]).is_err(),
        "nothing sent upstream before a client asked"
    );
    assert_eq!(
        http_get(ports.health, "/health"),
        Some((200, "OK".to_string()))
    );
    assert_eq!(http_get(ports.health, "/ready").map(|r| r.0), Some(404));
    let dns = ports.dns();
    let answer = udp_exchange(dns, &query(1, "www.example.", RecordType::A, false));
    assert_eq!(
        answer.map(|a| a.response_code()),
        Some(ResponseCode::NoError)
    );

    server.terminate();
    let terminated = Instant::now();
    wait_until("/ready 503 in lameduck", Duration::from_secs(1), || {
        http_get(ports.ready, "/ready").is_some_and(|(s, _)| s == 503)
    });
    // Still serving DNS and /health during the lameduck period.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        http_get(ports.health, "/health"),
        Some((200, "OK".to_string()))
    );
    let answer = udp_exchange(dns, &query(2, "www.example.", RecordType::A, false));
    assert_eq!(
        answer.map(|a| a.response_code()),
        Some(ResponseCode::NoError)
    );
    assert!(
        terminated.elapsed() < Duration::from_millis(1900),
        "the checks were too slow"
    );

    let exited = server.wait_exit(Duration::from_secs(10));
    assert_eq!(exited, Some(true), "exits cleanly after lameduck");
    assert!(
        terminated.elapsed() >= Duration::from_secs(2),
        "exited before lameduck ended"
    );
    assert_eq!(
        http_get(ports.health, "/health"),
        None,
        "/health gone after exit"
    );
}

#[test]
fn health_fails_while_a_shard_is_stalled_and_recovers() {
    let knot = Knot::start();
    let ports = Ports::new();
    let corefile = format!(
        "example.:{dns} {{\n    bind 127.0.0.1\n    forward . 127.0.0.1:{knot}\n    \
         health 127.0.0.1:{health}\n    ready 127.0.0.1:{ready}\n    prometheus 127.0.0.1:{metrics}\n}}\n",
        dns = ports.dns,
        knot = knot.port,
        health = ports.health,
        ready = ports.ready,
        metrics = ports.metrics,
    );
    let hook_dir = tempfile::tempdir().unwrap();
    let hook = hook_dir.path().join("stall");
    let server = Server::start_with_env(&corefile, &[("NODELOCALDNS_TEST_STALL_FILE", &hook)]);
    wait_ready(ports.ready);
    assert_eq!(
        http_get(ports.health, "/health"),
        Some((200, "OK".to_string()))
    );
    assert_eq!(
        value(
            &scrape(ports.metrics),
            "coredns_health_request_failures_total",
            &[]
        ),
        0.0
    );
    // Shard 1's thread blocks for 9 s: past the 5 s bound, /health says which shard.
    std::fs::write(&hook, "1 9000").unwrap();
    let stalled_at = Instant::now();
    let mut body = String::new();
    wait_until("/health 503", Duration::from_secs(9), || {
        match http_get(ports.health, "/health") {
            Some((503, text)) => {
                body = text;
                true
            }
            _ => false,
        }
    });
    assert!(body.contains("shard 1 stalled for"), "{body}");
    assert!(
        stalled_at.elapsed() >= Duration::from_millis(4_500),
        "503 before the bound: {:?}",
        stalled_at.elapsed()
    );
    assert!(server.log().contains("test hook: stalling this shard"));
    // The shard runs again: /health is 200 again.
    wait_until("/health 200 again", Duration::from_secs(15), || {
        http_get(ports.health, "/health") == Some((200, "OK".to_string()))
    });
    assert!(
        value(
            &scrape(ports.metrics),
            "coredns_health_request_failures_total",
            &[]
        ) >= 1.0
    );
    let answer = udp_exchange(ports.dns(), &query(7, "www.example.", RecordType::A, false));
    assert_eq!(
        answer.map(|a| a.response_code()),
        Some(ResponseCode::NoError)
    );
}

/// The server (`errors`, `prometheus`) in front of an upstream that never answers.
struct Silent {
    _hole: UdpSocket,
    hole: u16,
    ports: Ports,
    server: Server,
}

impl Silent {
    fn start() -> Silent {
        Silent::with_errors("errors")
    }

    /// With `errors` written as `errors` (its options included).
    fn with_errors(errors: &str) -> Silent {
        let (_hole, hole) = blackhole();
        let ports = Ports::new();
        let corefile = format!(
            "example.:{dns} {{\n    bind 127.0.0.1\n    {errors}\n    forward . 127.0.0.1:{hole}\n    \
             prometheus 127.0.0.1:{metrics}\n}}\n",
            dns = ports.dns,
            metrics = ports.metrics,
        );
        let server = Server::start(&corefile);
        let dns = ports.dns();
        wait_until("DNS listener", Duration::from_secs(10), || {
            TcpStream::connect(dns).is_ok()
        });
        Silent {
            _hole,
            hole,
            ports,
            server,
        }
    }
}

#[test]
fn errors_logs_a_timeout() {
    let Silent {
        _hole,
        hole,
        ports,
        server,
    } = Silent::start();
    let dns = ports.dns();
    let started = Instant::now();
    let answer = udp_exchange(dns, &query(7, "timeout.example.", RecordType::A, false));
    assert_eq!(
        answer.map(|a| a.response_code()),
        Some(ResponseCode::ServFail)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "answered before the deadline"
    );
    // CoreDNS's line, word for word but the attempt's local address.
    let line = format!(
        "[ERROR] plugin/errors: 2 timeout.example. A: read udp 0.0.0.0:0->127.0.0.1:{hole}: i/o timeout"
    );
    wait_until("the errors line", Duration::from_secs(5), || {
        server.log().contains(&line)
    });
    let log = server.log();
    let found: Vec<&str> = log.lines().filter(|l| l.contains(&line)).collect();
    assert_eq!(found.len(), 1, "{log}");
    assert!(found[0].contains(" ERROR errors: "), "{}", found[0]);
    assert!(found[0].ends_with(&line), "{}", found[0]);
    let scrape = scrape(ports.metrics);
    let servfail = [("rcode", "SERVFAIL"), ("plugin", "")];
    let servfails = value(&scrape, "coredns_dns_responses_total", &servfail);
    let samples: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("coredns_dns_re"))
        .collect();
    assert_eq!(servfails, 1.0, "{samples:#?}");
}

/// A storm of failures of one kind (60 cold names, the upstream silent) writes at
/// most 10 whole lines per shard; the rest are counted in
/// `nodelocaldns_errors_summarised_total` (exact accounting: `server/errlog.rs`).
#[test]
fn errors_storm_is_summarised_not_written_line_by_line() {
    const NAMES: u16 = 60;
    const LINES_PER_SHARD: usize = 10;
    let Silent {
        _hole,
        ports,
        server,
        ..
    } = Silent::start();
    let dns = ports.dns();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    for id in 0..NAMES {
        let name = format!("storm{id}.example.");
        let packet = query(id, &name, RecordType::A, false);
        socket.send_to(&packet, dns).expect("send");
    }
    let mut buf = [0u8; 4096];
    for _ in 0..NAMES {
        let (len, _) = socket.recv_from(&mut buf).expect("every query answered");
        let answer = Message::from_vec(&buf[..len]).expect("decode");
        assert_eq!(answer.response_code(), ResponseCode::ServFail);
    }
    // Whole lines name the query; summaries do not.
    let lines = |kind: &str| {
        let log = server.log();
        log.lines()
            .filter(|l| l.contains("[ERROR] plugin/errors: 2 storm") && l.contains(kind))
            .count()
    };
    let summarised = || {
        value(
            &scrape(ports.metrics),
            "nodelocaldns_errors_summarised_total",
            &[],
        )
    };
    let total = usize::from(NAMES);
    wait_until("summarised lines counted", Duration::from_secs(5), || {
        summarised() > 0.0
    });
    let (written, counted) = (lines(""), summarised() as usize);
    let log = server.log();
    // Every failure is written or counted once; the count is read from the shards'
    // last published snapshots, which may lag a second behind.
    assert!(
        written + counted <= total && written < total,
        "{written} written, {counted} summarised of {total}:\n{log}"
    );
    // The upstream's silence is one kind (a marked-down upstream may add another);
    // each shard writes 10 per period, and the storm may straddle two periods.
    let deadline = lines(": i/o timeout");
    assert!(
        (1..=2 * 2 * LINES_PER_SHARD).contains(&deadline),
        "{deadline} whole lines of one kind for {NAMES} failures:\n{log}"
    );
}
