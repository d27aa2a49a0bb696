//! `forward`'s CoreDNS 1.14 options in front of a real knot: the README's examples
//! run as written, `max_age` replaces connections without losing or repeating a
//! query, `source_address` binds the upstream sockets, and nothing goes upstream
//! before a client asks. (The faults — a silent upstream, a wrong question — are
//! scripted in the reliability suite, where the fault is the point.)

use std::thread::sleep;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client;
use crate::harness::{corefile, Cache, Knot, Zone, CACHE_30};
use crate::readme::{examples, runnable};
use crate::upstream_pool::established_to;
use crate::zones;

/// Every query knot received, over any transport.
fn knot_requests(knot: &Knot) -> u64 {
    knot.stats()
        .iter()
        .filter(|(key, _)| key.starts_with("mod-stats.request-protocol["))
        .map(|(_, count)| count)
        .sum()
}

/// Local addresses of the established TCP connections to `port`.
fn local_addrs_to(port: u16) -> Vec<String> {
    established_to(port)
        .iter()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

/// Each example of the README starts and answers through knot.
fn forward_readme_examples_run() {
    let knot = zones::knot();
    let found = examples(include_str!("../../src/plugin/forward/README.md"));
    assert_eq!(found.len(), 4, "the README's examples");
    for (index, example) in found.iter().enumerate() {
        let cache = Cache::start(&runnable(example, &knot), 1);
        for transport in ["udp", "tcp"] {
            let query = client::query("www.test.", RecordType::A);
            let reply = match transport {
                "udp" => client::udp(cache.addr(), &query),
                _ => client::tcp(cache.addr(), &query),
            };
            assert_eq!(reply.response_code(), ResponseCode::NoError, "#{index}");
            assert_eq!(reply.answers().len(), 2, "#{index} over {transport}");
        }
        // `next` / `next_on_nodata` (the last example) change nothing, and say so once.
        let notices = cache.log().matches("plugin/forward (").count();
        assert_eq!(
            notices,
            usize::from(index == 3),
            "#{index}:\n{}",
            cache.log()
        );
    }
}

/// node-cache sends nothing upstream until a client asks (only `loop`'s probe, to
/// itself); health checks start after a failed attempt.
fn forward_sends_nothing_upstream_at_start() {
    let knot = zones::knot();
    // The harness's own "is knot up" query.
    let before = knot_requests(&knot);
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 2);
    sleep(Duration::from_secs(1));
    assert_eq!(knot_requests(&knot), before, "stats: {:?}", knot.stats());
    let reply = client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    assert_eq!(reply.answers().len(), 2);
    assert_eq!(
        knot_requests(&knot),
        before + 1,
        "stats: {:?}",
        knot.stats()
    );
}

/// `max_age`: with queries flowing for several ages, each connection is replaced
/// when it gets old, and every query reaches knot exactly once (none lost on a
/// retired connection, none sent twice).
fn forward_max_age_replaces_connections_without_losing_queries() {
    let knot = zones::knot();
    let options = ["force_tcp", "expire 1s", "max_age 1s"];
    let cache = Cache::start(
        &corefile(
            &knot,
            CACHE_30,
            &options,
            &["prometheus 127.0.0.1:$FREEPORT1"],
        ),
        1,
    );
    const QUERIES: u32 = 120;
    for i in 0..QUERIES {
        let name = format!("age{i}.many.test.");
        let reply = client::udp(cache.addr(), &client::query(&name, RecordType::A));
        assert_eq!(reply.response_code(), ResponseCode::NoError, "{name}");
        assert_eq!(reply.answers().len(), 1, "{name}");
        sleep(Duration::from_millis(30));
    }
    assert_eq!(
        knot.queries_of_type("A"),
        u64::from(QUERIES),
        "each query reached knot once"
    );
    let tcp_opened = cache
        .metrics()
        .lines()
        .filter(|l| l.starts_with("coredns_proxy_conn_cache_misses_total") && l.contains("tcp"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(
        tcp_opened >= 3.0,
        "about 4 s of queries with max_age 1s: {tcp_opened} TCP connections"
    );
}

/// `source_address`: upstream sockets are bound to it (TCP seen by `ss`; UDP answers).
fn forward_source_address_binds_upstream_sockets() {
    let knot = zones::knot();
    for options in [
        &["source_address 127.0.0.2"][..],
        &["source_address 127.0.0.2", "force_tcp"],
    ] {
        let cache = Cache::start(&corefile(&knot, CACHE_30, options, &[]), 1);
        let reply = client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
        assert_eq!(reply.answers().len(), 2, "{options:?}");
        if options.contains(&"force_tcp") {
            let locals = local_addrs_to(knot.port);
            assert!(!locals.is_empty(), "an upstream connection is open");
            assert!(
                locals.iter().all(|l| l.starts_with("127.0.0.2:")),
                "bound to the source address: {locals:?}"
            );
        }
    }
}

/// `read_timeout` and `max_connect_attempts` against a port where nothing answers
/// over UDP (a bound socket that never reads): SERVFAIL after the attempts, counted.
fn forward_max_connect_attempts_bounds_a_silent_upstream() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    prometheus 127.0.0.1:$FREEPORT1\n    forward . 127.0.0.1:{port} {{\n        read_timeout 300ms\n        max_connect_attempts 3\n        max_fails 0\n    }}\n}}\n"
    );
    let cache = Cache::start(&corefile, 1);
    let started = std::time::Instant::now();
    let reply = client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    let took = started.elapsed();
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    // Each attempt waited out its read_timeout (a floor, which load cannot break);
    // that there were exactly three is counted below, not timed.
    assert!(
        took >= Duration::from_millis(900),
        "three attempts of 300 ms: {took:?}"
    );
    assert_eq!(
        cache.metric_sum("nodelocaldns_forward_connect_attempts_exceeded_total"),
        1.0
    );
    let failures = cache.metrics();
    let to = format!("to=\"127.0.0.1:{port}\"");
    let line = |reason: &str| {
        failures.lines().find(|l| {
            l.starts_with("nodelocaldns_forward_attempt_failures_total{")
                && l.contains(&to)
                && l.contains(&format!("reason=\"{reason}\""))
        })
    };
    let value = |reason| line(reason).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert_eq!(
        (value("timeout"), value("error")),
        (Some(3.0), Some(0.0)),
        "three timed-out attempts:\n{failures}"
    );
}

/// `failover REFUSED`: a first knot that does not serve `test.` answers REFUSED and
/// the query goes on to the second, which does; without it the REFUSED is the
/// answer (CoreDNS passes any rcode on). Once every upstream refused, the last
/// REFUSED is returned.
fn forward_failover_tries_the_next_upstream_on_its_rcodes() {
    let other = Knot::start(&[Zone::new("other.", "$ORIGIN other.\n$TTL 300\n@ SOA ns.other. host.other. 1 3600 600 86400 3600\n@ NS ns\nns A 127.0.0.1\n")]);
    let knot = zones::knot();
    let forward = |failover: &str| {
        format!(
            ".:$PORT {{\n    bind 127.0.0.1\n    forward . 127.0.0.1:{} 127.0.0.1:{} {{\n        policy sequential\n{failover}    }}\n}}\n",
            other.port, knot.port
        )
    };
    let query = client::query("www.test.", RecordType::A);
    let plain = Cache::start(&forward(""), 1);
    assert_eq!(
        client::udp(plain.addr(), &query).response_code(),
        ResponseCode::Refused
    );
    let failover = Cache::start(&forward("        failover SERVFAIL REFUSED\n"), 1);
    let reply = client::udp(failover.addr(), &query);
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(reply.answers().len(), 2, "from the second knot");
    let nobody = client::query("www.nowhere.", RecordType::A);
    let reply = client::udp(failover.addr(), &nobody);
    assert_eq!(reply.response_code(), ResponseCode::Refused, "both refused");
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(
    forward_readme_examples_run,
    forward_sends_nothing_upstream_at_start,
    forward_max_age_replaces_connections_without_losing_queries,
    forward_source_address_binds_upstream_sockets,
    forward_max_connect_attempts_bounds_a_silent_upstream,
    forward_failover_tries_the_next_upstream_on_its_rcodes,
);
