//! Metric parity with node-cache 1.26's registry: a scrape of the real binary is
//! diffed against `tests/fixtures/metrics/node-cache-1.26.txt` (families, types and
//! label sets taken from the sources node-cache builds), and the families node-cache
//! has beyond the query path (`process_*`, `coredns_plugin_enabled`, the setup
//! errors) carry real values.

use std::collections::{BTreeMap, BTreeSet};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use super::*;

const FIXTURE: &str = include_str!("../fixtures/metrics/node-cache-1.26.txt");

/// One line of the fixture.
struct Listed {
    kind: String,
    labels: Vec<String>,
    status: String,
}

fn fixture() -> BTreeMap<String, Listed> {
    FIXTURE
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let mut next = || words.next().expect("NAME TYPE LABELS STATUS").to_string();
            let (name, kind, labels, status) = (next(), next(), next(), next());
            let labels = match labels.as_str() {
                "-" => Vec::new(),
                list => list.split(',').map(String::from).collect(),
            };
            let status = status.trim_end_matches(':').to_string();
            (
                name,
                Listed {
                    kind,
                    labels,
                    status,
                },
            )
        })
        .collect()
}

fn chaos_query(id: u16) -> Vec<u8> {
    let mut question = Query::query(
        Name::from_ascii("version.bind.").expect("name"),
        RecordType::TXT,
    );
    question.set_query_class(DNSClass::CH);
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(question);
    message.to_vec().expect("encode")
}

#[test]
fn families_and_labels_match_node_cache_registry() {
    let knot = Knot::start();
    let ports = Ports::new();
    let corefile = format!(
        "example.:{dns} {{\n    bind 127.0.0.1\n    errors\n    log\n    cache 30\n    \
         forward . 127.0.0.1:{knot}\n    prometheus 127.0.0.1:{metrics}\n    \
         health 127.0.0.1:{health}\n    ready 127.0.0.1:{ready}\n}}\n",
        dns = ports.dns,
        knot = knot.port,
        metrics = ports.metrics,
        health = ports.health,
        ready = ports.ready,
    );
    let _server = Server::start(&corefile);
    wait_ready(ports.ready);
    let dns = ports.dns();
    let answer =
        udp_exchange(dns, &query(1, "www.example.", RecordType::A, false)).expect("answer");
    assert_eq!(answer.response_code(), ResponseCode::NoError);
    // Answered before any chain: no block has the zone, and a class other than IN.
    let answer =
        udp_exchange(dns, &query(2, "www.elsewhere.", RecordType::A, false)).expect("answer");
    assert_eq!(answer.response_code(), ResponseCode::Refused);
    let answer = udp_exchange(dns, &chaos_query(3)).expect("answer");
    assert_eq!(answer.response_code(), ResponseCode::Refused);
    assert_eq!(http_get(ports.health, "/health").map(|(s, _)| s), Some(200));

    let scrape = scrape(ports.metrics);
    let exposed = types(ports.metrics);
    let listed = fixture();
    let mut problems = Vec::new();
    for (name, kind) in &exposed {
        if name.starts_with("nodelocaldns_") {
            continue;
        }
        let Some(entry) = listed.get(name) else {
            problems.push(format!("{name}: not in node-cache's registry"));
            continue;
        };
        if entry.status == "absent" {
            problems.push(format!("{name}: listed as absent but exported"));
        }
        if &entry.kind != kind {
            problems.push(format!("{name}: type {kind}, node-cache {}", entry.kind));
        }
        for labels in label_names(&scrape, name) {
            if labels != entry.labels {
                problems.push(format!(
                    "{name}: labels {labels:?}, node-cache {:?}",
                    entry.labels
                ));
            }
        }
    }
    for (name, entry) in &listed {
        if entry.status == "always" && !exposed.contains_key(name) {
            problems.push(format!(
                "{name}: node-cache always has it, the scrape lacks it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "differences from node-cache 1.26:\n{}",
        problems.join("\n")
    );

    let server = format!("dns://127.0.0.1:{}", ports.dns);
    let server = server.as_str();
    // Every query is counted, those answered before the chain under zone "dropped".
    let requests = "coredns_dns_requests_total";
    assert_eq!(value(&scrape, requests, &[("zone", "example.")]), 1.0);
    assert_eq!(
        value(
            &scrape,
            requests,
            &[("server", server), ("zone", "dropped")]
        ),
        2.0
    );
    let refused = [("zone", "dropped"), ("rcode", "REFUSED"), ("plugin", "")];
    assert_eq!(value(&scrape, "coredns_dns_responses_total", &refused), 2.0);
    // The block's handlers, as CoreDNS's prometheus sets them at start.
    let enabled: BTreeSet<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "coredns_plugin_enabled")
        .inspect(|s| {
            assert_eq!(s.labels.get("server"), Some(server));
            assert_eq!(s.labels.get("zone"), Some("example."));
        })
        .filter_map(|s| s.labels.get("name").map(String::from))
        .collect();
    let handlers = ["cache", "errors", "forward", "log", "prometheus"];
    assert_eq!(enabled, handlers.iter().map(|h| h.to_string()).collect());
    // One registry: the setup errors are here too, every type from the start.
    let setup = "coredns_nodecache_setup_errors_total";
    for errortype in [
        "iptables",
        "iptables_lock",
        "interface_add",
        "interface_check",
        "configmap",
    ] {
        let found = scrape
            .samples
            .iter()
            .any(|s| s.metric == setup && s.labels.get("errortype") == Some(errortype));
        assert!(found, "{setup}{{errortype={errortype}}} missing");
    }
    // process_* describe this process.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let started = value(&scrape, "process_start_time_seconds", &[]);
    assert!(
        (now - 120.0..=now + 1.0).contains(&started),
        "start {started}, now {now}"
    );
    assert!(value(&scrape, "process_resident_memory_bytes", &[]) > 1e6);
    let virt = value(&scrape, "process_virtual_memory_bytes", &[]);
    assert!(virt >= value(&scrape, "process_resident_memory_bytes", &[]));
    let open = value(&scrape, "process_open_fds", &[]);
    assert!(
        open >= 3.0 && open <= value(&scrape, "process_max_fds", &[]),
        "{open}"
    );
    // CPU time counts in clock ticks (10 ms): an idle server may not have one yet.
    let cpu = value(&scrape, "process_cpu_seconds_total", &[]);
    let cores = std::thread::available_parallelism().map_or(64, |n| n.get()) as f64;
    assert!((0.0..(now - started + 1.0) * cores).contains(&cpu), "{cpu}");
    assert_eq!(
        value(&scrape, "coredns_health_request_failures_total", &[]),
        0.0
    );
}
