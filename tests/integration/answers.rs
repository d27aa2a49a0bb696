//! Answers through the cache are the upstream's answers (TTLs aside).

use std::process::Command;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client::{self, records};
use crate::harness::{corefile, kdig_path, Cache, CACHE_30};
use crate::zones;

/// Asks knot directly and through the cache (UDP then TCP) and compares every section.
fn answers_equal_upstream() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 2);
    let cases = [
        ("www.test.", RecordType::A),
        ("www.test.", RecordType::AAAA),
        ("test.", RecordType::MX),
        ("alias.test.", RecordType::A),
        ("alias.test.", RecordType::CNAME),
        ("txt.test.", RecordType::TXT),
    ];
    for (name, rtype) in cases {
        let direct = client::udp(knot.addr(), &client::query(name, rtype));
        assert_eq!(
            direct.response_code(),
            ResponseCode::NoError,
            "knot itself fails {name} {rtype}"
        );
        assert!(!direct.answers().is_empty(), "knot has no {name} {rtype}");
        // Twice over UDP (miss, then hit) and once over TCP (hit).
        let via = [
            client::udp(cache.addr(), &client::query(name, rtype)),
            client::udp(cache.addr(), &client::query(name, rtype)),
            client::tcp(cache.addr(), &client::query(name, rtype)),
        ];
        for (i, reply) in via.iter().enumerate() {
            let what = format!("{name} {rtype} (reply #{i} through the cache)");
            assert_eq!(reply.response_code(), ResponseCode::NoError, "{what}");
            assert_eq!(
                records(reply.answers()),
                records(direct.answers()),
                "answer section of {what}"
            );
            assert_eq!(
                records(reply.name_servers()),
                records(direct.name_servers()),
                "authority of {what}"
            );
            assert_eq!(
                records(reply.additionals()),
                records(direct.additionals()),
                "additional of {what}"
            );
            assert_eq!(reply.queries(), direct.queries(), "question of {what}");
        }
    }
}

/// The CNAME chain comes in order: alias → alias2 → www's addresses.
fn cname_chain_is_complete_and_ordered() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    for _ in 0..2 {
        let reply = client::udp(cache.addr(), &client::query("alias.test.", RecordType::A));
        let chain: Vec<(String, RecordType)> = reply
            .answers()
            .iter()
            .map(|r| (r.name().to_lowercase().to_ascii(), r.record_type()))
            .collect();
        assert_eq!(
            chain[..2],
            [
                ("alias.test.".to_string(), RecordType::CNAME),
                ("alias2.test.".to_string(), RecordType::CNAME)
            ],
            "CNAME chain out of order: {chain:?}"
        );
        assert_eq!(
            chain.len(),
            4,
            "expected 2 CNAMEs and 2 A records: {chain:?}"
        );
    }
}

/// `kdig`, the client a user would run, over UDP and TCP.
#[test]
fn kdig_gets_answers() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 2);
    for transport in ["+notcp", "+tcp", "+notcp"] {
        let out = Command::new(kdig_path())
            .args([
                "@127.0.0.1".to_string(),
                "-p".into(),
                cache.port.to_string(),
            ])
            .args(["www.test.", "A", "+short", "+time=2", "+retry=0", transport])
            .output()
            .expect("running kdig");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kdig {transport} failed: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines: Vec<&str> = stdout.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            ["192.0.2.1", "192.0.2.2"],
            "kdig {transport} www.test A"
        );
    }
    let out = Command::new(kdig_path())
        .args([
            "@127.0.0.1",
            "-p",
            &cache.port.to_string(),
            "nx.test.",
            "A",
            "+time=2",
            "+retry=0",
        ])
        .output()
        .expect("running kdig");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("status: NXDOMAIN"),
        "kdig nx.test: {stdout}"
    );
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(answers_equal_upstream, cname_chain_is_complete_and_ordered,);
