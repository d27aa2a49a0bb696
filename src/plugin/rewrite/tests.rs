//! The `rewrite` directive's setup table (after CoreDNS's `setup_test.go`, with its
//! "fails" section) and what the rules do to a question and an answer.

use std::path::Path;

use hickory_proto::op::{Message, MessageType, Query as Question, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::config::parse_corefile;

fn rules(text: &str) -> Result<Vec<RewriteRule>, String> {
    let config = parse_corefile(text, Path::new("Corefile")).map_err(|e| e.to_string())?;
    Ok(config
        .servers
        .into_iter()
        .next()
        .map(|b| b.rewrites)
        .unwrap_or_default())
}

fn block(lines: &str) -> String {
    format!(". {{\n{lines}\n}}\n")
}

#[test]
fn setup() {
    type Check = fn(&[RewriteRule]) -> bool;
    let cases: &[(&str, Check)] = &[
        (" rewrite name a.org b.org", |r| {
            r[0].stop
                && matches!(&r[0].action, RewriteAction::Name { matcher: NameMatch::Exact(f), to, auto: true, .. } if f == "a.org." && to == "b.org.")
        }),
        (" rewrite continue name exact A.org B.org.", |r| {
            !r[0].stop && matches!(&r[0].action, RewriteAction::Name { matcher: NameMatch::Exact(f), to, .. } if f == "a.org." && to == "b.org.")
        }),
        (" rewrite stop name prefix api svc", |r| matches!(&r[0].action, RewriteAction::Name { matcher: NameMatch::Prefix(f), auto: false, .. } if f == "api.")),
        (" rewrite name suffix .schmoogle.com. .google.com. answer auto", |r| {
            matches!(&r[0].action, RewriteAction::Name { matcher: NameMatch::Suffix(f), auto: true, .. } if f == ".schmoogle.com.")
        }),
        (" rewrite name substring us-west-1.example.org us-west-1.consul", |r| matches!(&r[0].action, RewriteAction::Name { matcher: NameMatch::Substring(_), .. })),
        (" rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.example.org", |r| {
            matches!(&r[0].action, RewriteAction::Name { matcher: NameMatch::Regex(_), to, answers, .. } if to == "{1}.service.{2}.consul." && answers.len() == 1 && !answers[0].value)
        }),
        (" rewrite name regex (.*)\\.a\\. {1}.b. answer name (.*)\\.b\\. {1}.a. value (.*)\\.b\\. {1}.a.", |r| {
            matches!(&r[0].action, RewriteAction::Name { answers, .. } if answers.len() == 2 && answers[1].value)
        }),
        (" rewrite stop {\n  name regex (.*)\\.a\\. {1}.b.\n  answer name (.*)\\.b\\. {1}.a.\n }", |r| {
            r[0].stop && matches!(&r[0].action, RewriteAction::Name { answers, .. } if answers.len() == 1)
        }),
        (" rewrite type ANY HINFO", |r| r[0].action == RewriteAction::Type { from: 255, to: 13 }),
        (" rewrite class CH IN", |r| r[0].action == RewriteAction::Class { from: 3, to: 1 }),
        (" rewrite ttl example.com. 30-300", |r| matches!(&r[0].action, RewriteAction::Ttl { min: 30, max: 300, .. })),
        (" rewrite ttl regex (.*)\\.example\\.com -30", |r| matches!(&r[0].action, RewriteAction::Ttl { min: 0, max: 30, .. })),
        (" rewrite ttl example.com. 30-", |r| matches!(&r[0].action, RewriteAction::Ttl { min: 30, max: 2_147_483_647, .. })),
        (" rewrite ttl example.com. 30", |r| matches!(&r[0].action, RewriteAction::Ttl { min: 30, max: 30, .. })),
        (" rewrite continue rcode regex (.*)\\.coredns\\.rocks SERVFAIL NOERROR", |r| matches!(&r[0].action, RewriteAction::Rcode { from: 2, to: 0, .. })),
        (" rewrite rcode x.org 2 3", |r| matches!(&r[0].action, RewriteAction::Rcode { from: 2, to: 3, matcher: NameMatch::Exact(_) })),
        (" rewrite name a.org b.org\n rewrite name c.org d.org", |r| r.len() == 2),
    ];
    for (lines, check) in cases {
        match rules(&block(lines)) {
            Ok(r) => assert!(check(&r), "{lines}: {r:?}"),
            Err(e) => panic!("{lines}: {e}"),
        }
    }
}

#[test]
fn fails() {
    let many = " rewrite name a.org b.org\n".repeat(crate::limits::REWRITE_RULES_PER_BLOCK_MAX + 1);
    let cases: &[(&str, &str)] = &[
        (" rewrite", "Corefile:2: rewrite: wrong number of arguments (0)"),
        (" rewrite name", "Corefile:2: rewrite name: wrong number of arguments (0)"),
        (" rewrite name a.org", "Corefile:2: rewrite name: wrong number of arguments (1)"),
        (" rewrite bogus a b", "Corefile:2: rewrite: invalid \"bogus\": invalid rule type"),
        (" rewrite answer name a b", "Corefile:2: rewrite: invalid \"answer\": response rewrites must begin with a name rule"),
        (" rewrite name fuzzy a.org b.org", "Corefile:2: rewrite: invalid \"fuzzy\": match type must be"),
        (" rewrite name regex ( b.org", "Corefile:2: rewrite: invalid \"(\": bad regex"),
        (" rewrite name regex a {1}.b", "Corefile:2: rewrite: invalid \"{1}.b\": uses 1 subexpressions, the pattern has 0"),
        (" rewrite name exact a.org b..org", "Corefile:2: rewrite name: invalid \"b..org\": not a valid domain name"),
        (" rewrite name regex (a) b extra", "Corefile:2: rewrite name: invalid \"extra\": expected \"answer\""),
        (" rewrite name regex (a) b answer", "Corefile:2: rewrite name: invalid \"answer\": answer rule without"),
        (" rewrite name regex (a) b answer bogus", "Corefile:2: rewrite name: invalid \"bogus\": answer rule must be auto, name or value"),
        (" rewrite name regex (a) b answer name (", "Corefile:2: rewrite name: invalid \"name\": answer name|value FROM TO needs 2"),
        (" rewrite name regex (a) b answer name ( x", "Corefile:2: rewrite answer: invalid \"(\": bad regex"),
        (" rewrite name regex (a) b answer auto answer name (a) b", "auto name answer rule cannot be combined"),
        (" rewrite type A", "Corefile:2: rewrite type: wrong number of arguments (1)"),
        (" rewrite type A BOGUS", "Corefile:2: rewrite: invalid \"BOGUS\": invalid type"),
        (" rewrite class IN XX", "Corefile:2: rewrite: invalid \"XX\": invalid class"),
        (" rewrite ttl a.org", "Corefile:2: rewrite ttl: wrong number of arguments (1)"),
        (" rewrite ttl a.org x", "Corefile:2: rewrite ttl: invalid \"x\": invalid TTL"),
        (" rewrite ttl a.org -", "invalid TTL"),
        (" rewrite ttl a.org 30-10", "invalid TTL"),
        (" rewrite ttl regex ( 30", "Corefile:2: rewrite: invalid \"(\": bad regex"),
        (" rewrite rcode a.org SERVFAIL", "Corefile:2: rewrite rcode: wrong number of arguments (2)"),
        (" rewrite rcode a.org SERVFAIL BOGUS", "Corefile:2: rewrite rcode: invalid \"BOGUS\": unknown rcode"),
        (" rewrite edns0 local set 0xffee abcd", "Corefile:2: rewrite: \"edns0\" is not supported"),
        (" rewrite cname exact a. b.", "Corefile:2: rewrite: \"cname\" is not supported"),
        (" rewrite name a.org b.org {\n  x\n }", "Corefile:3: rewrite: unknown option \"x\""),
        (&many, "more than 64 in one block"),
    ];
    for (lines, want) in cases {
        match rules(&block(lines)) {
            Ok(r) => panic!("{lines} parsed: {r:?}"),
            Err(e) => assert!(e.contains(want), "{lines}: got {e}, want {want}"),
        }
    }
}

/// The question after the rules, and whether they applied.
fn run(lines: &str, name: &str, qtype: u16) -> (String, u16, Vec<AnswerAction>) {
    let rules = rules(&block(lines)).expect("parses");
    let mut state = State {
        name: name.to_string(),
        qtype,
        qclass: 1,
    };
    let mut actions = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if apply(index, rule, &mut state, &mut actions) && rule.stop {
            break;
        }
    }
    (state.name, state.qtype, actions)
}

#[test]
fn questions() {
    let cases: &[(&str, &str, &str)] = &[
        (" rewrite name a.org. b.org.", "a.org.", "b.org."),
        (" rewrite name a.org. b.org.", "x.a.org.", "x.a.org."),
        (
            " rewrite name prefix api. svc.",
            "api.example.org.",
            "svc.example.org.",
        ),
        (
            " rewrite name suffix .example.org. .svc.cluster.local.",
            "web.example.org.",
            "web.svc.cluster.local.",
        ),
        (
            " rewrite name substring us-west-1.example.org us-west-1.consul",
            "ftp.service.us-west-1.example.org.",
            "ftp.service.us-west-1.consul.",
        ),
        (
            " rewrite name regex (.*)-(us-west-1)\\.example\\.org\\. {1}.service.{2}.consul",
            "ftp-us-west-1.example.org.",
            "ftp.service.us-west-1.consul.",
        ),
        // stop (the default) ends the list; continue goes on.
        (
            " rewrite name a.org. b.org.\n rewrite name b.org. c.org.",
            "a.org.",
            "b.org.",
        ),
        (
            " rewrite continue name a.org. b.org.\n rewrite name b.org. c.org.",
            "a.org.",
            "c.org.",
        ),
        // A rule that does not apply does not stop the list.
        (
            " rewrite name x.org. y.org.\n rewrite name a.org. b.org.",
            "a.org.",
            "b.org.",
        ),
    ];
    for (lines, name, want) in cases {
        assert_eq!(run(lines, name, 1).0, *want, "{lines} on {name}");
    }
    assert_eq!(run(" rewrite type ANY HINFO", "a.", 255).1, 13);
    assert_eq!(run(" rewrite type ANY HINFO", "a.", 1).1, 1);
    let (_, _, actions) = run(
        " rewrite continue ttl a.org. 30\n rewrite rcode a.org. NXDOMAIN NOERROR",
        "a.org.",
        1,
    );
    assert_eq!(
        actions,
        [
            AnswerAction::Ttl { min: 30, max: 30 },
            AnswerAction::Rcode { from: 3, to: 0 }
        ]
    );
    let (_, _, actions) = run(" rewrite name a.org. b.org.", "a.org.", 1);
    assert_eq!(
        actions[0],
        AnswerAction::Remap {
            from: "b.org.".into(),
            to: "a.org.".into(),
            value: false
        }
    );
}

fn record(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(Name::from_ascii(owner).expect("name"), ttl, data)
}

/// An upstream answer to the rewritten question, through `back`.
#[test]
fn answers_are_restored() {
    let rewrite = Rewrite::new(&{
        let config = parse_corefile(
            &block(" rewrite continue name suffix .example.org. .svc.local. answer auto\n rewrite ttl suffix .svc.local. 10-20"),
            Path::new("Corefile"),
        )
        .expect("parses");
        config.servers[0].clone()
    })
    .expect("has rules");
    let mut state = State {
        name: "web.example.org.".into(),
        qtype: 1,
        qclass: 1,
    };
    let mut actions = Vec::new();
    for (index, rule) in rewrite.rules.iter().enumerate() {
        apply(index, rule, &mut state, &mut actions);
    }
    assert_eq!(state.name, "web.svc.local.");
    let client_question = wire::name::from_presentation("Web.Example.Org.").expect("name");
    let mut question = client_question.clone();
    question.extend_from_slice(&[0, 1, 0, 1]);
    let mut upstream = Message::new();
    upstream
        .set_id(7)
        .set_message_type(MessageType::Response)
        .set_response_code(ResponseCode::NoError);
    upstream.add_query(Question::query(
        Name::from_ascii("web.svc.local.").expect("name"),
        RecordType::A,
    ));
    upstream.add_answer(record(
        "web.svc.local.",
        300,
        RData::CNAME(CNAME(Name::from_ascii("pod.svc.local.").expect("n"))),
    ));
    upstream.add_answer(record(
        "pod.svc.local.",
        5,
        RData::A("10.0.0.1".parse().expect("ip")),
    ));
    upstream.add_answer(record(
        "other.net.",
        15,
        RData::MX(MX::new(1, Name::from_ascii("mx.svc.local.").expect("n"))),
    ));
    let bytes = upstream.to_vec().expect("encodes");
    let trail = Trail {
        rewrite: RewriteSlot::new(Rewritten {
            packet: None,
            question,
            actions,
            max_len: 512,
        }),
        ..Trail::default()
    };
    let mut room = vec![0u8; 512];
    room[..bytes.len()].copy_from_slice(&bytes);
    let len = rewrite.back(&trail, &mut room, bytes.len());
    let restored = Message::from_vec(&room[..len]).expect("decodes");
    assert_eq!(restored.id(), 7);
    assert_eq!(restored.queries()[0].name().to_ascii(), "Web.Example.Org.");
    let got: Vec<String> = restored
        .answers()
        .iter()
        .map(|r| format!("{} {} {}", r.name(), r.ttl(), r.data()))
        .collect();
    assert_eq!(
        got,
        [
            "web.example.org. 20 pod.example.org.",
            "pod.example.org. 10 10.0.0.1",
            "other.net. 15 1 mx.example.org.",
        ]
    );
    // An answer that no longer fits the client's limit: TC and the question only.
    let mut small = room[..len].to_vec();
    small.extend_from_slice(&[0; 4]);
    let too_long = "x".repeat(60);
    let mut long_trail_actions = vec![AnswerAction::Remap {
        from: "pod.example.org.".into(),
        to: format!("{too_long}.{too_long}.{too_long}.pod."),
        value: false,
    }];
    long_trail_actions.push(AnswerAction::Ttl { min: 1, max: 1 });
    let question = trail
        .rewrite
        .get()
        .map(|r| r.question.clone())
        .unwrap_or_default();
    let tight = Trail {
        rewrite: RewriteSlot::new(Rewritten {
            packet: None,
            question,
            actions: long_trail_actions,
            max_len: len,
        }),
        ..Trail::default()
    };
    let mut room = small;
    let len2 = rewrite.back(&tight, &mut room[..len], len);
    let truncated = Message::from_vec(&room[..len2]).expect("decodes");
    assert!(
        truncated.truncated() && truncated.answers().is_empty(),
        "{truncated:?}"
    );
}
