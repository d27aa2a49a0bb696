//! Stored answers, replies and the shard, checked against hickory-proto messages.

use std::time::{Duration, Instant};

use hickory_proto::op::{
    Edns as HEdns, Message, MessageType, OpCode, Query as HQuery, ResponseCode,
};
use hickory_proto::rr::rdata::{A, CNAME, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use proptest::prelude::*;

use super::*;
use crate::config::{CacheClass, CacheConfig, ServeStale, StaleMode, Zone};
use crate::wire::{parse_query, Query};

fn zone(name: &str) -> Zone {
    Zone {
        name: name.to_string(),
    }
}

fn cfg() -> CacheConfig {
    let class = |capacity, ttl_max| CacheClass {
        capacity,
        ttl_max: Duration::from_secs(ttl_max),
        ttl_min: Duration::from_secs(5),
    };
    CacheConfig {
        zones: vec![zone(".")],
        success: class(100, 3600),
        denial: class(100, 1800),
        prefetch: None,
        serve_stale: None,
        servfail_ttl: Duration::from_secs(5),
        disable_success: vec![],
        disable_denial: vec![],
        keepttl: false,
        max_bytes: None,
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// Client query bytes: id 0x4242, RD, optional EDNS (size, DO), optional AD/CD flags.
fn query_bytes(
    qname: &str,
    rtype: RecordType,
    edns: Option<(u16, bool)>,
    ad: bool,
    cd: bool,
) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(0x4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .set_authentic_data(ad)
        .set_checking_disabled(cd)
        .add_query(HQuery::query(name(qname), rtype));
    if let Some((size, dnssec_ok)) = edns {
        let mut e = HEdns::new();
        e.set_max_payload(size).set_dnssec_ok(dnssec_ok);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn a(owner: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A::new(192, 0, 2, 1)))
}

fn soa(owner: &str, ttl: u32) -> Record {
    let rdata = SOA::new(
        name("ns.example.com."),
        name("host.example.com."),
        1,
        2,
        3,
        4,
        5,
    );
    Record::from_rdata(name(owner), ttl, RData::SOA(rdata))
}

fn ns(owner: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::NS(NS(name("ns1.example.com."))))
}

/// An upstream answer builder: question `qname`/`rtype`, id 7, RA, AD, EDNS with DO.
struct Upstream {
    msg: Message,
}

impl Upstream {
    fn new(qname: &str, rtype: RecordType, rcode: ResponseCode) -> Upstream {
        let mut msg = Message::new();
        msg.set_id(7)
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .set_recursion_available(true)
            .set_authentic_data(true)
            .set_response_code(rcode)
            .add_query(HQuery::query(name(qname), rtype));
        let mut e = HEdns::new();
        e.set_max_payload(1232).set_dnssec_ok(true);
        msg.set_edns(e);
        Upstream { msg }
    }
    fn answer(mut self, r: Record) -> Self {
        self.msg.add_answer(r);
        self
    }
    fn authority(mut self, r: Record) -> Self {
        self.msg.add_name_server(r);
        self
    }
    fn additional(mut self, r: Record) -> Self {
        self.msg.add_additional(r);
        self
    }
    fn truncated(mut self) -> Self {
        self.msg.set_truncated(true);
        self
    }
    fn bytes(&self) -> Vec<u8> {
        self.msg.to_vec().unwrap()
    }
}

fn stored(up: &Upstream, q: &Query<'_>) -> StoredAnswer {
    StoredAnswer::from_upstream(&up.bytes(), q, &cfg()).unwrap()
}

fn www_a() -> Upstream {
    Upstream::new("www.example.com.", RecordType::A, ResponseCode::NoError)
        .answer(Record::from_rdata(
            name("www.example.com."),
            300,
            RData::CNAME(CNAME(name("web.example.com."))),
        ))
        .answer(a("web.example.com.", 120))
        .authority(ns("example.com.", 600))
        .additional(a("ns1.example.com.", 900))
}

#[test]
fn classification_table() {
    use AnswerClass::*;
    let q_bytes = query_bytes("x.example.com.", RecordType::A, None, false, false);
    let q = parse_query(&q_bytes).unwrap();
    let up = |rcode| Upstream::new("x.example.com.", RecordType::A, rcode);
    let cases = [
        (
            "noerror + answers",
            up(ResponseCode::NoError).answer(a("x.example.com.", 60)),
            Success,
        ),
        ("noerror empty", up(ResponseCode::NoError), Success),
        (
            "delegation",
            up(ResponseCode::NoError).authority(ns("example.com.", 60)),
            Success,
        ),
        (
            "nodata",
            up(ResponseCode::NoError).authority(soa("example.com.", 60)),
            Denial,
        ),
        (
            "nxdomain",
            up(ResponseCode::NXDomain).authority(soa("example.com.", 60)),
            Denial,
        ),
        ("nxdomain without soa", up(ResponseCode::NXDomain), Denial),
        (
            "nxdomain + answers",
            up(ResponseCode::NXDomain).answer(a("x.example.com.", 60)),
            Uncacheable,
        ),
        ("servfail", up(ResponseCode::ServFail), ServFail),
        ("notimp", up(ResponseCode::NotImp), ServFail),
        ("refused", up(ResponseCode::Refused), Uncacheable),
        ("formerr", up(ResponseCode::FormErr), Uncacheable),
        ("yxdomain", up(ResponseCode::YXDomain), Uncacheable),
        ("badvers", up(ResponseCode::BADVERS), Uncacheable),
        (
            "truncated",
            up(ResponseCode::NoError)
                .answer(a("x.example.com.", 60))
                .truncated(),
            Uncacheable,
        ),
    ];
    for (what, upstream, class) in cases {
        assert_eq!(stored(&upstream, &q).class(), class, "{what}");
    }
}

#[test]
fn ttl_is_min_clamped() {
    let q_bytes = query_bytes("www.example.com.", RecordType::A, None, false, false);
    let q = parse_query(&q_bytes).unwrap();
    assert_eq!(stored(&www_a(), &q).ttl_secs(), 120);
    let up = |rcode| Upstream::new("www.example.com.", RecordType::A, rcode);
    let low = up(ResponseCode::NoError).answer(a("www.example.com.", 1));
    assert_eq!(stored(&low, &q).ttl_secs(), 5, "MINTTL");
    let high = up(ResponseCode::NoError).answer(a("www.example.com.", 86400));
    assert_eq!(stored(&high, &q).ttl_secs(), 3600, "cap");
    let additional_low = up(ResponseCode::NoError)
        .answer(a("www.example.com.", 300))
        .additional(a("x.", 30));
    assert_eq!(
        stored(&additional_low, &q).ttl_secs(),
        30,
        "additional counts, OPT does not"
    );
    assert_eq!(
        stored(&up(ResponseCode::NoError), &q).ttl_secs(),
        5,
        "no records"
    );
    let nx = up(ResponseCode::NXDomain).authority(soa("example.com.", 3000));
    assert_eq!(stored(&nx, &q).ttl_secs(), 1800, "denial cap");
    assert_eq!(
        stored(&up(ResponseCode::ServFail), &q).ttl_secs(),
        5,
        "servfail_ttl"
    );
    let mut c = cfg();
    c.success.ttl_max = Duration::from_secs(100);
    c.success.ttl_min = Duration::from_secs(200);
    let s = StoredAnswer::from_upstream(&high.bytes(), &q, &c).unwrap();
    assert_eq!(
        s.ttl_secs(),
        100,
        "cap wins over MINTTL like CoreDNS computeTTL"
    );
}

#[test]
fn question_must_match() {
    let q_bytes = query_bytes("WWW.example.COM.", RecordType::A, None, false, false);
    let q = parse_query(&q_bytes).unwrap();
    assert!(
        StoredAnswer::from_upstream(&www_a().bytes(), &q, &cfg()).is_ok(),
        "case-insensitive"
    );
    let other = Upstream::new("www.example.org.", RecordType::A, ResponseCode::NoError);
    let other_type = Upstream::new("www.example.com.", RecordType::AAAA, ResponseCode::NoError);
    let mut other_class = Upstream::new("www.example.com.", RecordType::A, ResponseCode::NoError);
    other_class.msg.queries_mut()[0].set_query_class(DNSClass::CH);
    for up in [other, other_type, other_class] {
        let err = StoredAnswer::from_upstream(&up.bytes(), &q, &cfg()).unwrap_err();
        assert!(matches!(err, AnswerError::QuestionMismatch), "{err}");
    }
    let mut not_response = www_a();
    not_response.msg.set_message_type(MessageType::Query);
    let err = StoredAnswer::from_upstream(&not_response.bytes(), &q, &cfg()).unwrap_err();
    assert!(matches!(err, AnswerError::NotResponse));
    let bytes = www_a().bytes();
    assert!(StoredAnswer::from_upstream(&bytes[..bytes.len() - 3], &q, &cfg()).is_err());
}

fn reply(stored: &StoredAnswer, q: &Query<'_>, ttl: u32, hit: bool, max_len: usize) -> Message {
    let mut out = [0u8; 4096];
    let n = write_reply(stored, q, ttl, hit, &mut out, max_len);
    assert!(n > 0 && n <= max_len);
    Message::from_vec(&out[..n]).expect("reply parses")
}

#[test]
fn hit_reply_is_patched() {
    let q_bytes = query_bytes("wWw.ExAmple.com.", RecordType::A, None, false, false);
    let q = parse_query(&q_bytes).unwrap();
    let s = stored(&www_a(), &q);
    let m = reply(&s, &q, 42, true, 512);
    assert_eq!(m.id(), 0x4242);
    assert_eq!(m.message_type(), MessageType::Response);
    assert!(m.authoritative() && m.recursion_available() && m.recursion_desired());
    assert!(!m.authentic_data(), "AD cleared without DO/AD");
    assert!(!m.checking_disabled());
    assert_eq!(m.queries()[0].name().to_ascii(), "wWw.ExAmple.com.");
    assert_eq!(
        (
            m.answers().len(),
            m.name_servers().len(),
            m.additionals().len()
        ),
        (2, 1, 1)
    );
    assert!(m.all_sections().all(|r| r.ttl() == 42));
    // Owner names compressed against the question take the client's letter case.
    assert!(m.answers()[1]
        .name()
        .to_ascii()
        .eq_ignore_ascii_case("web.example.com."));
    assert!(m.extensions().is_none(), "no OPT without a client OPT");

    let pass = reply(&s, &q, 42, false, 512);
    assert!(!pass.authoritative(), "pass-through keeps upstream AA");
}

#[test]
fn ad_and_opt_follow_the_client() {
    let up = www_a();
    let with_do = query_bytes(
        "www.example.com.",
        RecordType::A,
        Some((1232, true)),
        false,
        true,
    );
    let q = parse_query(&with_do).unwrap();
    let m = reply(&stored(&up, &q), &q, 10, true, 1232);
    assert!(m.authentic_data() && m.checking_disabled());
    let e = m.extensions().as_ref().expect("OPT mirrored");
    assert!(e.flags().dnssec_ok);
    assert_eq!(e.max_payload(), crate::limits::EDNS_UDP_PAYLOAD_BYTES_OURS);

    let with_ad = query_bytes(
        "www.example.com.",
        RecordType::A,
        Some((1232, false)),
        true,
        false,
    );
    let q = parse_query(&with_ad).unwrap();
    let m = reply(&stored(&up, &q), &q, 10, true, 1232);
    assert!(m.authentic_data());
    assert!(!m.extensions().as_ref().unwrap().flags().dnssec_ok);
}

#[test]
fn large_reply_is_truncated() {
    let mut up = Upstream::new("big.example.com.", RecordType::A, ResponseCode::NoError);
    for i in 0..60u8 {
        let r = Record::from_rdata(name("big.example.com."), 60, RData::A(A::new(10, 0, 0, i)));
        up = up.answer(r);
    }
    let qb = query_bytes(
        "big.example.com.",
        RecordType::A,
        Some((512, true)),
        false,
        false,
    );
    let q = parse_query(&qb).unwrap();
    let s = stored(&up, &q);
    let m = reply(&s, &q, 60, true, q.udp_limit());
    assert!(m.truncated());
    assert!(m.answers().is_empty());
    assert_eq!(m.queries()[0].name().to_ascii(), "big.example.com.");
    assert!(m.extensions().as_ref().unwrap().flags().dnssec_ok);
    let full = reply(&s, &q, 60, true, 65535);
    assert!(!full.truncated());
    assert_eq!(full.answers().len(), 60);
    let mut tiny = [0u8; 20];
    assert_eq!(write_reply(&s, &q, 60, true, &mut tiny, 65535), 0);
}

#[test]
fn servfail_and_refused_pass_through() {
    let qb = query_bytes(
        "x.example.com.",
        RecordType::A,
        Some((1232, false)),
        false,
        false,
    );
    let q = parse_query(&qb).unwrap();
    for rcode in [
        ResponseCode::Refused,
        ResponseCode::ServFail,
        ResponseCode::NXDomain,
    ] {
        let s = stored(&Upstream::new("x.example.com.", RecordType::A, rcode), &q);
        assert_eq!(reply(&s, &q, 5, false, 1232).response_code(), rcode);
    }
    let s = stored(
        &Upstream::new("x.example.com.", RecordType::A, ResponseCode::BADVERS),
        &q,
    );
    let m = reply(&s, &q, 5, false, 1232);
    assert_eq!(
        u16::from(m.response_code()),
        16,
        "extended rcode carried in our OPT"
    );
}

// ---- Shard ----

fn q_for(qname: &str) -> Vec<u8> {
    query_bytes(qname, RecordType::A, None, false, false)
}

fn answer_for(qname: &str, ttl: u32) -> Upstream {
    Upstream::new(qname, RecordType::A, ResponseCode::NoError).answer(a(qname, ttl))
}

fn insert(shard: &mut Shard, qname: &str, ttl: u32, now: Instant) {
    let qb = q_for(qname);
    let q = parse_query(&qb).unwrap();
    shard.insert(&q, stored(&answer_for(qname, ttl), &q), now);
}

fn look(shard: &mut Shard, qb: &[u8], now: Instant) -> Option<Message> {
    let q = parse_query(qb).unwrap();
    let mut out = [0u8; 4096];
    match shard.lookup(&q, now, &mut out, 4096) {
        Lookup::Hit(n) => Some(Message::from_vec(&out[..n]).unwrap()),
        Lookup::Miss => None,
    }
}

#[test]
fn hit_miss_expiry() {
    let t0 = Instant::now();
    let mut shard = Shard::new(&cfg());
    assert!(look(&mut shard, &q_for("a.example."), t0).is_none());
    insert(&mut shard, "a.example.", 30, t0);
    assert_eq!(shard.len(), (1, 0));
    let m = look(
        &mut shard,
        &q_for("A.EXAMPLE."),
        t0 + Duration::from_millis(10_900),
    )
    .expect("hit");
    assert_eq!(m.answers()[0].ttl(), 20, "30 − 10 whole seconds");
    assert_eq!(m.queries()[0].name().to_ascii(), "A.EXAMPLE.");
    assert!(m.authoritative());
    // DO and CD are part of the key.
    let with_do = query_bytes(
        "a.example.",
        RecordType::A,
        Some((1232, true)),
        false,
        false,
    );
    assert!(look(&mut shard, &with_do, t0).is_none());
    let with_cd = query_bytes("a.example.", RecordType::A, None, false, true);
    assert!(look(&mut shard, &with_cd, t0).is_none());
    assert!(look(
        &mut shard,
        &query_bytes("a.example.", RecordType::AAAA, None, false, false),
        t0
    )
    .is_none());
    assert!(look(
        &mut shard,
        &q_for("a.example."),
        t0 + Duration::from_secs(30)
    )
    .is_none());
    assert_eq!(shard.len(), (0, 0), "expired entry removed on lookup");
    assert_eq!(shard.bytes(), 0);
}

#[test]
fn keepttl_and_replacement() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.keepttl = true;
    let mut shard = Shard::new(&c);
    insert(&mut shard, "a.example.", 30, t0);
    insert(&mut shard, "a.example.", 40, t0);
    assert_eq!(shard.len(), (1, 0));
    let m = look(
        &mut shard,
        &q_for("a.example."),
        t0 + Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(m.answers()[0].ttl(), 40);
}

#[test]
fn insert_rules() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.servfail_ttl = Duration::ZERO;
    c.disable_success = vec![zone("private.example.")];
    c.zones = vec![zone("example."), zone("other.")];
    let mut shard = Shard::new(&c);
    let up = |n: &str, rcode| Upstream::new(n, RecordType::A, rcode);
    let put_with = |c: &CacheConfig, shard: &mut Shard, n: &str, up: Upstream| {
        let qb = q_for(n);
        let q = parse_query(&qb).unwrap();
        shard.insert(
            &q,
            StoredAnswer::from_upstream(&up.bytes(), &q, c).unwrap(),
            t0,
        );
    };
    put_with(
        &c,
        &mut shard,
        "s.example.",
        up("s.example.", ResponseCode::ServFail),
    );
    put_with(
        &c,
        &mut shard,
        "r.example.",
        up("r.example.", ResponseCode::Refused),
    );
    put_with(
        &c,
        &mut shard,
        "x.private.example.",
        answer_for("x.private.example.", 60),
    );
    put_with(
        &c,
        &mut shard,
        "x.elsewhere.",
        answer_for("x.elsewhere.", 60),
    );
    assert_eq!(shard.len(), (0, 0));
    put_with(
        &c,
        &mut shard,
        "x.private.example.",
        up("x.private.example.", ResponseCode::NXDomain),
    );
    put_with(&c, &mut shard, "x.other.", answer_for("x.other.", 60));
    assert_eq!(shard.len(), (1, 1));
    c.servfail_ttl = Duration::from_secs(3);
    let mut shard = Shard::new(&c);
    put_with(
        &c,
        &mut shard,
        "s.example.",
        up("s.example.", ResponseCode::ServFail),
    );
    assert_eq!(
        shard.len(),
        (0, 1),
        "SERVFAIL counts as denial like CoreDNS ncache"
    );
    let m = look(
        &mut shard,
        &q_for("s.example."),
        t0 + Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(m.response_code(), ResponseCode::ServFail);
    assert!(look(
        &mut shard,
        &q_for("s.example."),
        t0 + Duration::from_secs(3)
    )
    .is_none());
}

#[test]
fn capacity_eviction_keeps_recently_hit() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.success.capacity = 8;
    let mut shard = Shard::new(&c);
    for i in 0..8 {
        insert(&mut shard, &format!("n{i}.example."), 300, t0);
    }
    let hot = ["n1.example.", "n4.example.", "n6.example."];
    for round in 0..20 {
        for h in hot {
            assert!(
                look(&mut shard, &q_for(h), t0).is_some(),
                "{h} evicted in round {round}"
            );
        }
        insert(&mut shard, &format!("cold{round}.example."), 300, t0);
        assert_eq!(shard.len(), (8, 0));
    }
}

#[test]
fn byte_budget_holds() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.success.capacity = 10_000;
    c.max_bytes = Some(64 * 1024);
    let mut shard = Shard::new(&c);
    for i in 0..300 {
        let qname = format!("big{i}.example.");
        let mut up = Upstream::new(&qname, RecordType::A, ResponseCode::NoError);
        for j in 0..100u8 {
            up = up.answer(Record::from_rdata(
                name(&qname),
                60,
                RData::A(A::new(10, 0, i as u8, j)),
            ));
        }
        let qb = q_for(&qname);
        let q = parse_query(&qb).unwrap();
        shard.insert(&q, stored(&up, &q), t0);
        assert!(shard.bytes() <= 64 * 1024);
    }
    let (n, _) = shard.len();
    assert!(n > 10, "kept {n}");
    assert!(look(&mut shard, &q_for("big299.example."), t0).is_some());
}

#[test]
fn sweep_removes_expired() {
    let t0 = Instant::now();
    let mut c = cfg();
    c.serve_stale = Some(ServeStale {
        duration: Duration::from_secs(10),
        mode: StaleMode::Immediate,
    });
    let mut shard = Shard::new(&c);
    for i in 0..50 {
        insert(&mut shard, &format!("short{i}.example."), 5, t0);
        insert(&mut shard, &format!("long{i}.example."), 600, t0);
    }
    let qb = query_bytes("nx.example.", RecordType::A, None, false, false);
    let q = parse_query(&qb).unwrap();
    let nx = Upstream::new("nx.example.", RecordType::A, ResponseCode::NXDomain)
        .authority(soa("example.", 5));
    shard.insert(&q, stored(&nx, &q), t0);
    assert_eq!(shard.len(), (100, 1));
    assert_eq!(
        shard.sweep(t0 + Duration::from_secs(10), 1000),
        0,
        "stale window keeps them"
    );
    let later = t0 + Duration::from_secs(15);
    let mut removed = 0;
    for _ in 0..20 {
        removed += shard.sweep(later, 10);
    }
    assert_eq!(removed, 51);
    assert_eq!(shard.len(), (50, 0));
    assert!(look(&mut shard, &q_for("long3.example."), later).is_some());
}

// ---- Property: any generated answer yields a reply that parses and matches ----

fn arb_label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]{1,20}"
}

proptest! {
    #[test]
    fn replies_from_generated_answers_parse(
        labels in proptest::collection::vec(arb_label(), 1..4),
        ttls in proptest::collection::vec(0u32..100_000, 0..20),
        rcode in prop::sample::select(vec![0u16, 2, 3, 4, 5]),
        with_soa: bool,
        client_edns: Option<(u16, bool)>,
        hit: bool,
        ttl in 0u32..10_000,
        max_len in 12usize..4096,
    ) {
        let qname = format!("{}.", labels.join("."));
        let upper = qname.to_ascii_uppercase();
        let mut up = Upstream::new(&qname.to_ascii_lowercase(), RecordType::A, ResponseCode::from(0, rcode as u8));
        for (i, t) in ttls.iter().enumerate() {
            up = up.answer(Record::from_rdata(name(&qname), *t, RData::A(A::new(10, 0, 0, i as u8))));
        }
        if with_soa {
            up = up.authority(soa(&qname, 300));
        }
        let qb = query_bytes(&upper, RecordType::A, client_edns, false, false);
        let q = parse_query(&qb).unwrap();
        let s = StoredAnswer::from_upstream(&up.bytes(), &q, &cfg()).unwrap();
        let mut out = vec![0u8; 4096];
        let n = write_reply(&s, &q, ttl, hit, &mut out, max_len);
        prop_assert!(n <= max_len);
        if n > 0 {
            let m = Message::from_vec(&out[..n]).unwrap();
            prop_assert_eq!(m.id(), 0x4242);
            prop_assert_eq!(m.queries()[0].name().to_ascii(), upper);
            prop_assert_eq!(m.queries()[0].query_type(), RecordType::A);
            prop_assert_eq!(u16::from(m.response_code()), rcode);
            prop_assert!(m.all_sections().all(|r| r.ttl() == ttl));
            prop_assert_eq!(m.extensions().is_some(), client_edns.is_some());
            if !m.truncated() {
                prop_assert_eq!(m.answers().len(), ttls.len());
            }
        }
    }
}
