//! `template` in front of a real knot: the examples of its README run as written
//! (the upstream address swapped for knot's), the AAAA-suppression idiom never
//! reaches the upstream, captures render into answers, fallthrough and SERVFAIL.

use std::process::Command;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client;
use crate::harness::{kdig_path, Cache};
use crate::readme::{examples, runnable};
use crate::zones;

/// The README's Corefile examples, in order.
fn readme_examples() -> Vec<String> {
    examples(include_str!("../../src/plugin/template/README.md"))
}

/// `kdig @cache NAME TYPE`: its status line and the short answer lines.
fn kdig(cache: &Cache, name: &str, rtype: &str) -> (String, Vec<String>) {
    let out = Command::new(kdig_path())
        .args(["@127.0.0.1", "-p", &cache.port.to_string(), name, rtype])
        .args(["+time=2", "+retry=0", "+noall", "+header", "+answer"])
        .output()
        .expect("running kdig");
    assert!(
        out.status.success(),
        "kdig {name} {rtype}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let status = stdout
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_alphanumeric()).next())
        .unwrap_or("none")
        .to_string();
    let answers = stdout
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (status, answers)
}

/// Each README example starts and answers as its text says.
#[test]
fn readme_examples_answer() {
    let examples = readme_examples();
    assert_eq!(examples.len(), 3, "the README's examples");
    let knot = zones::knot();

    // 1: AAAA answered here, NOERROR without records and without asking knot; A forwarded.
    let cache = Cache::start(&runnable(&examples[0], &knot), 2);
    let before = knot.queries_of_type("AAAA");
    let (status, answers) = kdig(&cache, "www.test.", "AAAA");
    assert_eq!(
        (status.as_str(), answers.len()),
        ("NOERROR", 0),
        "{answers:?}"
    );
    let reply = client::udp(cache.addr(), &client::query("www.test.", RecordType::AAAA));
    assert!(reply.authoritative(), "template answers are authoritative");
    assert_eq!(
        knot.queries_of_type("AAAA"),
        before,
        "AAAA reached the upstream"
    );
    let (status, answers) = kdig(&cache, "www.test.", "A");
    assert_eq!(status, "NOERROR");
    assert_eq!(answers.len(), 2, "A is forwarded: {answers:?}");
    drop(cache);

    // 2: the address from the name; another name of the zone falls through to knot.
    let cache = Cache::start(&runnable(&examples[1], &knot), 2);
    let (status, answers) = kdig(&cache, "ip-10-1-2-3.example.org.", "A");
    assert_eq!(status, "NOERROR");
    assert_eq!(answers, ["ip-10-1-2-3.example.org. 60 IN A 10.1.2.3"]);
    // The owner is rendered from the lower-cased query name.
    let (_, answers) = kdig(&cache, "IP-10-9-9-9.Example.Org.", "A");
    assert_eq!(answers, ["ip-10-9-9-9.example.org. 60 IN A 10.9.9.9"]);
    let reply = client::udp(
        cache.addr(),
        &client::query("www.example.org.", RecordType::A),
    );
    assert_eq!(
        reply.response_code(),
        ResponseCode::Refused,
        "knot's answer for a zone it lacks"
    );
    let (_, answers) = kdig(&cache, "www.test.", "A");
    assert_eq!(answers.len(), 2, "outside the template's zone: forwarded");
    drop(cache);

    // 3: NXDOMAIN with the rendered SOA in the authority section.
    let cache = Cache::start(&runnable(&examples[2], &knot), 2);
    let reply = client::udp(cache.addr(), &client::query("foo.invalid.", RecordType::A));
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    assert_eq!(
        client::records(reply.name_servers()),
        ["invalid. IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]
    );
}

/// Without `fallthrough` a name of the zone no pattern matches is SERVFAIL; with
/// several templates the first match answers; index captures and `.Type`/`.Class`
/// render; TCP answers too; the answers are counted under `plugin="template"`.
#[test]
fn matches_captures_and_servfail() {
    let knot = zones::knot();
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    prometheus 127.0.0.1:$FREEPORT1\n    \
         template IN TXT example.org {{\n        match ^([a-z]+)[.]example[.]org[.]$\n        \
         answer \"{{{{ .Name }}}} 30 {{{{ .Class }}}} {{{{ .Type }}}} \\\"{{{{ index .Match 1 }}}} in {{{{ .Zone }}}}\\\"\"\n    }}\n    \
         template IN MX example.org {{\n        match ^(?P<x>a)[.]example[.]org[.]$ ^b[.]example[.]org[.]$\n        \
         answer \"{{{{ .Group.x }}}}.example.org. 60 IN MX 10 mail.example.org.\"\n        \
         additional \"{{{{ .Name }}}} 60 IN A 300.1.1.1\"\n    }}\n    \
         template IN ANY example.org {{\n        rcode REFUSED\n    }}\n    \
         forward . 127.0.0.1:{}\n}}\n",
        knot.port
    );
    let cache = Cache::start(&corefile, 2);
    let txt = client::udp(
        cache.addr(),
        &client::query("abc.example.org.", RecordType::TXT),
    );
    assert_eq!(txt.response_code(), ResponseCode::NoError);
    assert_eq!(
        client::records(txt.answers()),
        ["abc.example.org. IN TXT abc in example.org."]
    );
    let tcp = client::tcp(
        cache.addr(),
        &client::query("xyz.example.org.", RecordType::TXT),
    );
    assert_eq!(
        client::records(tcp.answers()),
        ["xyz.example.org. IN TXT xyz in example.org."]
    );
    // No pattern matches and no fallthrough: SERVFAIL, the next template is not tried.
    let deep = client::udp(
        cache.addr(),
        &client::query("a.b.example.org.", RecordType::TXT),
    );
    assert_eq!(deep.response_code(), ResponseCode::ServFail);
    // Another type: the first template is skipped, the second answers.
    let a = client::udp(
        cache.addr(),
        &client::query("abc.example.org.", RecordType::A),
    );
    assert_eq!(a.response_code(), ResponseCode::Refused);
    assert!(a.answers().is_empty());
    // A record that does not parse (300.1.1.1), a capture the matching pattern lacks:
    // SERVFAIL, each counted as CoreDNS counts it.
    let bad = client::udp(
        cache.addr(),
        &client::query("a.example.org.", RecordType::MX),
    );
    assert_eq!(bad.response_code(), ResponseCode::ServFail);
    let bad = client::udp(
        cache.addr(),
        &client::query("b.example.org.", RecordType::MX),
    );
    assert_eq!(bad.response_code(), ResponseCode::ServFail);
    let metrics = cache.metrics();
    let server = format!("dns://127.0.0.1:{}", cache.port);
    let series = |family: &str, labels: &str| {
        let prefix =
            format!("{family}{{server=\"{server}\",zone=\"example.org.\",view=\"\",{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix}:\n{metrics}"))
            .to_string()
    };
    assert_eq!(
        series(
            "coredns_template_matches_total",
            "class=\"IN\",type=\"TXT\""
        ),
        "2"
    );
    assert_eq!(
        series("coredns_template_matches_total", "class=\"IN\",type=\"A\""),
        "1"
    );
    assert_eq!(
        series("coredns_template_matches_total", "class=\"IN\",type=\"MX\""),
        "2"
    );
    assert_eq!(
        series(
            "coredns_template_rr_failures_total",
            "class=\"IN\",type=\"MX\",section=\"additional\",template=\"{{ .Name }} 60 IN A 300.1.1.1\""
        ),
        "1"
    );
    assert_eq!(
        series(
            "coredns_template_template_failures_total",
            "class=\"IN\",type=\"MX\",section=\"answer\",template=\"{{ .Group.x }}.example.org. 60 IN MX 10 mail.example.org.\""
        ),
        "1"
    );
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("coredns_dns_responses_total")
                && l.contains("plugin=\"template\"")
                && l.contains("rcode=\"NOERROR\"")
        })
        .unwrap_or_else(|| panic!("no template series:\n{metrics}"));
    assert!(line.ends_with(" 2"), "{line}");
}
