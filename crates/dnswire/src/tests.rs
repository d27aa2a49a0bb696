//! Tests of the query path against messages built and parsed by hickory-proto.

use hickory_proto::op::{
    Edns as HEdns, Message, MessageType, OpCode, Query as HQuery, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use proptest::prelude::*;

use super::*;
use crate::limits::CNAME_CHAIN_HOPS_MAX;

fn query_msg(name: &str, rtype: RecordType, edns: Option<(u16, u8, bool)>) -> Message {
    let mut m = Message::new();
    m.set_id(0xBEEF)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(HQuery::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some((size, version, dnssec_ok)) = edns {
        let mut e = HEdns::new();
        e.set_max_payload(size)
            .set_version(version)
            .set_dnssec_ok(dnssec_ok);
        m.set_edns(e);
    }
    m
}

fn bytes(m: &Message) -> Vec<u8> {
    m.to_vec().unwrap()
}

/// A hand-built query: header with the given counts and flags, then `rest`.
fn raw(flags: u16, qd: u16, ar: u16, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0x12, 0x34];
    v.extend(flags.to_be_bytes());
    v.extend(qd.to_be_bytes());
    v.extend([0, 0, 0, 0]);
    v.extend(ar.to_be_bytes());
    v.extend(rest);
    v
}

const QNAME: &[u8] = b"\x03wWw\x07example\x03com\x00";

fn question(name: &[u8], qtype: u16, qclass: u16) -> Vec<u8> {
    let mut v = name.to_vec();
    v.extend(qtype.to_be_bytes());
    v.extend(qclass.to_be_bytes());
    v
}

#[test]
fn parses_query_without_edns() {
    let pkt = bytes(&query_msg("wWw.example.com.", RecordType::AAAA, None));
    let q = parse_query(&pkt).unwrap();
    assert_eq!(q.id, 0xBEEF);
    assert_eq!(q.qname, QNAME);
    assert_eq!((q.qtype, q.qclass), (28, 1));
    assert_eq!(q.question_end, pkt.len());
    assert_eq!(q.edns, None);
    assert!(q.rd() && !q.cd() && !q.ad() && !q.dnssec_ok());
    assert_eq!(q.opcode(), 0);
    assert_eq!(q.udp_limit(), 512);
}

#[test]
fn parses_query_with_edns() {
    let mut m = query_msg("wWw.example.com.", RecordType::A, Some((1232, 0, true)));
    m.set_checking_disabled(true);
    let pkt = bytes(&m);
    let q = parse_query(&pkt).unwrap();
    assert_eq!(
        q.edns,
        Some(Edns {
            udp_size: 1232,
            version: 0,
            dnssec_ok: true
        })
    );
    assert!(q.cd() && q.dnssec_ok());
    assert_eq!(q.udp_limit(), 1232);
    let big = bytes(&query_msg("a.", RecordType::A, Some((65000, 0, false))));
    assert_eq!(
        parse_query(&big).unwrap().udp_limit(),
        crate::limits::UDP_PAYLOAD_BYTES_MAX
    );
    let small = bytes(&query_msg("a.", RecordType::A, Some((100, 0, false))));
    assert_eq!(parse_query(&small).unwrap().udp_limit(), 512);
}

fn reject(pkt: &[u8]) -> Rejection {
    parse_query(pkt).unwrap_err()
}

#[test]
fn rejections() {
    use Rejection::{Drop, Reply};
    let q = question(QNAME, 1, 1);
    assert_eq!(reject(&raw(0x0100, 0, 0, &[])), Reply(Rcode::FormErr));
    let mut two = q.clone();
    two.extend(&q);
    assert_eq!(reject(&raw(0x0100, 2, 0, &two)), Reply(Rcode::FormErr));
    assert_eq!(
        reject(&raw(0x0100 | 2 << 11, 1, 0, &q)),
        Reply(Rcode::NotImp)
    );
    assert_eq!(
        reject(&raw(0x0100, 1, 0, &question(QNAME, 16, 3))),
        Reply(Rcode::Refused)
    );
    assert_eq!(
        reject(&raw(0x0100, 1, 0, &question(QNAME, 16, 255))),
        Reply(Rcode::Refused)
    );
    let v1 = bytes(&query_msg("a.", RecordType::A, Some((1232, 1, false))));
    assert_eq!(reject(&v1), Reply(Rcode::BadVers));
    assert_eq!(reject(&[0; 11]), Drop(DropReason::ShortHeader));
    assert_eq!(reject(&[]), Drop(DropReason::ShortHeader));
    assert_eq!(reject(&raw(0x8100, 1, 0, &q)), Drop(DropReason::Response));
    assert_eq!(
        reject(&raw(0x0100, 1, 0, &q[..q.len() - 1])),
        Reply(Rcode::FormErr)
    );
    assert_eq!(
        reject(&raw(0x0100, 1, 0, &QNAME[..5])),
        Reply(Rcode::FormErr)
    );
    // Label of 64 bytes.
    let mut long_label = vec![64];
    long_label.extend([b'a'; 64]);
    long_label.push(0);
    assert_eq!(
        reject(&raw(0x0100, 1, 0, &question(&long_label, 1, 1))),
        Reply(Rcode::FormErr)
    );
    // Name of 256 bytes: 4 × (1 + 63) = 256 without the root label.
    let mut long_name = Vec::new();
    for _ in 0..4 {
        long_name.push(63);
        long_name.extend([b'a'; 63]);
    }
    long_name.push(0);
    assert_eq!(
        reject(&raw(0x0100, 1, 0, &question(&long_name, 1, 1))),
        Reply(Rcode::FormErr)
    );
    // Longest legal name: 255 bytes.
    let mut max_name = Vec::new();
    for _ in 0..3 {
        max_name.push(63);
        max_name.extend([b'a'; 63]);
    }
    max_name.push(61);
    max_name.extend([b'a'; 61]);
    max_name.push(0);
    assert_eq!(max_name.len(), 255);
    assert!(parse_query(&raw(0x0100, 1, 0, &question(&max_name, 1, 1))).is_ok());
    // Pointer in the question.
    assert_eq!(
        reject(&raw(0x0100, 1, 0, &question(&[1, b'a', 0xC0, 12], 1, 1))),
        Reply(Rcode::FormErr)
    );
    // Two OPT records; an OPT with a non-root owner; an additional count past the end.
    let opt = [0u8, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0];
    let mut two_opts = q.clone();
    two_opts.extend(opt);
    two_opts.extend(opt);
    assert_eq!(reject(&raw(0x0100, 1, 2, &two_opts)), Reply(Rcode::FormErr));
    let mut named_opt = q.clone();
    named_opt.extend([1, b'a', 0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        reject(&raw(0x0100, 1, 1, &named_opt)),
        Reply(Rcode::FormErr)
    );
    assert_eq!(reject(&raw(0x0100, 1, 1, &q)), Reply(Rcode::FormErr));
    assert_eq!(reject(&raw(0x0100, 1, 3, &q)), Reply(Rcode::FormErr));
}

fn parse_reply(buf: &[u8]) -> Message {
    Message::from_vec(buf).expect("reply parses")
}

#[test]
fn error_replies_parse_and_echo() {
    let mut out = [0u8; 600];
    let pkt = bytes(&query_msg(
        "wWw.example.com.",
        RecordType::A,
        Some((1232, 1, true)),
    ));
    let n = write_error_reply(&pkt, Rcode::BadVers, &mut out);
    let m = parse_reply(&out[..n]);
    assert_eq!(m.id(), 0xBEEF);
    assert_eq!(m.message_type(), MessageType::Response);
    assert_eq!(
        u16::from(m.response_code()),
        16,
        "BADVERS (hickory names 16 BADSIG)"
    );
    assert_eq!(out[3] & 0x0F, 0, "header rcode of BADVERS is 0");
    assert!(m.recursion_desired());
    assert_eq!(m.queries()[0].name().to_ascii(), "wWw.example.com.");
    let e = m.extensions().as_ref().expect("OPT mirrored");
    assert!(e.flags().dnssec_ok);
    assert_eq!(e.rcode_high(), 1);

    let ch = raw(0x0100, 1, 0, &question(QNAME, 16, 3));
    let n = write_error_reply(&ch, Rcode::Refused, &mut out);
    let m = parse_reply(&out[..n]);
    assert_eq!(m.response_code(), ResponseCode::Refused);
    assert_eq!(m.queries()[0].query_class(), DNSClass::CH);
    assert!(m.extensions().is_none());

    let two = raw(0x0100, 2, 0, &[]);
    let n = write_error_reply(&two, Rcode::FormErr, &mut out);
    let m = parse_reply(&out[..n]);
    assert_eq!(m.response_code(), ResponseCode::FormErr);
    assert!(m.queries().is_empty());
    assert_eq!(m.id(), 0x1234);

    let notify = raw(0x0100 | 4 << 11, 1, 0, &question(QNAME, 6, 1));
    let n = write_error_reply(&notify, Rcode::NotImp, &mut out);
    let m = parse_reply(&out[..n]);
    assert_eq!(m.response_code(), ResponseCode::NotImp);
    assert_eq!(m.op_code(), OpCode::Notify);

    let servfail = bytes(&query_msg("a.", RecordType::A, Some((1232, 0, false))));
    let n = write_error_reply(&servfail, Rcode::ServFail, &mut out);
    let m = parse_reply(&out[..n]);
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(m.extensions().is_some());

    assert_eq!(write_error_reply(&[0; 5], Rcode::FormErr, &mut out), 0);
    assert_eq!(
        write_error_reply(&servfail, Rcode::FormErr, &mut [0u8; 20]),
        0
    );
}

#[test]
fn upstream_query_round_trips() {
    let mut m = query_msg("wWw.example.com.", RecordType::MX, Some((1232, 0, true)));
    m.set_checking_disabled(true);
    let pkt = bytes(&m);
    let q = parse_query(&pkt).unwrap();
    let mut out = [0u8; 512];
    let n = write_upstream_query(&q, 77, 1400, &mut out);
    let up = parse_reply(&out[..n]);
    assert_eq!(up.id(), 77);
    assert_eq!(up.message_type(), MessageType::Query);
    assert!(up.recursion_desired() && up.checking_disabled());
    assert_eq!(up.queries()[0].name().to_ascii(), "wWw.example.com.");
    assert_eq!(up.queries()[0].query_type(), RecordType::MX);
    let e = up.extensions().as_ref().unwrap();
    assert_eq!(e.max_payload(), 1400);
    assert!(e.flags().dnssec_ok);
    // Our own upstream query passes our own checks.
    assert_eq!(parse_query(&out[..n]).unwrap().qname, q.qname);

    let plain = bytes(&query_msg("a.", RecordType::A, None));
    let q = parse_query(&plain).unwrap();
    let n = write_upstream_query(&q, 1, 1232, &mut out);
    assert!(
        !parse_reply(&out[..n])
            .extensions()
            .as_ref()
            .unwrap()
            .flags()
            .dnssec_ok
    );
    assert_eq!(write_upstream_query(&q, 1, 1232, &mut [0u8; 16]), 0);
}

proptest! {
    #[test]
    fn parse_query_never_panics(pkt in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_query(&pkt);
        let mut out = [0u8; 1024];
        let _ = write_error_reply(&pkt, Rcode::FormErr, &mut out);
    }

    #[test]
    fn mutated_queries_never_panic(idx in 0usize..64, val: u8) {
        let mut pkt = bytes(&query_msg("www.example.com.", RecordType::A, Some((1232, 0, true))));
        let i = idx % pkt.len();
        pkt[i] = val;
        if let Ok(q) = parse_query(&pkt) {
            let mut out = [0u8; 1024];
            let n = write_upstream_query(&q, 1, 1232, &mut out);
            prop_assert!(Message::from_vec(&out[..n]).is_ok());
        }
    }
}

#[test]
fn fitting_records_keeps_whole_records_only() {
    // Two records: root owner, type A, class IN, TTL, 4 bytes of data (15 bytes each),
    // TTLs at 5 and 20.
    let rec = [0, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 192, 0, 2, 1];
    let records: Vec<u8> = rec.iter().chain(rec.iter()).copied().collect();
    let offsets = || [5usize, 20].into_iter();
    assert_eq!(
        super::fitting_records(&records, offsets(), 14),
        (0, &[][..])
    );
    assert_eq!(
        super::fitting_records(&records, offsets(), 15),
        (1, &records[..15])
    );
    assert_eq!(
        super::fitting_records(&records, offsets(), 29),
        (1, &records[..15])
    );
    assert_eq!(
        super::fitting_records(&records, offsets(), 30),
        (2, &records[..])
    );
    assert_eq!(
        super::fitting_records(&records, offsets(), 999),
        (2, &records[..])
    );
    // An offset leading past the bytes, or backwards, ends the run.
    assert_eq!(
        super::fitting_records(&records, [5usize, 40].into_iter(), 999),
        (1, &records[..15])
    );
    assert_eq!(
        super::fitting_records(&records, [5usize, 5].into_iter(), 999),
        (1, &records[..15])
    );
    assert_eq!(
        super::fitting_records(&records, [usize::MAX].into_iter(), 999),
        (0, &[][..])
    );
}

/// An answer record: owner, type, data as text.
type Rr<'a> = (&'a str, RecordType, &'a str);

/// A response to `qname qtype` with `answers`.
fn chain_answer(qname: &str, qtype: RecordType, answers: &[Rr]) -> Vec<u8> {
    use hickory_proto::rr::rdata::{A, CNAME, TXT};
    use hickory_proto::rr::{RData, Record};
    let mut m = query_msg(qname, qtype, None);
    m.set_message_type(MessageType::Response);
    for &(owner, rtype, data) in answers {
        let rdata = match rtype {
            RecordType::A => RData::A(A(data.parse().unwrap())),
            RecordType::CNAME => RData::CNAME(CNAME(Name::from_ascii(data).unwrap())),
            _ => RData::TXT(TXT::new(vec![data.to_string()])),
        };
        m.add_answer(Record::from_rdata(
            Name::from_ascii(owner).unwrap(),
            60,
            rdata,
        ));
    }
    bytes(&m)
}

#[test]
fn answers_question_follows_the_cname_chain() {
    use RecordType::{A, ANY, CNAME, TXT};
    let cases: &[(&str, RecordType, &[Rr], bool)] = &[
        ("a.test.", A, &[], false),
        ("a.test.", A, &[("a.test.", A, "192.0.2.1")], true),
        ("a.test.", A, &[("A.Test.", A, "192.0.2.1")], true),
        ("a.test.", A, &[("b.test.", A, "192.0.2.1")], false),
        ("a.test.", A, &[("a.test.", TXT, "x")], false),
        (
            "a.test.",
            A,
            &[("a.test.", CNAME, "b.test."), ("b.test.", A, "192.0.2.1")],
            true,
        ),
        ("a.test.", A, &[("a.test.", CNAME, "b.test.")], false),
        (
            "a.test.",
            A,
            &[("a.test.", CNAME, "b.test."), ("a.test.", A, "192.0.2.1")],
            false,
        ),
        (
            "a.test.",
            A,
            &[
                ("a.test.", CNAME, "b.test."),
                ("a.test.", CNAME, "c.test."),
                ("b.test.", A, "192.0.2.1"),
            ],
            false,
        ),
        (
            "a.test.",
            A,
            &[
                ("a.test.", CNAME, "b.test."),
                ("a.test.", CNAME, "B.test."),
                ("b.test.", A, "192.0.2.1"),
            ],
            true,
        ),
        (
            "a.test.",
            A,
            &[("a.test.", CNAME, "b.test."), ("b.test.", CNAME, "a.test.")],
            false,
        ),
        ("a.test.", CNAME, &[("a.test.", CNAME, "b.test.")], true),
        ("a.test.", CNAME, &[("b.test.", CNAME, "c.test.")], false),
        ("a.test.", ANY, &[("a.test.", TXT, "x")], true),
        ("a.test.", ANY, &[("b.test.", TXT, "x")], false),
    ];
    for (i, &(qname, qtype, answers, want)) in cases.iter().enumerate() {
        let msg = chain_answer(qname, qtype, answers);
        assert_eq!(
            answers_question(&msg),
            want,
            "case {i}: {qname} {qtype} {answers:?}"
        );
    }
    // A chain longer than the bound answers nothing.
    let names: Vec<String> = (0..=CNAME_CHAIN_HOPS_MAX + 1)
        .map(|i| format!("n{i}.test."))
        .collect();
    let chain = |hops: usize| {
        let mut answers: Vec<Rr> = (0..hops)
            .map(|i| (names[i].as_str(), CNAME, names[i + 1].as_str()))
            .collect();
        answers.push((names[hops].as_str(), A, "192.0.2.1"));
        chain_answer(&names[0], A, &answers)
    };
    assert!(answers_question(&chain(CNAME_CHAIN_HOPS_MAX)));
    assert!(!answers_question(&chain(CNAME_CHAIN_HOPS_MAX + 1)));
    // Anything that does not read answers nothing.
    let msg = chain_answer("a.test.", A, &[("a.test.", A, "192.0.2.1")]);
    for len in 0..msg.len() {
        assert!(!answers_question(&msg[..len]), "cut at {len}");
    }
}
