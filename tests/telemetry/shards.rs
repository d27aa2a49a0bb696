//! The cache metrics on several shards mean what CoreDNS's mean: a query answered
//! from any shard's cache is a hit, a miss is a query the upstream answered (knotd
//! counts exactly those), and `coredns_cache_entries` counts distinct entries, not
//! the copies shards keep of names they do not own.

use super::*;

/// Names asked: those under `w.example.` answer (the zone's wildcard), `nx-*`
/// are NXDOMAIN with an SOA (denials).
const SUCCESS: [&str; 8] = [
    "a.w.example.",
    "b.w.example.",
    "c.w.example.",
    "d.w.example.",
    "e.w.example.",
    "f.w.example.",
    "g.w.example.",
    "h.w.example.",
];
const DENIAL: [&str; 3] = ["nx-a.example.", "nx-b.example.", "nx-c.example."];
/// Queries repeating a name already asked, each from a socket of its own, so the
/// kernel spreads them over the shards (REUSEPORT hashes the 4-tuple).
const REPEATS: usize = 40;

fn counts_on(shards: usize) {
    let knot = Knot::start();
    let knot_before = knot.queries_of_type("A");
    let ports = Ports::new();
    let corefile = format!(
        "example.:{dns} {{\n    bind 127.0.0.1\n    cache 30\n    forward . 127.0.0.1:{knot}\n    \
         prometheus 127.0.0.1:{metrics}\n    ready 127.0.0.1:{ready}\n}}\n",
        dns = ports.dns,
        knot = knot.port,
        metrics = ports.metrics,
        ready = ports.ready,
    );
    let server = Server::launch_shards(&corefile, shards, &[], &[]);
    wait_ready(ports.ready);
    let dns = ports.dns();
    let names: Vec<&str> = SUCCESS.iter().chain(DENIAL.iter()).copied().collect();
    let ask = |id: u16, name: &str| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let answer = udp_on(&socket, dns, &query(id, name, RecordType::A, false))
            .unwrap_or_else(|| panic!("no answer to {name}:\n{}", server.log()));
        let expected = match name.starts_with("nx-") {
            true => ResponseCode::NXDomain,
            false => ResponseCode::NoError,
        };
        assert_eq!(answer.response_code(), expected, "{name}");
    };
    // One at a time: no miss joins another's upstream query.
    for (id, name) in names.iter().enumerate() {
        ask(id as u16, name);
    }
    let mut repeats = (0, 0);
    for i in 0..REPEATS {
        let name = names[i % names.len()];
        ask(100 + i as u16, name);
        match name.starts_with("nx-") {
            true => repeats.1 += 1,
            false => repeats.0 += 1,
        }
    }

    let scrape = scrape(ports.metrics);
    let server_label = format!("dns://127.0.0.1:{}", ports.dns);
    let cache = [
        ("server", server_label.as_str()),
        ("zones", "example."),
        ("view", ""),
    ];
    let typed = |t| {
        let mut labels = cache.to_vec();
        labels.push(("type", t));
        labels
    };
    let count = |metric: &str, labels: &[(&str, &str)]| value(&scrape, metric, labels);
    let asked = (names.len() + REPEATS) as f64;
    let shown = format!("{shards} shards");
    assert_eq!(
        count("coredns_cache_requests_total", &cache),
        asked,
        "{shown}"
    );
    let hits = count("coredns_cache_hits_total", &typed("success"));
    assert_eq!(hits, repeats.0 as f64, "{shown}: success hits");
    let hits = count("coredns_cache_hits_total", &typed("denial"));
    assert_eq!(hits, repeats.1 as f64, "{shown}: denial hits");
    let misses = count("coredns_cache_misses_total", &cache);
    assert_eq!(misses, names.len() as f64, "{shown}: misses");
    // The misses, and only they, reached the upstream.
    let upstream = knot.queries_of_type("A") - knot_before;
    assert_eq!(
        upstream,
        names.len() as u64,
        "{shown}: queries knotd answered"
    );
    let entries = count("coredns_cache_entries", &typed("success"));
    assert_eq!(entries, SUCCESS.len() as f64, "{shown}: success entries");
    let entries = count("coredns_cache_entries", &typed("denial"));
    assert_eq!(entries, DENIAL.len() as f64, "{shown}: denial entries");
    // The repeats did reach other shards than the first asker's.
    let busy = (0..shards)
        .filter(|s| {
            value(
                &scrape,
                "nodelocaldns_shard_queries_total",
                &[("shard", &s.to_string())],
            ) > 0.0
        })
        .count();
    assert!(busy > 1, "{shown}: every query on one shard");
}

#[test]
fn cache_hits_misses_and_entries_are_exact_on_two_shards() {
    counts_on(2);
}

#[test]
fn cache_hits_misses_and_entries_are_exact_on_four_shards() {
    counts_on(4);
}
