//! The plugins `hosts`, `loadbalance`, `dns64`, `timeouts`, `debug`, `pprof`,
//! `trace`, `log` and `errors` in front of knot, with real clients: every Corefile example of their
//! READMEs starts and answers, and each plugin's behaviour as CoreDNS's.

use std::collections::BTreeSet;
use std::fs;
use std::net::{Ipv6Addr, SocketAddr};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::client::{self, records};
use crate::harness::{kdig_path, Cache};
use crate::readme::{examples, runnable};
use crate::zones;

/// The READMEs of the plugins, by name.
const READMES: [(&str, &str); 9] = [
    ("hosts", include_str!("../../src/plugin/hosts/README.md")),
    (
        "loadbalance",
        include_str!("../../src/plugin/loadbalance/README.md"),
    ),
    ("dns64", include_str!("../../src/plugin/dns64/README.md")),
    (
        "timeouts",
        include_str!("../../src/plugin/timeouts/README.md"),
    ),
    ("debug", include_str!("../../src/plugin/debug/README.md")),
    ("pprof", include_str!("../../src/plugin/pprof/README.md")),
    ("trace", include_str!("../../src/plugin/trace/README.md")),
    ("log", include_str!("../../src/plugin/log/README.md")),
    ("errors", include_str!("../../src/plugin/errors/README.md")),
];

/// The `log` lines (target `log`) the cache has written so far, waiting (bounded)
/// until there are `at_least`.
fn log_lines(cache: &Cache, at_least: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<String> = cache
            .log()
            .lines()
            .filter_map(|l| l.split_once(" log: ").map(|(_, line)| line.to_string()))
            .collect();
        if lines.len() >= at_least || Instant::now() > deadline {
            return lines;
        }
        sleep(Duration::from_millis(20));
    }
}

fn ask(cache: &Cache, name: &str, rtype: RecordType) -> Message {
    client::udp(cache.addr(), &client::query(name, rtype))
}

fn addresses(msg: &Message) -> Vec<String> {
    msg.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.to_string()),
            RData::AAAA(a) => Some(a.to_string()),
            _ => None,
        })
        .collect()
}

/// What a README example must answer, checked against the running example.
fn check_example(plugin: &str, index: usize, cache: &Cache) {
    let www = || {
        let reply = ask(cache, "www.test.", RecordType::A);
        assert_eq!(
            reply.response_code(),
            ResponseCode::NoError,
            "{plugin} #{index}"
        );
        assert_eq!(
            reply.answers().len(),
            2,
            "{plugin} #{index}: www.test A via knot"
        );
    };
    match (plugin, index) {
        ("hosts", 0) => {
            let reply = ask(cache, "api.example.org.", RecordType::A);
            assert_eq!(addresses(&reply), ["10.0.0.1"]);
            let reply = ask(cache, "api.example.org.", RecordType::AAAA);
            assert_eq!(addresses(&reply), ["fd00::1"]);
            www();
        }
        ("hosts", 1) => {
            let reply = ask(cache, "not-in-hosts.example.org.", RecordType::A);
            assert_eq!(reply.response_code(), ResponseCode::ServFail);
            www();
        }
        ("dns64", 0) => {
            // Over IPv4 and without allow_ipv4: the answer is knot's.
            let reply = ask(cache, "nodata.test.", RecordType::AAAA);
            assert_eq!(reply.response_code(), ResponseCode::NoError);
            assert!(
                reply.answers().is_empty(),
                "no synthesis for an IPv4 client"
            );
        }
        ("dns64", 1) => {
            let reply = ask(cache, "nodata.test.", RecordType::AAAA);
            assert_eq!(addresses(&reply), ["2001:db8:64::c000:205"]);
        }
        ("timeouts", 0) => {
            let reply = client::tcp(cache.addr(), &client::query("www.test.", RecordType::A));
            assert_eq!(reply.answers().len(), 2);
        }
        ("log", 0) => {
            www();
            let lines = log_lines(cache, 1);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].starts_with("[INFO] 127.0.0.1:"), "{lines:?}");
            assert!(lines[0].contains("\"A IN www.test. udp "), "{lines:?}");
            assert!(lines[0].contains(" false 512\" NOERROR qr,"), "{lines:?}");
        }
        ("log", 1) => {
            www();
            let nx = ask(cache, "nx.test.", RecordType::A);
            assert_eq!(nx.response_code(), ResponseCode::NXDomain);
            let lines = log_lines(cache, 2);
            assert_eq!(lines.len(), 1, "a denial is not logged: {lines:?}");
            assert!(
                lines[0].starts_with("[INFO] A www.test. NOERROR qr,"),
                "{lines:?}"
            );
            assert!(lines[0].ends_with(",rd udp"), "knot sets no RA: {lines:?}");
        }
        ("log", 2) => {
            www();
            let nx = ask(cache, "nx.test.", RecordType::A);
            assert_eq!(nx.response_code(), ResponseCode::NXDomain);
            let lines = log_lines(cache, 2);
            assert_eq!(lines.len(), 1, "a success is not logged: {lines:?}");
            assert!(lines[0].contains("\"A IN nx.test. udp "), "{lines:?}");
            assert!(lines[0].contains("NXDOMAIN qr,"), "{lines:?}");
            assert!(
                lines[0].ends_with("s \"0\""),
                "the combined format: {lines:?}"
            );
        }
        ("debug" | "pprof" | "trace", 0) => {
            www();
            let log = cache.log();
            let notice = format!("plugin/{plugin} (");
            assert_eq!(
                log.matches(&notice).count(),
                1,
                "{plugin} notice once:\n{log}"
            );
        }
        _ => www(),
    }
}

/// Every Corefile example of the plugins' READMEs parses, starts and answers.
#[test]
fn readme_examples_start_and_answer() {
    let knot = zones::knot();
    let mut ran = 0;
    for (plugin, readme) in READMES {
        let found = examples(readme);
        assert!(
            !found.is_empty(),
            "{plugin}/README.md has no corefile example"
        );
        for (index, example) in found.iter().enumerate() {
            let cache = Cache::start(&runnable(example, &knot), 1);
            check_example(plugin, index, &cache);
            ran += 1;
        }
    }
    assert_eq!(ran, 14, "examples run");
}

const HOSTS_FILE: &str = "# hosts of the test\n192.0.2.200 pinned.test\n2001:db8::200 pinned.test\n\
                          192.0.2.201 only4.test Alias4.test\n192.0.2.250 www.test\nnot-an-ip bad.test\n";

/// A, AAAA, NODATA, PTR, case, inline entries, TTL, fallthrough, SERVFAIL without
/// it, reload, and a file that goes away keeps its entries.
#[test]
fn hosts_answers_reloads_and_keeps_entries() {
    let knot = zones::knot();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hosts");
    fs::write(&file, HOSTS_FILE).expect("hosts file");
    let corefile = format!(
        "test.:$PORT in-addr.arpa.:$PORT {{\n    bind 127.0.0.1\n    prometheus 127.0.0.1:$FREEPORT1\n    \
         hosts {path} test. {{\n        10.0.0.9 inline.test\n        ttl 77\n        reload 1s\n        fallthrough\n    }}\n    \
         forward . 127.0.0.1:{knot}\n}}\n\
         other.:$PORT {{\n    bind 127.0.0.1\n    hosts {path} other. {{\n        10.1.1.1 a.other\n    }}\n}}\n",
        path = file.display(),
        knot = knot.port,
    );
    let cache = Cache::start(&corefile, 2);

    let reply = ask(&cache, "pinned.test.", RecordType::A);
    assert_eq!(addresses(&reply), ["192.0.2.200"]);
    assert!(reply.authoritative());
    assert_eq!(client::answer_ttls(&reply), [77]);
    assert_eq!(
        addresses(&ask(&cache, "pinned.test.", RecordType::AAAA)),
        ["2001:db8::200"]
    );
    assert_eq!(
        addresses(&ask(&cache, "ALIAS4.Test.", RecordType::A)),
        ["192.0.2.201"]
    );
    assert_eq!(
        addresses(&ask(&cache, "inline.test.", RecordType::A)),
        ["10.0.0.9"]
    );
    // The table comes before the upstream.
    assert_eq!(
        addresses(&ask(&cache, "www.test.", RecordType::A)),
        ["192.0.2.250"]
    );
    // A name of the table asked for the other family: NODATA, not the upstream.
    let asked_before = knot.queries_of_type("AAAA");
    let nodata = ask(&cache, "only4.test.", RecordType::AAAA);
    assert_eq!(nodata.response_code(), ResponseCode::NoError);
    assert!(nodata.answers().is_empty());
    assert_eq!(
        knot.queries_of_type("AAAA"),
        asked_before,
        "NODATA came from hosts"
    );
    // Not in the table: fallthrough to knot.
    let mx = ask(&cache, "test.", RecordType::MX);
    assert_eq!(mx.answers().len(), 2, "MX of test. from knot");
    // PTR from the file, though the plugin's zones are only test.
    let ptr = ask(&cache, "200.2.0.192.in-addr.arpa.", RecordType::PTR);
    let names: Vec<String> = ptr.answers().iter().map(|r| r.data().to_string()).collect();
    assert_eq!(names, ["pinned.test."]);
    // Without fallthrough: a name of the zones not in the table is SERVFAIL.
    let other = ask(&cache, "b.other.", RecordType::A);
    assert_eq!(other.response_code(), ResponseCode::ServFail);
    assert!(ask(&cache, "a.other.", RecordType::MX).answers().is_empty());

    // kdig, a real client, over TCP.
    let out = Command::new(kdig_path())
        .args([
            "@127.0.0.1",
            "-p",
            &cache.port.to_string(),
            "+tcp",
            "+short",
            "pinned.test",
            "A",
        ])
        .output()
        .expect("running kdig");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "192.0.2.200");

    // The file changes: new entries within a few reload periods.
    let metrics = cache.metrics();
    let entries_before = crate::harness::metric_sum(&metrics, "coredns_hosts_entries");
    assert!(entries_before >= 7.0, "entries {entries_before}");
    assert!(crate::harness::metric_sum(&metrics, "coredns_hosts_reload_timestamp_seconds") > 1.0e9);
    fs::write(&file, format!("{HOSTS_FILE}192.0.2.202 new.test\n")).expect("rewrite hosts");
    // Each shard reads it on its own: wait until answers from fresh sockets (spread
    // over the shards by SO_REUSEPORT) agree, then one more period and sweep.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut agreeing = 0;
    while agreeing < 10 {
        assert!(
            Instant::now() < deadline,
            "new.test never answered from the file"
        );
        if addresses(&ask(&cache, "new.test.", RecordType::A)) == ["192.0.2.202"] {
            agreeing += 1;
        } else {
            agreeing = 0;
            sleep(Duration::from_millis(200));
        }
    }
    sleep(Duration::from_millis(2500));
    // The file goes away: the last entries stay, the failures are counted.
    fs::remove_file(&file).expect("remove hosts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.metric_sum("nodelocaldns_hosts_read_failures_total") < 1.0 {
        assert!(Instant::now() < deadline, "failed reads never counted");
        sleep(Duration::from_millis(200));
    }
    assert_eq!(
        addresses(&ask(&cache, "new.test.", RecordType::A)),
        ["192.0.2.202"]
    );
    assert_eq!(
        addresses(&ask(&cache, "pinned.test.", RecordType::A)),
        ["192.0.2.200"]
    );
    let hosts_answers: f64 = cache
        .metrics()
        .lines()
        .filter(|l| l.starts_with("coredns_dns_responses_total{") && l.contains("plugin=\"hosts\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        hosts_answers >= 10.0,
        "answers labelled plugin=hosts: {hosts_answers}"
    );
}

/// `loadbalance`: the same records, in more than one order, hit or miss; MX records
/// keep their additional addresses.
#[test]
fn loadbalance_shuffles_addresses_and_mx() {
    let knot = zones::knot();
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    loadbalance\n    cache 30\n    forward . 127.0.0.1:{}\n}}\n",
        knot.port
    );
    let cache = Cache::start(&corefile, 1);
    for (name, rtype) in [
        (zones::SIXTY, RecordType::A),
        ("test.", RecordType::MX),
        ("www.test.", RecordType::AAAA),
    ] {
        let direct = client::tcp(knot.addr(), &client::query(name, rtype));
        let mut orders = BTreeSet::new();
        for _ in 0..30 {
            let reply = client::tcp(cache.addr(), &client::query(name, rtype));
            assert_eq!(
                records(reply.answers()),
                records(direct.answers()),
                "{name} {rtype}"
            );
            assert_eq!(
                records(reply.additionals()),
                records(direct.additionals()),
                "{name} {rtype}"
            );
            let order: Vec<String> = reply
                .answers()
                .iter()
                .map(|r| r.data().to_string())
                .collect();
            orders.insert(order);
        }
        assert!(orders.len() > 1, "{name} {rtype} always in one order");
    }
}

/// Without `loadbalance` a cached answer keeps the upstream's order.
#[test]
fn without_loadbalance_order_is_kept() {
    let knot = zones::knot();
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    cache 30\n    forward . 127.0.0.1:{}\n}}\n",
        knot.port
    );
    let cache = Cache::start(&corefile, 1);
    let orders: BTreeSet<Vec<String>> = (0..10)
        .map(|_| {
            let reply = client::tcp(cache.addr(), &client::query(zones::SIXTY, RecordType::A));
            reply
                .answers()
                .iter()
                .map(|r| r.data().to_string())
                .collect()
        })
        .collect();
    assert_eq!(orders.len(), 1);
}

/// `timeouts`: a silent client is closed after `read`, not CoreDNS's 3 s; a
/// connection ends after `max_queries` answers.
#[test]
fn timeouts_read_and_max_queries() {
    let knot = zones::knot();
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    timeouts {{\n        read 1s\n        idle 20s\n        max_queries 2\n    }}\n    \
         forward . 127.0.0.1:{}\n}}\n",
        knot.port
    );
    let cache = Cache::start(&corefile, 1);
    let mut silent = client::tcp_connect(cache.addr());
    let started = Instant::now();
    assert!(
        client::closed_by_peer(&mut silent),
        "silent client not closed"
    );
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(2800),
        "closed after {waited:?}, want ~1s"
    );
    assert!(
        waited >= Duration::from_millis(800),
        "closed after {waited:?}, before read"
    );

    let mut stream = client::tcp_connect(cache.addr());
    for _ in 0..2 {
        client::tcp_send(
            &mut stream,
            &client::encode(&client::query("www.test.", RecordType::A)),
        );
        let reply = client::decode(&client::tcp_recv(&mut stream).expect("answer"));
        assert_eq!(reply.answers().len(), 2);
    }
    let started = Instant::now();
    assert!(
        client::closed_by_peer(&mut stream),
        "not closed after max_queries"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed by max_queries, not idle"
    );
}

/// A directive node-cache does not know stops the server with file:line.
#[test]
fn unknown_directive_is_an_error_with_its_line() {
    let mut cache = Cache::launch(
        ".:$PORT {\n    bind 127.0.0.1\n    kubernetes cluster.local\n}\n",
        1,
    );
    let status = cache
        .wait_exit(Duration::from_secs(10))
        .expect("the server must refuse to start");
    assert!(!status.success());
    let log = cache.log();
    assert!(
        log.contains("Corefile:3: unknown directive \"kubernetes\""),
        "log: {log}"
    );
}

fn ask_v6(port: u16, name: &str, rtype: RecordType) -> Message {
    client::udp(
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        &client::query(name, rtype),
    )
}

/// `dns64` for IPv6 clients: AAAA made of the A records when the AAAA answer is
/// empty (from the upstream, the cache, or `hosts`), never for real AAAA records,
/// NXDOMAIN or IPv4 clients.
#[test]
fn dns64_synthesises_for_ipv6_clients() {
    let knot = zones::knot();
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1 ::1\n    prometheus 127.0.0.1:$FREEPORT1\n    dns64\n    \
         hosts {{\n        192.0.2.77 only4.test\n        fallthrough\n    }}\n    cache 30\n    \
         forward . 127.0.0.1:{}\n}}\n",
        knot.port
    );
    let cache = Cache::start(&corefile, 1);
    let port = cache.port;
    // Twice: from the upstream, then from the cache (the NODATA and the A are hits).
    for _ in 0..2 {
        let reply = ask_v6(port, "nodata.test.", RecordType::AAAA);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(addresses(&reply), ["64:ff9b::c000:205"]);
        assert_eq!(reply.answers()[0].name().to_ascii(), "nodata.test.");
    }
    assert_eq!(
        addresses(&ask_v6(port, "only4.test.", RecordType::AAAA)),
        ["64:ff9b::c000:24d"]
    );
    // Real AAAA records stay; NXDOMAIN stays; IPv4 clients get the plain answer.
    let mut real = addresses(&ask_v6(port, "www.test.", RecordType::AAAA));
    real.sort();
    assert_eq!(real, ["2001:db8::1", "2001:db8::2"]);
    let nx = ask_v6(port, "nx.test.", RecordType::AAAA);
    assert_eq!(nx.response_code(), ResponseCode::NXDomain);
    assert!(ask(&cache, "nodata.test.", RecordType::AAAA)
        .answers()
        .is_empty());
    // A CNAME chain stays in front of the synthesised records.
    let chained = ask_v6(port, "alias.test.", RecordType::A);
    assert_eq!(chained.answers().len(), 4, "A question untouched");
    // kdig over TCP, from ::1.
    let out = Command::new(kdig_path())
        .args([
            "@::1",
            "-p",
            &port.to_string(),
            "+tcp",
            "+short",
            "nodata.test",
            "AAAA",
        ])
        .output()
        .expect("running kdig");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "64:ff9b::c000:205"
    );
    assert_eq!(
        cache.metric_sum("coredns_dns64_requests_translated_total"),
        4.0
    );
}
