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
        // RFC 2308 §5: a denial without SOA is not cached.
        (
            "nxdomain without soa",
            up(ResponseCode::NXDomain),
            Uncacheable,
        ),
        (
            "nxdomain + cname chain + soa (RFC 2308 §2.1)",
            up(ResponseCode::NXDomain)
                .answer(cname("x.example.com.", "gone.example.com."))
                .authority(soa("example.com.", 60)),
            Denial,
        ),
        (
            "nxdomain + cname chain, no soa",
            up(ResponseCode::NXDomain).answer(cname("x.example.com.", "gone.example.com.")),
            Uncacheable,
        ),
        (
            "noerror + cname chain",
            up(ResponseCode::NoError)
                .answer(cname("x.example.com.", "y.example.com."))
                .answer(a("y.example.com.", 60)),
            Success,
        ),
        (
            "nodata behind a cname chain + soa",
            up(ResponseCode::NoError)
                .answer(cname("x.example.com.", "y.example.com."))
                .authority(soa("example.com.", 60)),
            Denial,
        ),
        (
            "nodata behind a cname chain, no soa",
            up(ResponseCode::NoError).answer(cname("x.example.com.", "y.example.com.")),
            Uncacheable,
        ),
        (
            "noerror + records at another name, no soa",
            up(ResponseCode::NoError).answer(a("other.example.com.", 60)),
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
        let stored = stored(&upstream, &q);
        assert_eq!(stored.class(), class, "{what}");
        let rcode = upstream.msg.response_code();
        let refreshes = [ResponseCode::NoError, ResponseCode::NXDomain].contains(&rcode)
            && !upstream.msg.truncated();
        assert_eq!(stored.refreshes(), refreshes, "{what}: refreshes");
        let answering = class == Success && !upstream.msg.answers().is_empty();
        assert_eq!(stored.answering(), answering, "{what}: answering");
    }
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 60, RData::CNAME(CNAME(name(target))))
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
    let full = reply(&s, &q, 60, true, 65535);
    assert!(!full.truncated());
    assert_eq!(full.answers().len(), 60);
    // As CoreDNS: the whole records that fit in 512 bytes, the OPT kept, TC=1.
    // Header 12, question 21, OPT 11: 468 bytes for records of 16 (owner pointer 2,
    // fixed 10, address 4): 29 of them.
    let mut out = [0u8; 4096];
    let n = write_reply(&s, &q, 60, true, &mut out, q.udp_limit());
    assert!(
        n <= 512 && n + 16 > 512,
        "{n} bytes: as many records as fit"
    );
    let m = Message::from_vec(&out[..n]).expect("truncated reply parses");
    assert!(m.truncated());
    assert_eq!(m.answers().len(), 29);
    assert_eq!(
        m.answers(),
        &full.answers()[..29],
        "the first 29, TTLs patched"
    );
    assert!(m.name_servers().is_empty() && m.additionals().is_empty());
    assert_eq!(m.queries()[0].name().to_ascii(), "big.example.com.");
    assert!(m.extensions().as_ref().unwrap().flags().dnssec_ok);
    // Room for header, question and OPT only: TC, no record.
    let bare = reply(&s, &q, 60, true, 12 + 21 + 11 + 15);
    assert!(bare.truncated() && bare.answers().is_empty());
    assert!(bare.extensions().is_some(), "the OPT is kept");
    let mut tiny = [0u8; 20];
    assert_eq!(write_reply(&s, &q, 60, true, &mut tiny, 65535), 0);
}

#[test]
fn truncation_keeps_whole_records_in_section_order() {
    // Answer, authority and additional: a cut fills the answer first, then the
    // authority, then the additional, stopping at the first record that does not
    // fit; the counts say what is there.
    let q_bytes = query_bytes("www.example.com.", RecordType::A, None, false, false);
    let q = parse_query(&q_bytes).unwrap();
    let s = stored(&www_a(), &q);
    let full = reply(&s, &q, 30, true, 65535);
    let sizes: Vec<usize> = (1..=4)
        .map(|limit| {
            let mut out = [0u8; 512];
            let mut n = 0;
            // The shortest limit that keeps `limit` records.
            for max in 12..512 {
                n = write_reply(&s, &q, 30, true, &mut out, max);
                if n == 0 {
                    assert!(max < 12 + 21, "header and question fit in {max} bytes");
                    continue;
                }
                let m = Message::from_vec(&out[..n]).unwrap();
                let kept = m.answers().len() + m.name_servers().len() + m.additionals().len();
                if kept == limit {
                    assert_eq!(
                        m.truncated(),
                        limit < 4,
                        "TC only when records are left out"
                    );
                    let sections = [m.answers(), m.name_servers(), m.additionals()];
                    let want = [
                        &full.answers()[..limit.min(2)],
                        &full.name_servers()[..limit.saturating_sub(2).min(1)],
                        &full.additionals()[..limit.saturating_sub(3)],
                    ];
                    assert_eq!(sections, want, "{limit} records kept at {max} bytes");
                    break;
                }
                assert!(kept < limit, "{kept} records at {max} bytes");
                assert!(m.truncated());
            }
            n
        })
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
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
    let n = shard.lookup(&q, now, &mut out, 4096).reply_len()?;
    Some(Message::from_vec(&out[..n]).unwrap())
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
        up("x.private.example.", ResponseCode::NXDomain).authority(soa("example.", 60)),
    );
    put_with(&c, &mut shard, "x.other.", answer_for("x.other.", 60));
    assert_eq!(shard.len(), (1, 1));
    // RFC 2308 §5: a denial without SOA is not cached.
    put_with(
        &c,
        &mut shard,
        "y.private.example.",
        up("y.private.example.", ResponseCode::NXDomain),
    );
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
        ..stale_defaults()
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

// ---- Refresh protocol, serve_stale, servfail, disable, keepttl, stats ----

use crate::config::Prefetch;
use crate::limits::{CACHE_REFRESH_MILLIS_MAX, CACHE_REFRESH_RETRY_MILLIS};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn with(edit: impl FnOnce(&mut CacheConfig)) -> CacheConfig {
    let mut c = cfg();
    edit(&mut c);
    c
}

fn prefetching(amount: u32, window: u64, percentage: u8) -> CacheConfig {
    with(|c| {
        c.prefetch = Some(Prefetch {
            amount,
            duration: secs(window),
            percentage,
        })
    })
}

fn stale(mode: StaleMode, window: u64) -> CacheConfig {
    with(|c| {
        c.serve_stale = Some(ServeStale {
            duration: secs(window),
            mode,
            ..stale_defaults()
        })
    })
}

/// serve_stale's settings besides its window and mode, as CoreDNS defaults them.
fn stale_defaults() -> ServeStale {
    ServeStale {
        duration: Duration::ZERO,
        mode: StaleMode::Immediate,
        response_ttl_secs: 0,
        failure_recheck: None,
        prefer_positive: false,
    }
}

const VERIFY: StaleMode = StaleMode::Verify { timeout: None };

/// The lookup result and the reply it wrote.
fn lookup(shard: &mut Shard, qname: &str, now: Instant) -> (Lookup, Option<Message>) {
    let qb = q_for(qname);
    let q = parse_query(&qb).unwrap();
    let mut out = [0u8; 4096];
    let result = shard.lookup(&q, now, &mut out, 4096);
    let reply = result
        .reply_len()
        .map(|n| Message::from_vec(&out[..n]).unwrap());
    shard.check_invariants();
    (result, reply)
}

fn kind(shard: &mut Shard, qname: &str, now: Instant) -> Lookup {
    match lookup(shard, qname, now).0 {
        Lookup::Hit(_) => Lookup::Hit(0),
        Lookup::HitPrefetch(_) => Lookup::HitPrefetch(0),
        Lookup::Stale(_) => Lookup::Stale(0),
        Lookup::StaleRefresh(_) => Lookup::StaleRefresh(0),
        Lookup::Miss => Lookup::Miss,
    }
}

fn lookup_stale(shard: &mut Shard, qname: &str, now: Instant) -> Option<Message> {
    let qb = q_for(qname);
    let q = parse_query(&qb).unwrap();
    let mut out = [0u8; 4096];
    let n = shard.lookup_stale(&q, now, &mut out, 4096)?;
    Some(Message::from_vec(&out[..n]).unwrap())
}

fn insert_up(shard: &mut Shard, c: &CacheConfig, qname: &str, up: &Upstream, now: Instant) -> bool {
    let qb = q_for(qname);
    let q = parse_query(&qb).unwrap();
    let s = StoredAnswer::from_upstream(&up.bytes(), &q, c).unwrap();
    let cached = shard.insert(&q, s, now);
    shard.check_invariants();
    cached
}

fn refresh_failed(shard: &mut Shard, qname: &str) {
    let qb = q_for(qname);
    shard.refresh_failed(&parse_query(&qb).unwrap());
}

const HIT: Lookup = Lookup::Hit(0);
const PREFETCH: Lookup = Lookup::HitPrefetch(0);
const STALE: Lookup = Lookup::Stale(0);
const STALE_REFRESH: Lookup = Lookup::StaleRefresh(0);
const MISS: Lookup = Lookup::Miss;

#[test]
fn prefetch_due_exactly_when_the_rules_say() {
    let t0 = Instant::now();
    // 3 hits in a row, each ≤ 10 s after the previous, remaining TTL ≤ 10% of 100 s.
    let mut shard = Shard::new(&prefetching(3, 10, 10));
    let n = "p.example.";
    insert(&mut shard, n, 100, t0);
    for t in 0..5 {
        assert_eq!(kind(&mut shard, n, t0 + secs(t)), HIT, "TTL not low at {t}");
    }
    // Gaps of 11 s restart the run: never 3 hits in a row, even with a low TTL.
    for t in [60, 71, 82, 93] {
        assert_eq!(kind(&mut shard, n, t0 + secs(t)), HIT, "run broken at {t}");
    }
    // 93 → 94 → 95: the third hit of a run, remaining 5 s.
    assert_eq!(kind(&mut shard, n, t0 + secs(94)), HIT);
    assert_eq!(kind(&mut shard, n, t0 + secs(95)), PREFETCH);
    assert_eq!(shard.stats().prefetches, 1);

    // Remaining exactly at the threshold: 90 s elapsed of 100 leaves 10.
    let mut shard = Shard::new(&prefetching(3, 10, 10));
    insert(&mut shard, n, 100, t0);
    assert_eq!(kind(&mut shard, n, t0 + secs(85)), HIT, "hit 1");
    assert_eq!(
        kind(&mut shard, n, t0 + Duration::from_millis(89_999)),
        HIT,
        "hit 2, 11 s left"
    );
    assert_eq!(
        kind(&mut shard, n, t0 + secs(90)),
        PREFETCH,
        "hit 3, 10 s left"
    );
    // The refresh answers: the new entry is fresh (not due) and keeps the run.
    insert(&mut shard, n, 100, t0 + secs(90));
    assert_eq!(kind(&mut shard, n, t0 + secs(91)), HIT);
    for t in (100..180).step_by(10) {
        assert_eq!(kind(&mut shard, n, t0 + secs(t)), HIT, "at {t}");
    }
    assert_eq!(
        kind(&mut shard, n, t0 + secs(180)),
        PREFETCH,
        "the run carried over the refresh"
    );

    // amount 1: the first hit with a low TTL is enough; prefetch off: never.
    let mut shard = Shard::new(&prefetching(1, 60, 50));
    insert(&mut shard, n, 100, t0);
    assert_eq!(kind(&mut shard, n, t0 + secs(49)), HIT);
    assert_eq!(kind(&mut shard, n, t0 + secs(50)), PREFETCH);
    let mut shard = Shard::new(&cfg());
    insert(&mut shard, n, 100, t0);
    assert_eq!(kind(&mut shard, n, t0 + secs(99)), HIT);
}

#[test]
fn one_refresh_in_flight_however_many_hits() {
    let t0 = Instant::now();
    let mut shard = Shard::new(&prefetching(1, 60, 10));
    let n = "hot.example.";
    insert(&mut shard, n, 1000, t0);
    let due = t0 + secs(950);
    let refreshes = (0..1000)
        .filter(|i| {
            let (result, reply) = lookup(&mut shard, n, due + Duration::from_millis(*i));
            assert_eq!(reply.unwrap().answers()[0].ttl(), 50);
            result.must_refresh()
        })
        .count();
    assert_eq!(refreshes, 1);
    let stats = shard.stats();
    assert_eq!(
        (stats.prefetches, stats.hits_success, stats.misses),
        (1, 1000, 0)
    );

    // A failed refresh ends it: the next due hit asks again, once.
    refresh_failed(&mut shard, n);
    refresh_failed(&mut shard, n);
    assert_eq!(
        shard.stats().refresh_failures,
        1,
        "a second report changes nothing"
    );
    assert_eq!(kind(&mut shard, n, due + secs(2)), PREFETCH);
    assert_eq!(kind(&mut shard, n, due + secs(2)), HIT);
    // An answer that is not cached (REFUSED) also ends it, as a failure: the next
    // refresh waits CACHE_REFRESH_RETRY_MILLIS.
    let refused = Upstream::new(n, RecordType::A, ResponseCode::Refused);
    let failed = due + secs(3);
    assert!(!insert_up(&mut shard, &cfg(), n, &refused, failed));
    assert_eq!(shard.stats().refresh_failures, 2);
    let retry = failed + Duration::from_millis(CACHE_REFRESH_RETRY_MILLIS);
    assert_eq!(kind(&mut shard, n, failed), HIT, "backing off");
    assert_eq!(kind(&mut shard, n, retry - Duration::from_millis(1)), HIT);
    assert_eq!(kind(&mut shard, n, retry), PREFETCH);
    // A refresh never reported is presumed lost after CACHE_REFRESH_MILLIS_MAX.
    let lost = retry + Duration::from_millis(CACHE_REFRESH_MILLIS_MAX);
    assert_eq!(kind(&mut shard, n, lost - Duration::from_millis(1)), HIT);
    assert_eq!(kind(&mut shard, n, lost), PREFETCH);
    // A SERVFAIL refresh keeps the good answer and ends the refresh (failed).
    let servfail = Upstream::new(n, RecordType::A, ResponseCode::ServFail);
    assert!(!insert_up(&mut shard, &cfg(), n, &servfail, lost));
    let (result, reply) = lookup(&mut shard, n, lost);
    assert!(!result.must_refresh(), "backing off");
    assert_eq!(reply.unwrap().response_code(), ResponseCode::NoError);
    let retry = lost + Duration::from_millis(CACHE_REFRESH_RETRY_MILLIS);
    assert_eq!(kind(&mut shard, n, retry), PREFETCH);
    // A good answer replaces the entry: fresh, nothing due.
    insert(&mut shard, n, 1000, retry);
    assert_eq!(kind(&mut shard, n, retry + secs(1)), HIT);
    assert_eq!(shard.stats().prefetches, 5);
}

/// An answer with records in all three sections, TTL 30.
fn three_sections(qname: &str) -> Upstream {
    Upstream::new(qname, RecordType::A, ResponseCode::NoError)
        .answer(a(qname, 30))
        .authority(ns("example.", 300))
        .additional(a("ns1.example.com.", 300))
}

#[test]
fn stale_immediate_answers_ttl_0_and_refreshes_once() {
    let t0 = Instant::now();
    for keepttl in [false, true] {
        let c = with(|c| {
            *c = stale(StaleMode::Immediate, 60);
            c.keepttl = keepttl;
        });
        let mut shard = Shard::new(&c);
        let n = "s.example.";
        assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
        let (result, reply) = lookup(&mut shard, n, t0 + secs(29));
        assert_eq!(result, Lookup::Hit(result.reply_len().unwrap()));
        let expect = if keepttl { 30 } else { 1 };
        assert!(reply.unwrap().all_sections().all(|r| r.ttl() == expect));
        let expired = t0 + secs(30);
        let mut refreshes = 0;
        for i in 0..1000 {
            let (result, reply) = lookup(&mut shard, n, expired + Duration::from_millis(i));
            let m = reply.expect("stale answer");
            assert_eq!(m.all_sections().count(), 3);
            assert!(m.all_sections().all(|r| r.ttl() == 0), "keepttl {keepttl}");
            assert!(matches!(result, Lookup::Stale(_) | Lookup::StaleRefresh(_)));
            refreshes += usize::from(result.must_refresh());
        }
        assert_eq!(refreshes, 1);
        let stats = shard.stats();
        assert_eq!((stats.served_stale, stats.prefetches), (1000, 1));
        // The refresh failed: still stale, the next hit asks again.
        refresh_failed(&mut shard, n);
        assert_eq!(kind(&mut shard, n, expired + secs(5)), STALE_REFRESH);
        assert_eq!(kind(&mut shard, n, expired + secs(5)), STALE);
        // SERVFAIL from the refresh does not replace the stale answer; the next
        // refresh waits the retry delay.
        let servfail = Upstream::new(n, RecordType::A, ResponseCode::ServFail);
        assert!(!insert_up(&mut shard, &c, n, &servfail, expired + secs(6)));
        assert_eq!(kind(&mut shard, n, expired + secs(6)), STALE);
        assert_eq!(kind(&mut shard, n, expired + secs(7)), STALE_REFRESH);
        // Within the window up to its end (the refresh asked at +7 s is presumed lost
        // by now), then dead and removed.
        assert_eq!(kind(&mut shard, n, expired + secs(10)), STALE);
        assert_eq!(
            kind(&mut shard, n, expired + Duration::from_millis(59_999)),
            STALE_REFRESH
        );
        assert_eq!(kind(&mut shard, n, expired + secs(60)), MISS);
        assert_eq!(shard.len(), (0, 0));
        // The refresh succeeds: fresh again.
        assert!(insert_up(
            &mut shard,
            &c,
            n,
            &three_sections(n),
            t0 + secs(100)
        ));
        assert_eq!(kind(&mut shard, n, t0 + secs(100)), HIT);
    }
}

#[test]
fn stale_verify_serves_only_through_lookup_stale() {
    let t0 = Instant::now();
    let c = stale(VERIFY, 60);
    let mut shard = Shard::new(&c);
    let n = "v.example.";
    assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
    // Fresh: lookup_stale answers as a hit would (someone refreshed meanwhile).
    let m = lookup_stale(&mut shard, n, t0 + secs(10)).unwrap();
    assert_eq!(m.answers()[0].ttl(), 20);
    let expired = t0 + secs(30);
    for i in 0..100 {
        assert_eq!(kind(&mut shard, n, expired + secs(i % 50)), MISS);
    }
    assert_eq!(shard.len(), (1, 0), "kept for lookup_stale");
    // The server's upstream query failed (REFUSED is not cached, the entry stays).
    let refused = Upstream::new(n, RecordType::A, ResponseCode::Refused);
    assert!(!insert_up(&mut shard, &c, n, &refused, expired + secs(1)));
    let m = lookup_stale(&mut shard, n, expired + secs(1)).expect("stale");
    assert!(m.all_sections().all(|r| r.ttl() == 0));
    assert_eq!(m.all_sections().count(), 3);
    let stats = shard.stats();
    assert_eq!(
        (stats.misses, stats.served_stale, stats.prefetches),
        (100, 1, 0)
    );
    assert!(
        lookup_stale(&mut shard, n, expired + secs(60)).is_none(),
        "past the window"
    );
    assert!(lookup_stale(&mut shard, "other.example.", expired).is_none());
    // serve_stale off: never.
    let mut shard = Shard::new(&cfg());
    insert(&mut shard, n, 30, t0);
    assert!(lookup_stale(&mut shard, n, expired).is_none());
    assert!(lookup_stale(&mut shard, n, t0).is_none());
}

/// serve_stale with the 1.14 options: `RESPONSE_TTL`, `FAILURE_RECHECK`,
/// `VERIFY_TIMEOUT`, `prefer_positive`.
fn stale_with(mode: StaleMode, edit: impl FnOnce(&mut ServeStale)) -> CacheConfig {
    let mut c = stale(mode, 60);
    if let Some(s) = c.serve_stale.as_mut() {
        edit(s);
    }
    c
}

#[test]
fn stale_answers_carry_the_response_ttl() {
    let t0 = Instant::now();
    let n = "r.example.";
    for mode in [StaleMode::Immediate, VERIFY] {
        let c = stale_with(mode, |s| s.response_ttl_secs = 30);
        let mut shard = Shard::new(&c);
        assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
        let expired = t0 + secs(31);
        let via_lookup = lookup(&mut shard, n, expired).1;
        let reply = via_lookup.or_else(|| lookup_stale(&mut shard, n, expired));
        let m = reply.expect("stale answer");
        assert!(m.all_sections().all(|r| r.ttl() == 30), "{mode:?}: {m:?}");
        // Fresh answers keep their own TTL.
        let fresh = lookup(&mut shard, n, t0 + secs(10)).1;
        let fresh = fresh.or_else(|| lookup_stale(&mut shard, n, t0 + secs(10)));
        assert!(fresh.unwrap().all_sections().all(|r| r.ttl() == 20));
    }
}

#[test]
fn failure_recheck_holds_the_next_stale_refresh_back() {
    let t0 = Instant::now();
    let n = "f.example.";
    let c = stale_with(StaleMode::Immediate, |s| s.failure_recheck = Some(secs(20)));
    let mut shard = Shard::new(&c);
    assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
    let expired = t0 + secs(30);
    assert_eq!(kind(&mut shard, n, expired), STALE_REFRESH);
    let qb = q_for(n);
    let q = parse_query(&qb).unwrap();
    shard.refresh_failed_at(&q, expired);
    for late in [0, 1, 10, 19] {
        assert_eq!(kind(&mut shard, n, expired + secs(late)), STALE, "+{late}s");
    }
    assert_eq!(kind(&mut shard, n, expired + secs(20)), STALE_REFRESH);
    // A prefetch of a fresh entry still retries after the default delay.
    let c = with(|c| {
        *c = stale_with(StaleMode::Immediate, |s| s.failure_recheck = Some(secs(20)));
        c.prefetch = Some(Prefetch {
            amount: 1,
            duration: secs(60),
            percentage: 90,
        });
    });
    let mut shard = Shard::new(&c);
    assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
    assert_eq!(kind(&mut shard, n, t0 + secs(5)), PREFETCH);
    shard.refresh_failed_at(&q, t0 + secs(5));
    let retry = t0 + secs(5) + Duration::from_millis(CACHE_REFRESH_RETRY_MILLIS);
    assert_eq!(kind(&mut shard, n, retry), PREFETCH);
}

#[test]
fn verify_with_failure_recheck_answers_stale_while_verifying() {
    let t0 = Instant::now();
    let n = "vr.example.";
    let mode = StaleMode::Verify {
        timeout: Some(Duration::from_millis(100)),
    };
    let c = stale_with(mode, |s| s.failure_recheck = Some(secs(20)));
    let mut shard = Shard::new(&c);
    assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
    let qb = q_for(n);
    let q = parse_query(&qb).unwrap();
    assert_eq!(shard.stale_entry(&q, t0 + secs(10)), None, "fresh");
    let expired = t0 + secs(30);
    let entry = shard.stale_entry(&q, expired).expect("stale entry");
    assert_eq!(entry.verify_timeout, Some(Duration::from_millis(100)));
    // The first miss verifies; while it runs, the others are answered stale.
    assert_eq!(kind(&mut shard, n, expired), MISS);
    assert_eq!(kind(&mut shard, n, expired + secs(1)), STALE);
    // It failed: stale for the recheck, then the next miss verifies again.
    shard.refresh_failed_at(&q, expired + secs(2));
    assert_eq!(kind(&mut shard, n, expired + secs(21)), STALE);
    assert_eq!(kind(&mut shard, n, expired + secs(22)), MISS);
    // Its answer came: fresh.
    assert!(insert_up(
        &mut shard,
        &c,
        n,
        &three_sections(n),
        expired + secs(23)
    ));
    assert_eq!(kind(&mut shard, n, expired + secs(23)), HIT);
    // A copy for another shard is never stale.
    let mut out = [0u8; 4096];
    let late = expired + secs(60);
    assert_eq!(shard.lookup_fresh(&q, late, &mut out), MISS);
    assert_eq!(
        kind(&mut shard, n, late),
        MISS,
        "the fresh-only lookup claimed nothing"
    );
    // Without serve_stale there is no stale entry.
    let mut plain = Shard::new(&cfg());
    insert(&mut plain, n, 30, t0);
    assert_eq!(plain.stale_entry(&q, expired), None);
}

#[test]
fn prefer_positive_keeps_the_last_positive_answer() {
    let t0 = Instant::now();
    let n = "p.example.";
    let nxdomain =
        Upstream::new(n, RecordType::A, ResponseCode::NXDomain).authority(soa("example.", 60));
    let nodata =
        Upstream::new(n, RecordType::A, ResponseCode::NoError).authority(soa("example.", 60));
    let empty = Upstream::new(n, RecordType::A, ResponseCode::NoError);
    for mode in [StaleMode::Immediate, VERIFY] {
        let c = stale_with(mode, |s| s.prefer_positive = true);
        let mut shard = Shard::new(&c);
        assert!(shard.prefer_positive());
        assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
        // Fresh or stale, a denial or an empty NOERROR does not replace it.
        for (at, up) in [
            (10, &nxdomain),
            (31, &nxdomain),
            (32, &nodata),
            (33, &empty),
        ] {
            assert!(
                !insert_up(&mut shard, &c, n, up, t0 + secs(at)),
                "{mode:?} +{at}s"
            );
            let m = lookup_stale(&mut shard, n, t0 + secs(at)).expect("positive kept");
            assert_eq!(m.response_code(), ResponseCode::NoError);
            assert_eq!(m.answers().len(), 1, "{mode:?} +{at}s");
        }
        // Past the window it is gone, and the denial is cached.
        let dead = t0 + secs(30 + 60);
        assert_eq!(kind(&mut shard, n, dead), MISS);
        assert!(insert_up(&mut shard, &c, n, &nxdomain, dead));
        // A positive answer replaces a denial, and another positive answer.
        assert!(insert_up(&mut shard, &c, n, &three_sections(n), dead));
        let other = Upstream::new(n, RecordType::A, ResponseCode::NoError).answer(a(n, 300));
        assert!(insert_up(&mut shard, &c, n, &other, dead + secs(1)));
        let m = lookup_stale(&mut shard, n, dead + secs(2)).unwrap();
        assert_eq!(m.all_sections().count(), 1);
    }
    // Without the policy, the denial replaces the stale positive answer.
    let c = stale(StaleMode::Immediate, 60);
    let mut shard = Shard::new(&c);
    assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
    assert!(!shard.prefer_positive());
    assert!(insert_up(&mut shard, &c, n, &nxdomain, t0 + secs(31)));
    let m = lookup_stale(&mut shard, n, t0 + secs(31)).unwrap();
    assert_eq!(m.response_code(), ResponseCode::NXDomain);
}

#[test]
fn another_cores_stale_copy_is_answered_never_cached() {
    let t0 = Instant::now();
    let n = "c.example.";
    let c = stale(StaleMode::Immediate, 60);
    let qb = q_for(n);
    let q = parse_query(&qb).unwrap();
    let copy = StoredAnswer::from_upstream(&three_sections(n).bytes(), &q, &c).unwrap();
    let stale_copy = copy.clone().into_stale(7);
    assert!(stale_copy.is_stale() && !copy.is_stale());
    assert_eq!(stale_copy.ttl_secs(), 7);
    let mut out = [0u8; 4096];
    let len = write_reply(&stale_copy, &q, stale_copy.ttl_secs(), true, &mut out, 4096);
    let m = Message::from_vec(&out[..len]).unwrap();
    assert!(m.all_sections().all(|r| r.ttl() == 7));
    let mut shard = Shard::new(&c);
    assert!(
        !shard.insert(&q, stale_copy, t0),
        "a stale copy is not cached"
    );
    assert_eq!(shard.len(), (0, 0));
    assert!(shard.insert(&q, copy, t0));
}

#[test]
fn servfail_cached_for_its_duration_and_never_stale() {
    let t0 = Instant::now();
    for rcode in [ResponseCode::ServFail, ResponseCode::NotImp] {
        let c = with(|c| {
            *c = stale(StaleMode::Immediate, 3600);
            c.servfail_ttl = secs(5);
        });
        let mut shard = Shard::new(&c);
        let n = "f.example.";
        let up = Upstream::new(n, RecordType::A, rcode);
        assert!(insert_up(&mut shard, &c, n, &up, t0));
        assert_eq!(shard.len(), (0, 1));
        let (result, reply) = lookup(&mut shard, n, t0 + Duration::from_millis(4_999));
        assert!(!result.must_refresh());
        assert_eq!(reply.unwrap().response_code(), rcode);
        assert_eq!(kind(&mut shard, n, t0 + secs(5)), MISS, "not served stale");
        assert_eq!(shard.len(), (0, 0), "removed at once");
        assert!(insert_up(&mut shard, &c, n, &up, t0 + secs(6)));
        assert!(lookup_stale(&mut shard, n, t0 + secs(11)).is_none());
        assert_eq!(shard.stats().hits_denial, 1);
        // A good answer replaces a cached SERVFAIL at once.
        assert!(insert_up(
            &mut shard,
            &c,
            n,
            &answer_for(n, 60),
            t0 + secs(7)
        ));
        assert_eq!(shard.len(), (1, 0));
    }
}

#[test]
fn disable_by_class_and_zone() {
    let t0 = Instant::now();
    let c = with(|c| {
        c.disable_success = vec![zone("a.example.")];
        c.disable_denial = vec![zone("b.example.")];
    });
    let nx = |n: &str| {
        Upstream::new(n, RecordType::A, ResponseCode::NXDomain).authority(soa("example.", 60))
    };
    let nodata = |n: &str| {
        Upstream::new(n, RecordType::A, ResponseCode::NoError).authority(soa("example.", 60))
    };
    let mut shard = Shard::new(&c);
    let cases = [
        ("a.example.", answer_for("a.example.", 60), false),
        ("x.a.example.", answer_for("x.a.example.", 60), false),
        ("X.A.EXAMPLE.", answer_for("X.A.EXAMPLE.", 60), false),
        ("x.a.example.", nx("x.a.example."), true),
        ("x.b.example.", answer_for("x.b.example.", 60), true),
        ("b.example.", nx("b.example."), false),
        ("y.b.example.", nodata("y.b.example."), false),
        ("xa.example.", answer_for("xa.example.", 60), true),
        ("c.example.", nx("c.example."), true),
    ];
    for (n, up, cached) in &cases {
        assert_eq!(insert_up(&mut shard, &c, n, up, t0), *cached, "{n}");
    }
    // No zones given: the parser makes it the root, everything of that class.
    let c = with(|c| c.disable_denial = vec![zone(".")]);
    let mut shard = Shard::new(&c);
    assert!(!insert_up(
        &mut shard,
        &c,
        "c.example.",
        &nx("c.example."),
        t0
    ));
    assert!(insert_up(
        &mut shard,
        &c,
        "c.example.",
        &answer_for("c.example.", 60),
        t0
    ));
}

#[test]
fn keepttl_answers_the_original_ttl_and_prefetches_on_the_real_one() {
    let t0 = Instant::now();
    let c = with(|c| {
        *c = prefetching(1, 60, 10);
        c.keepttl = true;
    });
    let mut shard = Shard::new(&c);
    let n = "k.example.";
    assert!(insert_up(&mut shard, &c, n, &three_sections(n), t0));
    for t in [0, 1, 26] {
        let (result, reply) = lookup(&mut shard, n, t0 + secs(t));
        assert_eq!(result, Lookup::Hit(result.reply_len().unwrap()));
        assert!(
            reply.unwrap().all_sections().all(|r| r.ttl() == 30),
            "at {t}"
        );
    }
    let (result, reply) = lookup(&mut shard, n, t0 + secs(27));
    assert!(result.must_refresh(), "3 s left of 30");
    assert!(reply.unwrap().all_sections().all(|r| r.ttl() == 30));
    assert_eq!(
        kind(&mut shard, n, t0 + secs(30)),
        MISS,
        "expired all the same"
    );
}

#[test]
fn expired_entries_are_evicted_first() {
    let t0 = Instant::now();
    // Within the stale window (so not swept), expired entries still go before fresh.
    let c = with(|c| {
        *c = stale(StaleMode::Immediate, 3600);
        c.success.capacity = 8;
    });
    let mut shard = Shard::new(&c);
    for i in 0..4 {
        insert(&mut shard, &format!("short{i}.example."), 10, t0);
        insert(&mut shard, &format!("long{i}.example."), 300, t0);
    }
    let later = t0 + secs(20);
    for i in 0..4 {
        // Referenced recently: CLOCK alone would keep the short ones too.
        assert_eq!(
            kind(&mut shard, &format!("short{i}.example."), later),
            STALE_REFRESH
        );
    }
    for i in 0..4 {
        insert(&mut shard, &format!("new{i}.example."), 300, later);
    }
    assert_eq!(shard.len(), (8, 0));
    for i in 0..4 {
        assert_eq!(kind(&mut shard, &format!("long{i}.example."), later), HIT);
        assert_eq!(kind(&mut shard, &format!("new{i}.example."), later), HIT);
        assert_eq!(kind(&mut shard, &format!("short{i}.example."), later), MISS);
    }
    let stats = shard.stats();
    assert_eq!((stats.evictions_success, stats.expired), (4, 0));
    // For bytes too: a budget of exactly 8 entries, the fresh ones first under the
    // hand, then 4 more (same size) once 4 have expired.
    let mut probe = Shard::new(&cfg());
    insert(&mut probe, "l0.example.", 300, t0);
    let c = with(|c| c.max_bytes = Some(8 * probe.bytes()));
    let mut shard = Shard::new(&c);
    for i in 0..4 {
        insert(&mut shard, &format!("l{i}.example."), 300, t0);
    }
    for i in 0..4 {
        insert(&mut shard, &format!("s{i}.example."), 10, t0);
    }
    assert_eq!(shard.len(), (8, 0));
    for i in 0..4 {
        insert(&mut shard, &format!("n{i}.example."), 300, later);
    }
    for i in 0..4 {
        assert_eq!(kind(&mut shard, &format!("l{i}.example."), later), HIT);
        assert_eq!(kind(&mut shard, &format!("n{i}.example."), later), HIT);
    }
    assert_eq!(shard.len(), (8, 0));
    assert_eq!(shard.stats().evictions_success, 4);
}

#[test]
fn sweep_is_incremental() {
    let t0 = Instant::now();
    let c = with(|c| c.success.capacity = 20_000);
    let mut shard = Shard::new(&c);
    for i in 0..10_000 {
        insert(&mut shard, &format!("live{i}.example."), 600, t0);
    }
    for i in 0..100 {
        insert(&mut shard, &format!("dead{i}.example."), 5 + i % 10, t0);
    }
    let later = t0 + secs(60);
    let mut calls = 0;
    while shard.sweep(later, 8) > 0 {
        calls += 1;
        assert!(calls <= 13);
        shard.check_invariants();
    }
    assert_eq!(calls, 13, "100 dead, 8 per call");
    assert_eq!(shard.len(), (10_000, 0));
    assert_eq!(shard.stats().expired, 100);
    assert_eq!(shard.sweep(later, usize::MAX), 0);
}

#[test]
fn byte_budget_holds_under_a_flood() {
    let t0 = Instant::now();
    for shards in [1, 3] {
        let c = with(|c| {
            c.success.capacity = 100_000;
            c.denial.capacity = 100_000;
            c.max_bytes = Some(256 * 1024);
        });
        let mut shard = Shard::with_share(&c, shards);
        let budget = shard.bytes_max();
        for i in 0..2_000usize {
            let qname = format!("flood{i}.example.");
            let now = t0 + Duration::from_millis(i as u64 * 10);
            let records = 1 + (i * 37) % 150;
            let mut up = if i % 5 == 0 {
                Upstream::new(&qname, RecordType::A, ResponseCode::NXDomain)
            } else {
                Upstream::new(&qname, RecordType::A, ResponseCode::NoError)
            };
            for j in 0..records {
                up = up.additional(Record::from_rdata(
                    name(&format!("r{j}.{qname}")),
                    5 + (i % 60) as u32,
                    RData::A(A::new(10, 0, (j >> 8) as u8, j as u8)),
                ));
            }
            insert_up(&mut shard, &c, &qname, &up, now);
            assert!(shard.bytes() <= budget, "{} > {budget}", shard.bytes());
            if i % 7 == 0 {
                lookup(&mut shard, &format!("flood{}.example.", i / 2), now);
            }
            if i % 100 == 0 {
                shard.sweep(now, 16);
            }
        }
        let stats = shard.stats();
        assert!(stats.evictions_success + stats.evictions_denial > 0);
        assert_eq!(stats.bytes, shard.bytes());
        assert_eq!((stats.entries_success, stats.entries_denial), shard.len());
    }
    // An answer larger than the whole budget is dropped and counted.
    let c = with(|c| c.max_bytes = Some(1024));
    let mut shard = Shard::new(&c);
    let mut up = Upstream::new("huge.example.", RecordType::A, ResponseCode::NoError);
    for j in 0..100 {
        up = up.answer(Record::from_rdata(
            name("huge.example."),
            60,
            RData::A(A::new(10, 0, 0, j)),
        ));
    }
    assert!(!insert_up(&mut shard, &c, "huge.example.", &up, t0));
    assert_eq!((shard.stats().drops, shard.len()), (1, (0, 0)));
}

#[test]
fn stats_count_lookups() {
    let t0 = Instant::now();
    let mut shard = Shard::new(&cfg());
    let c = cfg();
    insert(&mut shard, "a.example.", 60, t0);
    let nx = Upstream::new("nx.example.", RecordType::A, ResponseCode::NXDomain)
        .authority(soa("example.", 60));
    insert_up(&mut shard, &c, "nx.example.", &nx, t0);
    kind(&mut shard, "a.example.", t0);
    kind(&mut shard, "a.example.", t0);
    kind(&mut shard, "nx.example.", t0);
    kind(&mut shard, "none.example.", t0);
    kind(&mut shard, "a.example.", t0 + secs(60));
    let s = shard.stats();
    assert_eq!(
        (
            s.hits_success,
            s.hits_denial,
            s.misses,
            s.expired,
            s.requests()
        ),
        (2, 1, 2, 1, 5)
    );
    assert_eq!((s.entries_success, s.entries_denial), (0, 1));
    assert_eq!(s.bytes, shard.bytes());
}

// ---- Property: any sequence of operations keeps the shard consistent ----

#[derive(Debug, Clone)]
enum Op {
    Insert { name: u8, ttl: u32, rcode: u16 },
    Lookup { name: u8 },
    LookupStale { name: u8 },
    Failed { name: u8 },
    Sweep { budget: usize },
    Advance { millis: u64 },
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0u8..32,
            0u32..120,
            prop::sample::select(vec![0u16, 2, 3, 4, 5])
        )
            .prop_map(|(name, ttl, rcode)| Op::Insert { name, ttl, rcode }),
        (0u8..32).prop_map(|name| Op::Lookup { name }),
        (0u8..32).prop_map(|name| Op::LookupStale { name }),
        (0u8..32).prop_map(|name| Op::Failed { name }),
        (0usize..8).prop_map(|budget| Op::Sweep { budget }),
        (0u64..30_000).prop_map(|millis| Op::Advance { millis }),
    ]
}

proptest! {
    #[test]
    fn any_operations_keep_the_shard_consistent(
        ops in proptest::collection::vec(arb_op(), 1..200),
        immediate: bool,
        capacity in 1usize..6,
        max_bytes in 300usize..3000,
    ) {
        let mode = if immediate { StaleMode::Immediate } else { VERIFY };
        let c = with(|c| {
            *c = stale(mode, 20);
            c.prefetch = Some(Prefetch { amount: 2, duration: secs(5), percentage: 50 });
            c.success.capacity = capacity;
            c.denial.capacity = capacity;
            c.max_bytes = Some(max_bytes);
        });
        let mut shard = Shard::new(&c);
        let mut now = Instant::now();
        let qname = |n: u8| format!("n{n}.example.");
        for op in ops {
            match op {
                Op::Insert { name, ttl, rcode } => {
                    let n = qname(name);
                    let mut up = Upstream::new(&n, RecordType::A, ResponseCode::from(0, rcode as u8));
                    if rcode == 0 {
                        up = up.answer(a(&n, ttl));
                    }
                    insert_up(&mut shard, &c, &n, &up, now);
                }
                Op::Lookup { name } => {
                    lookup(&mut shard, &qname(name), now);
                }
                Op::LookupStale { name } => {
                    lookup_stale(&mut shard, &qname(name), now);
                }
                Op::Failed { name } => refresh_failed(&mut shard, &qname(name)),
                Op::Sweep { budget } => {
                    prop_assert!(shard.sweep(now, budget) <= budget);
                }
                Op::Advance { millis } => now += Duration::from_millis(millis),
            }
            shard.check_invariants();
        }
    }
}

// ---- Compact entries: stamps, expiry buckets, footprint ----

/// Sweeping at the exact moment entries die removes exactly those, even when they
/// share their expiry second with entries still alive.
#[test]
fn sweep_is_exact_within_an_expiry_second() {
    let t0 = Instant::now();
    let mut shard = Shard::new(&cfg());
    for (i, ms) in [0u64, 400, 999, 1_000].into_iter().enumerate() {
        insert(
            &mut shard,
            &format!("e{i}.example."),
            10,
            t0 + Duration::from_millis(ms),
        );
    }
    shard.check_invariants();
    let at = |ms: u64| t0 + Duration::from_millis(10_000 + ms);
    assert_eq!(shard.sweep(at(0) - Duration::from_millis(1), 100), 0);
    assert_eq!(shard.sweep(at(0), 100), 1);
    assert_eq!(shard.sweep(at(399), 100), 0);
    assert_eq!(shard.sweep(at(400), 100), 1);
    assert_eq!(shard.sweep(at(999), 1), 1);
    shard.check_invariants();
    assert_eq!(shard.len(), (1, 0));
    assert_eq!(kind(&mut shard, "e3.example.", at(999)), HIT);
    assert_eq!(shard.sweep(at(1_000), 100), 1);
    assert_eq!(
        (shard.len(), shard.bytes(), shard.stats().expired),
        ((0, 0), 0, 4)
    );
}

/// Eviction takes an entry whose expiry second has passed before a fresh one, and a
/// replaced or evicted entry leaves its bucket at once (no garbage accumulates).
#[test]
fn expiry_buckets_follow_entries() {
    let t0 = Instant::now();
    let c = with(|c| {
        *c = stale(StaleMode::Immediate, 3600);
        c.success.capacity = 3;
    });
    let mut shard = Shard::new(&c);
    insert(&mut shard, "fresh.example.", 600, t0);
    insert(&mut shard, "short.example.", 5, t0);
    insert(&mut shard, "other.example.", 600, t0);
    // Replacing moves the entry to its new bucket.
    for i in 0..50 {
        insert(&mut shard, "other.example.", 600 + i, t0 + secs(1));
        shard.check_invariants();
    }
    let later = t0 + secs(7);
    insert(&mut shard, "new.example.", 600, later);
    assert_eq!(kind(&mut shard, "short.example.", later), MISS);
    assert_eq!(kind(&mut shard, "fresh.example.", later), HIT);
    assert_eq!(kind(&mut shard, "other.example.", later), HIT);
    assert_eq!(shard.stats().evictions_success, 1);
    // CLOCK takes over once nothing has expired; the pool stays full and consistent.
    for i in 0..20 {
        insert(
            &mut shard,
            &format!("n{i}.example."),
            1 + i % 3,
            later + secs(i.into()),
        );
        shard.check_invariants();
    }
    assert_eq!(shard.len(), (3, 0));
}

/// Times outside the ordinary: before the shard's epoch, TTLs of 68 years, clocks
/// far in the future. Nothing panics and the arithmetic saturates sensibly.
#[test]
fn stamps_saturate_at_the_edges() {
    let t0 = Instant::now();
    let c = with(|c| {
        c.success.ttl_max = secs(i32::MAX as u64);
        c.success.ttl_min = secs(i32::MAX as u64);
        *c = {
            let mut s = c.clone();
            s.serve_stale = Some(ServeStale {
                duration: Duration::MAX,
                mode: StaleMode::Immediate,
                ..stale_defaults()
            });
            s
        };
    });
    let mut shard = Shard::new(&c);
    let qb = q_for("long.example.");
    let q = parse_query(&qb).unwrap();
    let s = StoredAnswer::from_upstream(&answer_for("long.example.", 60).bytes(), &q, &c).unwrap();
    assert_eq!(s.ttl_secs(), i32::MAX as u32);
    assert!(shard.insert(&q, s, t0));
    let year = secs(365 * 24 * 3600);
    let (result, reply) = lookup(&mut shard, "long.example.", t0 + year * 50);
    assert_eq!(result, Lookup::Hit(result.reply_len().unwrap()));
    let shown = reply.unwrap().answers()[0].ttl();
    assert!(
        shown < i32::MAX as u32 - 49 * 365 * 24 * 3600,
        "ttl {shown}"
    );
    if let Some(far) = t0.checked_add(year * 100) {
        assert!(matches!(
            kind(&mut shard, "long.example.", far),
            STALE_REFRESH
        ));
        assert_eq!(shard.sweep(far, 10), 0, "stale forever");
    }
    // A moment before the epoch (a query read before a reload made the shard).
    if let Some(early) = t0.checked_sub(secs(3 * 24 * 3600)) {
        insert(&mut shard, "early.example.", 60, early);
        assert!(look(&mut shard, &q_for("early.example."), early).is_some());
        shard.sweep(early, 10);
        shard.check_invariants();
    }
}

/// Names of the cache-zipf fill, all with the same shape of answer.
fn fill(shard: &mut Shard, n: usize, t0: Instant, spread: Duration) -> usize {
    let mut by_len: std::collections::HashMap<usize, StoredAnswer> = Default::default();
    let mut cached = 0;
    for i in 0..n {
        let qname = format!("f{i}.z.test.");
        let qb = q_for(&qname);
        let q = parse_query(&qb).unwrap();
        let s = by_len
            .entry(qname.len())
            .or_insert_with(|| stored(&answer_for(&qname, 3600), &q))
            .clone();
        let now = t0 + spread.mul_f64(i as f64 / n as f64);
        cached += usize::from(shard.insert(&q, s, now));
    }
    cached
}

/// A long fill of distinct names keeps every one, and the budget counts what the
/// entries really take: one 48-byte slot, one allocation, the index.
#[test]
fn a_fill_keeps_every_entry() {
    let t0 = Instant::now();
    let n = 100_000;
    let c = with(|c| {
        c.success.capacity = 2 * n;
        c.max_bytes = Some(4 << 30);
    });
    let mut shard = Shard::new(&c);
    assert_eq!(fill(&mut shard, n, t0, secs(144)), n);
    assert_eq!(shard.len(), (n, 0));
    let stats = shard.stats();
    assert_eq!(
        (stats.evictions_success, stats.expired, stats.drops),
        (0, 0, 0)
    );
    shard.check_invariants();
    // f0.z.test. A: 22 header + 11 name + 16 record + 2 TTL offset = 51 B, a 64 B chunk.
    let mut one = Shard::new(&c);
    fill(&mut one, 1, t0, secs(1));
    assert_eq!(one.bytes(), 48 + 64 + 24);
    // The README's example: 22 + 32 + 16 + 2 = 72 B, an 80 B chunk.
    let mut one = Shard::new(&c);
    insert(&mut one, "my-svc.my-ns.svc.cluster.local.", 30, t0);
    assert_eq!(one.bytes(), 152);
}

// ---- README ----

/// Every `~~~ corefile` example of README.md parses, and its cache makes a shard.
#[test]
fn readme_examples() {
    let readme = include_str!("README.md");
    let file = std::path::Path::new("README.md");
    let mut caches = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("~~~ corefile\n") {
        let body = &rest[start + "~~~ corefile\n".len()..];
        let end = body.find("~~~").expect("example is closed");
        let text = &body[..end];
        let config = crate::config::parse_corefile(text, file)
            .unwrap_or_else(|e| panic!("README example fails: {e}\n{text}"));
        for server in config.servers {
            let cache = server.cache.expect("every example has a cache");
            let shard = Shard::with_share(&cache, 4);
            assert!(shard.is_empty() && shard.bytes_max() > 0);
            caches.push(cache);
        }
        rest = &body[end..];
    }
    assert_eq!(caches.len(), 8);
    assert_eq!(caches[0].denial.ttl_max, secs(5));
    assert_eq!(caches[2].zones, vec![zone("example.org.")]);
    assert_eq!(
        caches[2].prefetch,
        Some(Prefetch {
            amount: 5,
            duration: secs(10),
            percentage: 10
        })
    );
    assert_eq!(caches[3].serve_stale.map(|s| s.mode), Some(VERIFY));
    assert_eq!(
        caches[4].serve_stale,
        Some(ServeStale {
            duration: secs(3600),
            mode: StaleMode::Verify {
                timeout: Some(Duration::from_millis(100))
            },
            response_ttl_secs: 30,
            failure_recheck: Some(secs(30)),
            prefer_positive: true,
        })
    );
    assert_eq!(caches[5].serve_stale.map(|s| s.response_ttl_secs), Some(30));
    assert_eq!(caches[6].disable_denial, vec![zone("svc.cluster.local.")]);
    assert_eq!(caches[6].max_bytes, Some(64 << 20));
    assert!(caches[6].keepttl);
    assert_eq!(caches[7].servfail_ttl, Duration::ZERO);
    assert_eq!(caches[7].disable_denial, vec![zone(".")]);
}

// ---- Stored in place or decoded and re-encoded: the same answer ----

use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{AAAA, MX, NULL, OPT, PTR, SRV, TXT};

/// The replies `stored` gives to a few clients (no EDNS, EDNS, EDNS with DO; hit or
/// not; with room, and if `tight` with 100 bytes), decoded.
fn replies(
    stored: &StoredAnswer,
    qname: &str,
    rtype: RecordType,
    tight: bool,
) -> Vec<Option<Message>> {
    let mut out = Vec::new();
    let limits: &[(bool, usize)] = if tight {
        &[(false, 4096), (true, 4096), (true, 100)]
    } else {
        &[(false, 4096), (true, 4096)]
    };
    for edns in [None, Some((1232, false)), Some((4096, true))] {
        let qb = query_bytes(qname, rtype, edns, true, false);
        let q = parse_query(&qb).unwrap();
        for &(hit, max_len) in limits {
            let mut buf = [0u8; 4096];
            let n = write_reply(stored, &q, 77, hit, &mut buf, max_len);
            out.push((n > 0).then(|| Message::from_vec(&buf[..n]).expect("reply parses")));
        }
    }
    out
}

/// Both paths on `bytes` for a query of `qname`/`rtype`: the wire path must take
/// them, agree with the decoding path on every field and give the same replies.
/// Where the upstream compressed differently from hickory-proto, the records differ
/// in length and so may a reply's truncation: tight limits are compared only for
/// records of the same length.
fn assert_paths_agree(bytes: &[u8], qname: &str, rtype: RecordType) -> StoredAnswer {
    let qb = query_bytes(qname, rtype, None, false, false);
    let q = parse_query(&qb).unwrap();
    let fast = StoredAnswer::from_wire(bytes, &q, &cfg()).expect("plain answer walked");
    let full = StoredAnswer::from_decoded(bytes, &q, &cfg()).expect("answer decodes");
    assert_eq!(fast.meta(), full.meta());
    let tight = fast.heap_bytes() == full.heap_bytes();
    assert_eq!(
        replies(&fast, qname, rtype, tight),
        replies(&full, qname, rtype, tight)
    );
    assert_eq!(
        StoredAnswer::from_upstream(bytes, &q, &cfg()).unwrap(),
        fast
    );
    fast
}

/// `bytes` is not plain: the wire path declines it and the result is the decoding
/// path's, as it was before there was a wire path.
fn assert_decoded_only(bytes: &[u8], qname: &str) -> Result<StoredAnswer, String> {
    let qb = query_bytes(qname, RecordType::A, None, false, false);
    let q = parse_query(&qb).unwrap();
    assert_eq!(StoredAnswer::from_wire(bytes, &q, &cfg()), None);
    let now = StoredAnswer::from_upstream(bytes, &q, &cfg()).map_err(|e| e.to_string());
    let decoded = StoredAnswer::from_decoded(bytes, &q, &cfg()).map_err(|e| e.to_string());
    assert_eq!(now, decoded);
    now
}

fn without_opt(mut up: Upstream) -> Upstream {
    *up.msg.extensions_mut() = None;
    up
}

fn rec(owner: &str, ttl: u32, rdata: RData) -> Record {
    Record::from_rdata(name(owner), ttl, rdata)
}

fn realistic_answers() -> Vec<(&'static str, RecordType, Upstream)> {
    let q = "www.example.com.";
    let cname = |to: &str| RData::CNAME(CNAME(name(to)));
    vec![
        ("www.example.com.", RecordType::A, www_a()),
        (
            q,
            RecordType::AAAA,
            Upstream::new(q, RecordType::AAAA, ResponseCode::NoError)
                .answer(rec(q, 60, cname("a.example.net.")))
                .answer(rec("a.example.net.", 30, cname("b.example.org.")))
                .answer(rec(
                    "b.example.org.",
                    20,
                    RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                )),
        ),
        (
            q,
            RecordType::A,
            Upstream::new(q, RecordType::A, ResponseCode::NXDomain)
                .authority(soa("example.com.", 900)),
        ),
        (
            q,
            RecordType::AAAA,
            Upstream::new(q, RecordType::AAAA, ResponseCode::NoError)
                .authority(soa("example.com.", 40)),
        ),
        (
            "x.sub.example.com.",
            RecordType::A,
            Upstream::new("x.sub.example.com.", RecordType::A, ResponseCode::NoError)
                .authority(ns("sub.example.com.", 3000))
                .authority(rec(
                    "sub.example.com.",
                    3000,
                    RData::NS(NS(name("ns2.sub.example.com."))),
                ))
                .additional(a("ns1.example.com.", 100))
                .additional(rec(
                    "ns2.sub.example.com.",
                    200,
                    RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
                )),
        ),
        (
            q,
            RecordType::A,
            Upstream::new(q, RecordType::A, ResponseCode::ServFail),
        ),
        (
            q,
            RecordType::A,
            Upstream::new(q, RecordType::A, ResponseCode::NotImp),
        ),
        (
            q,
            RecordType::A,
            Upstream::new(q, RecordType::A, ResponseCode::Refused),
        ),
        (
            q,
            RecordType::A,
            Upstream::new(q, RecordType::A, ResponseCode::NXDomain).answer(a(q, 10)),
        ),
        (q, RecordType::A, www_a().truncated()),
        (
            q,
            RecordType::MX,
            Upstream::new(q, RecordType::MX, ResponseCode::NoError)
                .answer(rec(q, 300, RData::MX(MX::new(10, name("mx.example.com.")))))
                .additional(a("mx.example.com.", 300)),
        ),
        (
            "_dns._udp.example.com.",
            RecordType::SRV,
            Upstream::new(
                "_dns._udp.example.com.",
                RecordType::SRV,
                ResponseCode::NoError,
            )
            .answer(rec(
                "_dns._udp.example.com.",
                30,
                RData::SRV(SRV::new(0, 5, 53, name("kube-dns.example.com."))),
            ))
            .additional(a("kube-dns.example.com.", 30)),
        ),
        (
            q,
            RecordType::TXT,
            Upstream::new(q, RecordType::TXT, ResponseCode::NoError).answer(rec(
                q,
                300,
                RData::TXT(TXT::new(vec!["v=spf1 -all".into(), String::new()])),
            )),
        ),
        (
            "1.2.0.192.in-addr.arpa.",
            RecordType::PTR,
            Upstream::new(
                "1.2.0.192.in-addr.arpa.",
                RecordType::PTR,
                ResponseCode::NoError,
            )
            .answer(rec(
                "1.2.0.192.in-addr.arpa.",
                300,
                RData::PTR(PTR(name("www.example.com."))),
            )),
        ),
        (
            q,
            RecordType::A,
            www_a()
                .answer(rec(
                    q,
                    50,
                    RData::Unknown {
                        code: RecordType::RRSIG,
                        rdata: NULL::with(vec![0, 1, 8, 3, 0, 0, 1, 44]),
                    },
                ))
                .authority(rec("example.com.", 7, RData::Update0(RecordType::NS))),
        ),
    ]
}

#[test]
fn wire_path_agrees_with_decoding() {
    for (qname, rtype, up) in realistic_answers() {
        let with = up.bytes();
        let stored = assert_paths_agree(&with, qname, rtype);
        // Hickory-proto's own encoding comes back from it unchanged.
        let qb = query_bytes(qname, rtype, None, false, false);
        let q = parse_query(&qb).unwrap();
        assert_eq!(
            StoredAnswer::from_decoded(&with, &q, &cfg()).unwrap(),
            stored
        );
        assert_paths_agree(&without_opt(up).bytes(), qname, rtype);
    }
}

#[test]
fn wire_path_keeps_the_extended_rcode_and_options() {
    let qname = "www.example.com.";
    for high in [0u8, 1, 0x0F, 0xFF] {
        for low in [0u8, 2, 3, 5] {
            let mut up = www_a();
            up.msg.set_response_code(ResponseCode::from(high, low));
            let options = up.msg.extensions_mut().as_mut().unwrap().options_mut();
            options.insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
            options.insert(EdnsOption::Unknown(3, vec![]));
            let stored = assert_paths_agree(&up.bytes(), qname, RecordType::A);
            assert_eq!(stored.rcode(), u16::from(high) << 4 | u16::from(low));
        }
    }
}

#[test]
fn wire_path_reads_uncompressed_names() {
    // www.example.com. A: CNAME to web.example.com., then its A, every name in full.
    let qname = "www.example.com.";
    let www = b"\x03www\x07example\x03com\x00";
    let web = b"\x03web\x07example\x03com\x00";
    let mut m = vec![0, 7, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 1];
    m.extend_from_slice(www);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m.extend_from_slice(www);
    m.extend_from_slice(&[0, 5, 0, 1, 0, 0, 1, 44, 0, web.len() as u8]);
    m.extend_from_slice(web);
    m.extend_from_slice(web);
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    m.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
    let stored = assert_paths_agree(&m, qname, RecordType::A);
    assert_eq!(stored.ttl_secs(), 60);
    assert_eq!(stored.class(), AnswerClass::Success);
}

#[test]
fn odd_answers_are_decoded_as_before() {
    let qname = "www.example.com.";
    let opt_record = || {
        let mut r = Record::from_rdata(Name::root(), 0, RData::OPT(OPT::default()));
        r.set_dns_class(DNSClass::for_opt(1232));
        r
    };
    // An OPT before another additional record: decoded like any answer.
    let mut up = without_opt(www_a());
    up.msg.add_additional(opt_record());
    up.msg.add_additional(a("ns2.example.com.", 30));
    assert!(assert_decoded_only(&up.bytes(), qname).is_ok());
    // Two OPTs: refused, as before.
    let mut up = www_a();
    up.msg.add_additional(opt_record());
    assert!(assert_decoded_only(&up.bytes(), qname).is_err());
    // An OPT in the answer section.
    let up = without_opt(www_a()).answer(opt_record());
    assert!(assert_decoded_only(&up.bytes(), qname).is_ok());
    // Bytes after the last record.
    let mut bytes = www_a().bytes();
    bytes.extend_from_slice(&[0, 0, 0]);
    assert!(assert_decoded_only(&bytes, qname).is_ok());
    // A record type the wire path leaves to the decoder.
    let up = www_a().answer(rec(
        qname,
        30,
        RData::Unknown {
            code: RecordType::Unknown(65280),
            rdata: NULL::with(vec![1, 2, 3]),
        },
    ));
    assert!(assert_decoded_only(&up.bytes(), qname).is_ok());
    // A Client Subnet option, which the decoder parses.
    let mut up = www_a();
    let options = up.msg.extensions_mut().as_mut().unwrap().options_mut();
    options.insert(EdnsOption::Unknown(8, vec![0, 1, 24, 0, 10, 0, 0]));
    assert!(assert_decoded_only(&up.bytes(), qname).is_ok());
}

#[test]
fn odd_names_are_decoded_as_before() {
    let qname = "www.example.com.";
    let plain = without_opt(Upstream::new(qname, RecordType::A, ResponseCode::NoError))
        .answer(a(qname, 60))
        .bytes();
    // The answer's owner is a pointer to the question (offset 12), at offset 33.
    assert_eq!(&plain[33..35], &[0xC0, 12]);
    assert!(assert_paths_agree(&plain, qname, RecordType::A).ttl_secs() == 60);
    // Into the header (a zero byte there reads as the root): the decoder takes it, a
    // reply would not, so the wire path declines. Into a label or onto itself: refused.
    for (target, decodes) in [
        (0u8, true),
        (6, true),
        (13, false),
        (33, false),
        (34, false),
    ] {
        let mut bytes = plain.clone();
        bytes[34] = target;
        let result = assert_decoded_only(&bytes, qname);
        assert_eq!(result.is_ok(), decodes, "pointer to {target}: {result:?}");
    }
    // A pointer to a TTL that reads as a name ("x."): the decoder takes it, but a
    // reply rewrites that TTL, so the wire path declines.
    let mut bytes = without_opt(Upstream::new(qname, RecordType::A, ResponseCode::NoError))
        .answer(a(qname, 0x0178_0000))
        .answer(a(qname, 5))
        .bytes();
    assert_eq!(&bytes[39..43], &[1, b'x', 0, 0]);
    assert_eq!(&bytes[49..51], &[0xC0, 12]);
    bytes[50] = 39;
    assert!(assert_decoded_only(&bytes, qname).is_ok());
    // The OPT owner is not the root: refused, as before.
    let mut bytes = www_a().bytes();
    let opt_at = bytes.len() - 11;
    assert_eq!(bytes[opt_at..opt_at + 3], [0, 0, 41]);
    bytes.splice(opt_at..opt_at + 1, [0xC0, 12]);
    let n = bytes.len();
    assert!(assert_decoded_only(&bytes[..n], qname).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Generated answers of every kind the wire path takes: same fields, same replies.
    #[test]
    fn generated_answers_agree(
        rcode in prop::sample::select(vec![0u16, 2, 3, 4, 5, 16, 0x23]),
        answers in proptest::collection::vec((0u8..6, 0u32..100_000), 0..6),
        authority in proptest::collection::vec((0u8..6, 0u32..100_000), 0..3),
        additional in proptest::collection::vec((0u8..6, 0u32..100_000), 0..3),
        opt: bool,
        truncated: bool,
        qtype in prop::sample::select(vec![RecordType::A, RecordType::AAAA, RecordType::MX]),
    ) {
        let qname = "svc.ns.svc.cluster.local.";
        let record = |(kind, ttl): (u8, u32), i: usize| {
            let owner = format!("h{i}.ns.svc.cluster.local.");
            let rdata = match kind {
                0 => RData::A(A::new(10, 0, 0, i as u8)),
                1 => RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16)),
                2 => RData::CNAME(CNAME(name(&owner))),
                3 => RData::NS(NS(name("ns.cluster.local."))),
                4 => soa("cluster.local.", 0).into_data(),
                _ => RData::MX(MX::new(5, name(qname))),
            };
            rec(if i % 2 == 0 { qname } else { &owner }, ttl, rdata)
        };
        let code = ResponseCode::from((rcode >> 4) as u8, (rcode & 0xF) as u8);
        let mut up = Upstream::new(qname, qtype, code);
        for (i, r) in answers.into_iter().enumerate() {
            up = up.answer(record(r, i));
        }
        for (i, r) in authority.into_iter().enumerate() {
            up = up.authority(record(r, i + 10));
        }
        for (i, r) in additional.into_iter().enumerate() {
            up = up.additional(record(r, i + 20));
        }
        if truncated {
            up = up.truncated();
        }
        if !opt && rcode < 16 {
            up = without_opt(up);
        }
        assert_paths_agree(&up.bytes(), qname, qtype);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Any bytes after the question: never a panic, and whatever the wire path takes
    /// the decoding path takes too, with the same fields and replies.
    #[test]
    fn mutated_answers_agree_or_fall_back(
        edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..6),
        cut in 0usize..8,
    ) {
        let qname = "www.example.com.";
        let mut bytes = realistic_answers()[4].2.bytes();
        let up = www_a().answer(rec(qname, 9, RData::MX(MX::new(1, name("m.example.com.")))));
        if cut % 2 == 0 {
            bytes = up.bytes();
        }
        let question_end = 12 + 4 + if cut % 2 == 0 { 17 } else { 19 };
        for (at, b) in edits {
            let at = question_end + at % (bytes.len() - question_end);
            bytes[at] = b;
        }
        bytes.truncate(bytes.len() - cut / 2);
        let qn = if cut % 2 == 0 { qname } else { "x.sub.example.com." };
        let qb = query_bytes(qn, RecordType::A, None, false, false);
        let q = parse_query(&qb).unwrap();
        let now = StoredAnswer::from_upstream(&bytes, &q, &cfg());
        if let Some(fast) = StoredAnswer::from_wire(&bytes, &q, &cfg()) {
            let full = StoredAnswer::from_decoded(&bytes, &q, &cfg());
            prop_assert!(full.is_ok(), "{:?}", full);
            let full = full.unwrap();
            prop_assert_eq!(fast.meta(), full.meta());
            let tight = fast.heap_bytes() == full.heap_bytes();
            prop_assert_eq!(
                replies(&fast, qn, RecordType::A, tight),
                replies(&full, qn, RecordType::A, tight)
            );
            prop_assert_eq!(now.unwrap(), fast);
        }
    }
}

#[test]
fn copies_of_other_shards_entries_take_no_room_from_owned_ones() {
    let t0 = Instant::now();
    let c = with(|c| c.success.capacity = 40);
    // A quarter of the node's 40: 10 owned entries, and 5 copies beside them.
    let mut shard = Shard::with_share(&c, 4);
    for i in 0..10 {
        let qname = format!("owned{i}.example.");
        assert!(insert_up(
            &mut shard,
            &c,
            &qname,
            &answer_for(&qname, 300),
            t0
        ));
    }
    for i in 0..50 {
        let qname = format!("copy{i}.example.");
        let qb = q_for(&qname);
        let q = parse_query(&qb).unwrap();
        let s = StoredAnswer::from_upstream(&answer_for(&qname, 300).bytes(), &q, &c).unwrap();
        assert!(shard.insert_copy(&q, s, t0));
        shard.check_invariants();
    }
    for i in 0..10 {
        let (found, _) = lookup(&mut shard, &format!("owned{i}.example."), t0);
        assert!(
            matches!(found, Lookup::Hit(_)),
            "owned{i} evicted by copies"
        );
    }
    let (found, _) = lookup(&mut shard, "copy49.example.", t0);
    assert!(matches!(found, Lookup::Hit(_)), "the newest copy is kept");
    let stats = shard.stats();
    // Entries are the owned ones (what the node holds, counted once by the owner).
    assert_eq!((stats.entries_success, stats.copies), (10, 5));
    assert_eq!(
        stats.evictions_success, 0,
        "a copy's eviction removes no entry"
    );
    assert_eq!(shard.len(), (15, 0));
    assert_eq!(stats.hits_success, 11);
    // One more owned entry evicts an owned one, never a copy.
    let qname = "owned10.example.";
    assert!(insert_up(
        &mut shard,
        &c,
        qname,
        &answer_for(qname, 300),
        t0
    ));
    let stats = shard.stats();
    assert_eq!((stats.entries_success, stats.copies), (10, 5));
    assert_eq!(stats.evictions_success, 1);
}

#[test]
fn one_shard_keeps_no_copies() {
    let c = cfg();
    let mut shard = Shard::new(&c);
    let qname = "copy.example.";
    let qb = q_for(qname);
    let q = parse_query(&qb).unwrap();
    let s = StoredAnswer::from_upstream(&answer_for(qname, 300).bytes(), &q, &c).unwrap();
    assert!(!shard.insert_copy(&q, s, Instant::now()));
    assert!(shard.is_empty());
}
