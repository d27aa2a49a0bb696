//! `rewrite` in front of a real knot: the README's examples run as written (the
//! upstream swapped for knot), knot is asked the new name, the client gets its own
//! question and names back (checked by `dig`, which rejects a question mismatch),
//! the cache keys the rewritten question, and type, ttl, rcode rules and
//! stop/continue behave as CoreDNS's.

use std::process::Command;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client;
use crate::harness::Cache;
use crate::readme::{examples, runnable};
use crate::zones;

/// The README's Corefile examples, in order.
fn readme_examples() -> Vec<String> {
    examples(include_str!("../../src/plugin/rewrite/README.md"))
}

/// `dig @cache NAME TYPE +tcp?`: the answer lines `owner ttl class type data`.
/// dig itself fails on a reply whose question is not the one it asked.
fn dig(cache: &Cache, name: &str, rtype: &str, tcp: bool) -> Vec<String> {
    let dig = testkit::process::find_program("dig", "bind9-dnsutils");
    let out = Command::new(dig)
        .args(["@127.0.0.1", "-p", &cache.port.to_string(), name, rtype])
        .args(["+time=2", "+tries=1", "+noall", "+answer", "+nocookie"])
        .arg(if tcp { "+tcp" } else { "+notcp" })
        .output()
        .expect("running dig");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && !stdout.contains("mismatch") && !stderr.contains("mismatch"),
        "dig {name} {rtype}: {stdout} {stderr}"
    );
    stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// The lines without their TTL (a cache hit may be a second older).
fn without_ttl(lines: Vec<String>) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let mut words: Vec<&str> = l.split(' ').collect();
            if words.len() > 1 {
                words.remove(1);
            }
            words.join(" ")
        })
        .collect()
}

#[test]
fn readme_examples_answer() {
    let examples = readme_examples();
    assert_eq!(examples.len(), 3, "the README's examples");
    let knot = zones::knot();

    // 1: exact rename; knot asked www.test., the answer carries the old name; the
    // second ask and the new name itself are cache hits.
    let cache = Cache::start(&runnable(&examples[0], &knot), 1);
    let before = knot.queries_of_type("A");
    for tcp in [false, true] {
        assert_eq!(
            sorted(without_ttl(dig(&cache, "web.example.org.", "A", tcp))),
            [
                "web.example.org. IN A 192.0.2.1",
                "web.example.org. IN A 192.0.2.2"
            ]
            .map(String::from),
        );
    }
    let direct = client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    assert_eq!(client::records(direct.answers()).len(), 2);
    assert_eq!(
        knot.queries_of_type("A") - before,
        1,
        "one upstream query for both names"
    );
    drop(cache);

    // 2: a domain moved: CNAME targets mapped back too, TTLs clamped to 10..=60.
    let cache = Cache::start(&runnable(&examples[1], &knot), 2);
    let lines = dig(&cache, "alias.example.org.", "A", false);
    assert_eq!(
        sorted(lines),
        [
            "alias.example.org. 60 IN CNAME alias2.example.org.",
            "alias2.example.org. 60 IN CNAME www.example.org.",
            "www.example.org. 60 IN A 192.0.2.1",
            "www.example.org. 60 IN A 192.0.2.2",
        ]
        .map(String::from)
    );
    assert_eq!(
        dig(&cache, "short.example.org.", "A", true),
        ["short.example.org. 10 IN A 192.0.2.50"]
    );
    drop(cache);

    // 3: regex with an explicit answer rule.
    let cache = Cache::start(&runnable(&examples[2], &knot), 2);
    assert_eq!(
        sorted(dig(&cache, "www-v1.example.org.", "AAAA", false)),
        [
            "www-v1.example.org. 300 IN AAAA 2001:db8::1",
            "www-v1.example.org. 300 IN AAAA 2001:db8::2"
        ]
        .map(String::from)
    );
    // A name no rule matches goes to knot unchanged.
    let other = client::udp(
        cache.addr(),
        &client::query("www.example.org.", RecordType::A),
    );
    assert_eq!(other.response_code(), ResponseCode::Refused);
}

/// type, rcode rules; stop and continue; a name rewritten into an invalid one.
#[test]
fn type_rcode_and_rule_order() {
    let knot = zones::knot();
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    \
         rewrite type AAAA A\n    \
         rewrite continue name exact first.example. nx.test.\n    \
         rewrite rcode nx.test. NXDOMAIN NOERROR\n    \
         rewrite name exact second.example. www.test.\n    \
         rewrite name exact third.example. mx1.test.\n    \
         rewrite name exact third.example. never.example.\n    \
         rewrite name regex ^long\\.example\\.$ {}.test.\n    \
         cache 30\n    forward . 127.0.0.1:{}\n}}\n",
        "a".repeat(70),
        knot.port
    );
    let cache = Cache::start(&corefile, 2);
    // The type rule stops the list: AAAA is asked as A, the question stays AAAA.
    let reply = client::udp(cache.addr(), &client::query("www.test.", RecordType::AAAA));
    assert_eq!(reply.queries()[0].query_type(), RecordType::AAAA);
    assert_eq!(
        client::records(reply.answers()),
        ["www.test. IN A 192.0.2.1", "www.test. IN A 192.0.2.2"]
    );
    // continue, then the rcode rule on the rewritten name: knot's NXDOMAIN becomes NOERROR.
    let reply = client::udp(
        cache.addr(),
        &client::query("first.example.", RecordType::A),
    );
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(reply.queries()[0].name().to_ascii(), "first.example.");
    let reply = client::tcp(
        cache.addr(),
        &client::query("second.example.", RecordType::A),
    );
    assert_eq!(
        client::records(reply.answers()),
        [
            "second.example. IN A 192.0.2.1",
            "second.example. IN A 192.0.2.2"
        ]
    );
    // stop: the second rule for third.example. never runs.
    let reply = client::udp(
        cache.addr(),
        &client::query("third.example.", RecordType::A),
    );
    assert_eq!(
        client::records(reply.answers()),
        ["third.example. IN A 192.0.2.10"]
    );
    // A label over 63 bytes: SERVFAIL, the client's question.
    let reply = client::udp(cache.addr(), &client::query("long.example.", RecordType::A));
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert_eq!(reply.queries()[0].name().to_ascii(), "long.example.");
}
