//! The Corefile Kubernetes' NodeLocal DNSCache ships, with its placeholders filled in
//! for 127.0.0.1: four server blocks on one port, `reload`, `loop`, `prometheus`, `health`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client;
use crate::harness::{Cache, Knot, Zone};
use crate::zones::TEST_ZONE;

const CLUSTER_ZONE: &str = r#"$ORIGIN cluster.local.
$TTL 30
@                        SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30
@                        NS  ns.dns
ns.dns                   A   10.0.0.10
kube-dns.kube-system.svc A   10.0.0.10
"#;

const REVERSE4_ZONE: &str = r#"$ORIGIN 10.in-addr.arpa.
$TTL 30
@         SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30
@         NS  ns.dns.cluster.local.
10.0.0    PTR kube-dns.kube-system.svc.cluster.local.
"#;

/// `2001:db8::/32` reversed.
const REVERSE6_ORIGIN: &str = "8.b.d.0.1.0.0.2.ip6.arpa.";
/// The 24 nibbles of `2001:db8::1` below the /32, reversed.
const REVERSE6_OWNER: &str = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0";

fn reverse6_zone() -> String {
    format!(
        "$ORIGIN {REVERSE6_ORIGIN}\n$TTL 30\n@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30\n\
         @ NS ns.dns.cluster.local.\n{REVERSE6_OWNER} PTR www.test.\n"
    )
}

/// node-cache's `Corefile` (k8s.io/dns, nodelocaldns.yaml) for a knot at `knot`.
fn node_cache_corefile(knot: u16) -> String {
    let stub = |zone: &str, cache: &str, extra: &str| {
        format!(
            "{zone}:$PORT {{\n    errors\n    {cache}\n    reload\n    loop\n    bind 127.0.0.1\n    \
             forward . 127.0.0.1:{knot} {{\n            force_tcp\n    }}\n    prometheus 127.0.0.1:$FREEPORT1\n{extra}    }}\n"
        )
    };
    let cluster_cache = "cache {\n            success 9984 30\n            denial 9984 5\n    }";
    stub(
        "cluster.local",
        cluster_cache,
        "    health 127.0.0.1:$FREEPORT2\n",
    ) + &stub("in-addr.arpa", "cache 30", "")
        + &stub("ip6.arpa", "cache 30", "")
        + &format!(
            ".:$PORT {{\n    errors\n    cache 30\n    reload\n    loop\n    bind 127.0.0.1\n    \
             forward . 127.0.0.1:{knot}\n    prometheus 127.0.0.1:$FREEPORT1\n    }}\n"
        )
}

fn start() -> (Knot, Cache) {
    let knot = Knot::start(&[
        Zone::new("cluster.local.", CLUSTER_ZONE),
        Zone::new("test.", TEST_ZONE),
        Zone::new("10.in-addr.arpa.", REVERSE4_ZONE),
        Zone::new(REVERSE6_ORIGIN, &reverse6_zone()),
    ]);
    let cache = Cache::start(&node_cache_corefile(knot.port), 2);
    (knot, cache)
}

/// One query per server block, over UDP and TCP, each answered with knot's data.
fn node_cache_corefile_answers_every_block() {
    let (knot, cache) = start();
    let reverse6 = format!("{REVERSE6_OWNER}.{REVERSE6_ORIGIN}");
    let cases = [
        (
            "kube-dns.kube-system.svc.cluster.local.",
            RecordType::A,
            "10.0.0.10",
        ),
        (
            "10.0.0.10.in-addr.arpa.",
            RecordType::PTR,
            "kube-dns.kube-system.svc.cluster.local.",
        ),
        (reverse6.as_str(), RecordType::PTR, "www.test."),
        ("mx1.test.", RecordType::A, "192.0.2.10"),
    ];
    for (name, rtype, data) in cases {
        for over_tcp in [false, true, false] {
            let query = client::query(name, rtype);
            let reply = if over_tcp {
                client::tcp(cache.addr(), &query)
            } else {
                client::udp(cache.addr(), &query)
            };
            let what = format!("{name} {rtype} (tcp: {over_tcp})");
            assert_eq!(
                reply.response_code(),
                ResponseCode::NoError,
                "{what}: {reply:?}"
            );
            let got: Vec<String> = reply
                .answers()
                .iter()
                .map(|r| r.data().to_string())
                .collect();
            assert_eq!(got, [data], "{what}");
        }
    }
    assert!(
        knot.queries_of_type("PTR") >= 2,
        "the reverse blocks forward to knot"
    );
}

/// The same Corefile as a ConfigMap copied from CoreDNS 1.14 docs would have it:
/// serve_stale with `verify`, its timeout, TTL and recheck, and `prefer_positive`,
/// in the cluster block; it starts on two shards and answers every block.
#[test]
fn node_cache_corefile_with_serve_stale_verify_answers() {
    let knot = Knot::start(&[
        Zone::new("cluster.local.", CLUSTER_ZONE),
        Zone::new("test.", TEST_ZONE),
    ]);
    let corefile = node_cache_corefile(knot.port).replacen(
        "denial 9984 5\n",
        "denial 9984 5\n            serve_stale 1h verify 100ms 30s 30s\n            \
         serve_stale_policy prefer_positive\n",
        1,
    );
    assert!(corefile.contains("verify 100ms"), "{corefile}");
    cluster_and_root_answer_twice(&corefile, &knot);
}

/// Starts `corefile` (a variant of node-cache's) on two shards: a cluster name and a
/// root-block name are answered with knot's data twice, the second from the cache.
fn cluster_and_root_answer_twice(corefile: &str, knot: &Knot) {
    let cache = Cache::start(corefile, 2);
    for (name, data) in [
        ("kube-dns.kube-system.svc.cluster.local.", "10.0.0.10"),
        ("mx1.test.", "192.0.2.10"),
    ] {
        for i in 0..2 {
            let reply = client::udp(cache.addr(), &client::query(name, RecordType::A));
            assert_eq!(reply.response_code(), ResponseCode::NoError, "{name} #{i}");
            let got: Vec<String> = reply
                .answers()
                .iter()
                .map(|r| r.data().to_string())
                .collect();
            assert_eq!(got, [data], "{name} #{i}");
        }
    }
    assert_eq!(knot.queries_of_type("A"), 2, "the second of each is a hit");
}

/// node-cache's Corefile with the `forward` options of CoreDNS 1.14 that
/// distributions set (`max_age`, `read_timeout`, and `max_connect_attempts`,
/// `max_idle_conns`) in every block: it starts on two shards and answers.
#[test]
fn node_cache_corefile_with_forward_max_age_read_timeout_answers() {
    let knot = Knot::start(&[
        Zone::new("cluster.local.", CLUSTER_ZONE),
        Zone::new("test.", TEST_ZONE),
    ]);
    let options = "max_age 5m\n            read_timeout 1500ms\n            \
                   max_connect_attempts 3\n            max_idle_conns 2\n";
    let root_forward = format!("forward . 127.0.0.1:{}\n", knot.port);
    let corefile = node_cache_corefile(knot.port)
        .replace("force_tcp\n", &format!("force_tcp\n            {options}"))
        .replace(
            &root_forward,
            &root_forward.replace('\n', &format!(" {{\n            {options}    }}\n")),
        );
    assert_eq!(corefile.matches("max_age 5m").count(), 4, "{corefile}");
    cluster_and_root_answer_twice(&corefile, &knot);
}

/// What a query asked of a variant must get back: its rcode, its answers' data (in
/// any order) and, when set, the owner name of the question and every answer.
struct Expect {
    name: &'static str,
    rtype: RecordType,
    rcode: ResponseCode,
    data: &'static [&'static str],
    owner: Option<&'static str>,
}

/// The node-local-dns ConfigMap variants distributions ship (the upstream Corefile
/// plus one plugin each, in the block where they put it): each starts on two shards
/// and answers as the plugin says, the other blocks as before.
#[test]
fn node_cache_corefile_variants_of_distributions_start_and_answer() {
    let cluster_forward = "    forward . 127.0.0.1:KNOT {\n";
    // (what, the line it goes before, the directive, what queries get back)
    let variants: [(&str, &str, &str, Vec<Expect>); 5] = [
        (
            // IPv4-only clusters: AAAA answered locally, empty (kubernetes/dns #406).
            "template ANY AAAA",
            cluster_forward,
            "    template ANY AAAA {\n        rcode NOERROR\n    }\n",
            vec![
                Expect { name: "kube-dns.kube-system.svc.cluster.local.", rtype: RecordType::AAAA, rcode: ResponseCode::NoError, data: &[], owner: None },
                Expect { name: "kube-dns.kube-system.svc.cluster.local.", rtype: RecordType::A, rcode: ResponseCode::NoError, data: &["10.0.0.10"], owner: None },
            ],
        ),
        (
            // Critical names pinned on the node (AKS LocalDNS ships `hosts`).
            "hosts with fallthrough",
            cluster_forward,
            "    hosts {\n        10.0.0.99 critical.cluster.local\n        fallthrough\n    }\n",
            vec![
                Expect { name: "critical.cluster.local.", rtype: RecordType::A, rcode: ResponseCode::NoError, data: &["10.0.0.99"], owner: None },
                Expect { name: "kube-dns.kube-system.svc.cluster.local.", rtype: RecordType::A, rcode: ResponseCode::NoError, data: &["10.0.0.10"], owner: None },
            ],
        ),
        (
            // A renamed service: the client sees its own name back.
            "rewrite name",
            cluster_forward,
            "    rewrite name exact old-dns.cluster.local kube-dns.kube-system.svc.cluster.local answer auto\n",
            vec![
                Expect { name: "old-dns.cluster.local.", rtype: RecordType::A, rcode: ResponseCode::NoError, data: &["10.0.0.10"], owner: Some("old-dns.cluster.local.") },
                Expect { name: "kube-dns.kube-system.svc.cluster.local.", rtype: RecordType::A, rcode: ResponseCode::NoError, data: &["10.0.0.10"], owner: None },
            ],
        ),
        (
            "loadbalance",
            "    forward . 127.0.0.1:KNOT\n",
            "    loadbalance round_robin\n",
            vec![
                Expect { name: "www.test.", rtype: RecordType::A, rcode: ResponseCode::NoError, data: &["192.0.2.1", "192.0.2.2"], owner: None },
            ],
        ),
        (
            "log",
            cluster_forward,
            "    log\n",
            vec![
                Expect { name: "kube-dns.kube-system.svc.cluster.local.", rtype: RecordType::A, rcode: ResponseCode::NoError, data: &["10.0.0.10"], owner: None },
            ],
        ),
    ];
    for (what, before, directive, expects) in variants {
        let knot = Knot::start(&[
            Zone::new("cluster.local.", CLUSTER_ZONE),
            Zone::new("test.", TEST_ZONE),
        ]);
        let port = knot.port.to_string();
        let before = before.replace("KNOT", &port);
        let base = node_cache_corefile(knot.port);
        assert!(base.contains(&before), "{what}: no place for it in\n{base}");
        let corefile = base.replacen(&before, &format!("{directive}{before}"), 1);
        let cache = Cache::start(&corefile, 2);
        for e in &expects {
            for over_tcp in [false, true] {
                let query = client::query(e.name, e.rtype);
                let reply = if over_tcp {
                    client::tcp(cache.addr(), &query)
                } else {
                    client::udp(cache.addr(), &query)
                };
                let label = format!("{what}: {} {} (tcp: {over_tcp})", e.name, e.rtype);
                assert_eq!(
                    reply.response_code(),
                    e.rcode,
                    "{label}: {reply:?}\n{}",
                    cache.log()
                );
                let mut got: Vec<String> = reply
                    .answers()
                    .iter()
                    .map(|r| r.data().to_string())
                    .collect();
                got.sort();
                assert_eq!(got, e.data, "{label}");
                if let Some(owner) = e.owner {
                    for record in reply.answers() {
                        assert_eq!(record.name().to_string(), owner, "{label}");
                    }
                    assert_eq!(reply.queries()[0].name().to_string(), owner, "{label}");
                }
            }
        }
        match what {
            "template ANY AAAA" => assert_eq!(knot.queries_of_type("AAAA"), 0, "{what}"),
            "hosts with fallthrough" => assert_eq!(
                knot.queries_of_type("A"),
                1,
                "{what}: only kube-dns goes upstream, once"
            ),
            "log" => {
                let log = cache.log();
                let line = log
                    .lines()
                    .find(|l| l.contains("\"A IN kube-dns.kube-system.svc.cluster.local."))
                    .unwrap_or_else(|| panic!("{what}: no query line in\n{log}"));
                assert!(line.contains("NOERROR"), "{what}: {line}");
                assert!(
                    line.contains("udp") || line.contains("tcp"),
                    "{what}: {line}"
                );
            }
            _ => {}
        }
    }
}

/// `health 127.0.0.1:PORT` on the first block: GET /health → 200 OK.
#[test]
fn node_cache_corefile_serves_health() {
    let (_knot, cache) = start();
    let response = http_get(
        SocketAddr::from(([127, 0, 0, 1], cache.free_ports[1])),
        "/health",
        &cache,
    );
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "GET /health: {response:?}"
    );
    assert!(
        response.trim_end().ends_with("OK"),
        "GET /health body: {response:?}"
    );
}

/// The whole response to `GET path` (status line, headers, body).
fn http_get(addr: SocketAddr, path: &str, cache: &Cache) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("HTTP endpoint {addr} not listening: {e}\n{}", cache.log()));
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// `prometheus 127.0.0.1:PORT`: GET /metrics → 200 with CoreDNS-named series that
/// count the queries just made.
#[test]
fn node_cache_corefile_serves_metrics() {
    let (_knot, cache) = start();
    for _ in 0..3 {
        client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    }
    let response = http_get(
        SocketAddr::from(([127, 0, 0, 1], cache.free_ports[0])),
        "/metrics",
        &cache,
    );
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "GET /metrics: {response:.300}"
    );
    for series in [
        "coredns_dns_requests_total",
        "coredns_dns_responses_total",
        "coredns_cache_hits_total",
        "coredns_cache_misses_total",
    ] {
        assert!(
            response.contains(series),
            "/metrics lacks {series}:\n{response}"
        );
    }
}

/// `loop`: a block forwarding to itself is detected and the server exits with a clear
/// message instead of amplifying queries.
#[test]
fn forwarding_loop_is_detected() {
    let corefile = ".:$PORT {\n    bind 127.0.0.1\n    errors\n    cache 30\n    loop\n    forward . 127.0.0.1:$PORT\n}\n";
    let mut cache = Cache::launch(corefile, 1);
    let status = cache.wait_exit(Duration::from_secs(10));
    let log = cache.log();
    let status = status
        .unwrap_or_else(|| panic!("still running 10 s after start with a forwarding loop:\n{log}"));
    assert!(
        !status.success(),
        "a detected loop is a failure exit, got {status}"
    );
    assert!(
        log.to_lowercase().contains("loop"),
        "the log must say a loop was detected:\n{log}"
    );
}

/// SIGTERM stops the server promptly and cleanly.
fn stops_on_sigterm() {
    let (_knot, mut cache) = start();
    client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    let (status, by_sigterm) = cache.stop();
    assert!(
        by_sigterm,
        "still running 3 s after SIGTERM (SIGKILL'd):\n{}",
        cache.log()
    );
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        cache.log()
    );
}

/// `reload 2s 1s`: a changed Corefile (forward to another knot) takes effect within a
/// few seconds on the same port; a Corefile that does not parse leaves it running.
fn reload_applies_a_new_corefile_and_keeps_the_old_on_errors() {
    let first = Knot::start(&[Zone::new("test.", TEST_ZONE)]);
    let second_zone = TEST_ZONE.replace(crate::zones::MANY_ADDR, "198.51.100.7");
    let second = Knot::start(&[Zone::new("test.", &second_zone)]);
    let corefile = |knot: &Knot| {
        format!(".:$PORT {{\n    bind 127.0.0.1\n    errors\n    cache 30\n    reload 2s 1s\n    forward . 127.0.0.1:{}\n}}\n", knot.port)
    };
    let cache = Cache::start(&corefile(&first), 1);
    let mut asked = 0;
    // Fresh names each time, so nothing comes from cache.
    let mut ask = || {
        asked += 1;
        let reply = client::udp(
            cache.addr(),
            &client::query(&format!("r{asked}.many.test."), RecordType::A),
        );
        reply
            .answers()
            .first()
            .map(|r| r.data().to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        ask(),
        crate::zones::MANY_ADDR,
        "before the reload, the first knot answers"
    );
    cache.rewrite_corefile(&corefile(&second));
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let mut answer = ask();
    while answer != "198.51.100.7" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        answer = ask();
    }
    assert_eq!(
        answer, "198.51.100.7",
        "8 s after the Corefile changed the server still forwards to the old knot"
    );
    cache.rewrite_corefile(".:$PORT {\n    bind 127.0.0.1\n    no_such_directive\n");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        ask(),
        "198.51.100.7",
        "a Corefile that does not parse must leave the running one in place"
    );
    let mut cache = cache;
    assert!(
        cache.alive(),
        "a bad Corefile on reload must not stop the server:\n{}",
        cache.log()
    );
}

/// A reload keeps the cache of a block whose zones and `cache` settings did not
/// change (a cold cache after every reload would send a burst of misses upstream),
/// and starts a block whose `cache` settings changed cold.
fn reload_keeps_an_unchanged_cache_and_drops_a_changed_one() {
    let first = Knot::start(&[Zone::new("test.", TEST_ZONE)]);
    let second_zone = TEST_ZONE.replace(crate::zones::MANY_ADDR, "198.51.100.7");
    let second = Knot::start(&[Zone::new("test.", &second_zone)]);
    let corefile = |knot: &Knot, ttl: u32| {
        format!(".:$PORT {{\n    bind 127.0.0.1\n    cache {ttl}\n    reload 2s 1s\n    forward . 127.0.0.1:{}\n}}\n", knot.port)
    };
    let cache = Cache::start(&corefile(&first, 30), 1);
    let ask = |name: &str| {
        let reply = client::udp(cache.addr(), &client::query(name, RecordType::A));
        reply
            .answers()
            .first()
            .map(|r| r.data().to_string())
            .unwrap_or_default()
    };
    assert_eq!(ask("kept.many.test."), crate::zones::MANY_ADDR);
    // Same cache settings, another upstream: a fresh name shows the reload is applied,
    // the cached one must still come from the first knot's answer.
    cache.rewrite_corefile(&corefile(&second, 30));
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    let mut asked = 0;
    let mut fresh = || {
        asked += 1;
        ask(&format!("f{asked}.many.test."))
    };
    while fresh() != "198.51.100.7" {
        assert!(
            std::time::Instant::now() < deadline,
            "8 s after the Corefile changed the server still forwards to the first knot"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        ask("kept.many.test."),
        crate::zones::MANY_ADDR,
        "a reload with the same cache settings must keep the cached answer"
    );
    // Changed cache settings: the block starts cold, so the second knot answers.
    cache.rewrite_corefile(&corefile(&second, 31));
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while ask("kept.many.test.") != "198.51.100.7" {
        assert!(
            std::time::Instant::now() < deadline,
            "8 s after the cache settings changed the old cached answer is still served"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `health { lameduck 2s }`: after SIGTERM the server keeps answering for 2 s, then exits.
#[test]
fn lameduck_keeps_serving_after_sigterm() {
    let knot = Knot::start(&[Zone::new("test.", TEST_ZONE)]);
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    errors\n    health 127.0.0.1:$FREEPORT2 {{\n        lameduck 2s\n    }}\n    \
         cache 30\n    forward . 127.0.0.1:{}\n}}\n",
        knot.port
    );
    let mut cache = Cache::start(&corefile, 1);
    let start = std::time::Instant::now();
    cache.terminate();
    std::thread::sleep(Duration::from_millis(800));
    let reply = client::udp_try(
        cache.addr(),
        &client::query("www.test.", RecordType::A),
        Duration::from_secs(1),
    );
    assert!(
        reply.is_some_and(|r| r.answers().len() == 2),
        "0.8 s into a 2 s lameduck the server must still answer"
    );
    let status = cache
        .wait_exit(Duration::from_secs(5))
        .expect("still running 5 s after SIGTERM with lameduck 2s");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "exited {took:?} after SIGTERM, before the 2 s lameduck ended"
    );
    assert!(status.success(), "exit status after lameduck: {status}");
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(
    node_cache_corefile_answers_every_block,
    stops_on_sigterm,
    reload_applies_a_new_corefile_and_keeps_the_old_on_errors,
    reload_keeps_an_unchanged_cache_and_drops_a_changed_one,
);
