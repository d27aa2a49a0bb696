//! Truncation: a reply larger than the client's UDP size is TC=1 and carries the whole
//! records that fit (as CoreDNS does), none when the first does not; TCP gets it all;
//! an upstream UDP answer with TC=1 is retried over TCP.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client::{self, records};
use crate::harness::{corefile, Cache, CACHE_30};
use crate::zones::{self, SIXTY, SIXTY_COUNT};

/// The big TXT RRset: one record of four 200-byte strings, > 512 bytes on the wire.
const BIG: &str = "big.test.";

fn large_answer_without_edns_over_udp_is_truncated_and_complete_over_tcp() {
    let knot = zones::knot();
    let direct = client::tcp(knot.addr(), &client::query(BIG, RecordType::TXT));
    assert_eq!(direct.answers().len(), 1, "knot serves the big TXT");
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    // Twice: the first may be a miss, the second is served from whatever was cached.
    for i in 0..2 {
        let bytes = client::udp_raw(
            cache.addr(),
            &client::encode(&client::query(BIG, RecordType::TXT)),
            client::TIMEOUT,
        )
        .unwrap_or_else(|| panic!("no UDP answer #{i} to {BIG} TXT"));
        assert!(
            bytes.len() <= 512,
            "UDP reply #{i} without EDNS is {} bytes > 512",
            bytes.len()
        );
        let reply = client::decode(&bytes);
        assert!(
            reply.truncated(),
            "UDP reply #{i} without EDNS must have TC=1: {reply:?}"
        );
        assert!(
            reply.answers().is_empty(),
            "the one record does not fit in reply #{i}, so it carries none: {reply:?}"
        );
    }
    for i in 0..2 {
        let reply = client::tcp(cache.addr(), &client::query(BIG, RecordType::TXT));
        assert!(!reply.truncated(), "TCP reply #{i} is not truncated");
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(
            records(reply.answers()),
            records(direct.answers()),
            "TCP reply #{i} is the full RRset"
        );
    }
    // Now cached (from the TCP answers): a hit over UDP without EDNS is truncated too.
    let reply = client::udp(cache.addr(), &client::query(BIG, RecordType::TXT));
    assert!(
        reply.truncated(),
        "a cache hit larger than 512 bytes over UDP must have TC=1: {reply:?}"
    );
    assert!(
        reply.answers().is_empty(),
        "the one record does not fit in the hit, so it carries none: {reply:?}"
    );
    // A hit is cut to the client's EDNS size too: 600 bytes is less than the RRset.
    let small = client::with_edns(client::query(BIG, RecordType::TXT), 600, false);
    let bytes = client::udp_raw(cache.addr(), &client::encode(&small), client::TIMEOUT)
        .expect("answer to EDNS 600");
    assert!(
        bytes.len() <= 600,
        "reply to an EDNS-600 client is {} bytes",
        bytes.len()
    );
    let reply = client::decode(&bytes);
    assert!(
        reply.truncated(),
        "an RRset over the client's EDNS size 600 must have TC=1: {reply:?}"
    );
    // And a client with EDNS 4096 over UDP gets it all too.
    let edns = client::with_edns(client::query(BIG, RecordType::TXT), 4096, false);
    let reply = client::udp(cache.addr(), &edns);
    assert!(
        !reply.truncated(),
        "UDP with EDNS 4096 is not truncated: {reply:?}"
    );
    assert_eq!(records(reply.answers()), records(direct.answers()));
}

/// An A record of [`SIXTY`] in a reply: owner compressed to a pointer (2), type,
/// class, TTL, length (10), address (4).
const SIXTY_RECORD_BYTES: usize = 16;

/// Asks [`SIXTY`] A over UDP (EDNS `edns` or none) and checks the reply is cut as
/// CoreDNS cuts it: TC=1, within `limit` bytes, as many whole records as fit (one
/// more would not), each of them one of knot's, the OPT kept when the client sent one.
fn check_sixty_cut(cache: &Cache, edns: Option<u16>, limit: usize, all: &[String], what: &str) {
    let query = client::query(SIXTY, RecordType::A);
    let query = match edns {
        Some(size) => client::with_edns(query, size, false),
        None => query,
    };
    let bytes = client::udp_raw(cache.addr(), &client::encode(&query), client::TIMEOUT)
        .unwrap_or_else(|| panic!("no UDP answer ({what})"));
    let reply = client::decode(&bytes);
    assert!(
        bytes.len() <= limit,
        "{what}: {} bytes > {limit}",
        bytes.len()
    );
    assert!(reply.truncated(), "{what}: TC=1: {reply:?}");
    assert_eq!(reply.response_code(), ResponseCode::NoError, "{what}");
    assert!(
        bytes.len() + SIXTY_RECORD_BYTES > limit,
        "{what}: {} bytes with {} records, room for one more",
        bytes.len(),
        reply.answers().len()
    );
    let header_question_opt = bytes.len() - reply.answers().len() * SIXTY_RECORD_BYTES;
    assert_eq!(
        reply.answers().len(),
        (limit - header_question_opt) / SIXTY_RECORD_BYTES,
        "{what}: whole records that fit"
    );
    let got = records(reply.answers());
    assert!(
        got.iter().all(|r| all.contains(r)),
        "{what}: records not knot's: {got:?}"
    );
    let mut distinct = got.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), got.len(), "{what}: no record twice");
    assert_eq!(reply.extensions().is_some(), edns.is_some(), "{what}: OPT");
}

/// A name with 60 A records: the client gets as many as fit in 512 bytes (or its
/// EDNS size) with TC=1, from a fresh answer and from a cached one alike; EDNS 1232
/// and TCP get all 60.
#[test]
fn large_rrset_over_udp_keeps_the_records_that_fit() {
    let knot = zones::knot();
    let direct = client::tcp(knot.addr(), &client::query(SIXTY, RecordType::A));
    let all = records(direct.answers());
    assert_eq!(
        all.len(),
        usize::from(SIXTY_COUNT),
        "knot serves the 60 A records"
    );
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    check_sixty_cut(&cache, None, 512, &all, "fresh, no EDNS");
    check_sixty_cut(&cache, None, 512, &all, "hit, no EDNS");
    check_sixty_cut(&cache, Some(512), 512, &all, "hit, EDNS 512");
    check_sixty_cut(&cache, Some(600), 600, &all, "hit, EDNS 600");
    let edns = client::with_edns(client::query(SIXTY, RecordType::A), 1232, false);
    let reply = client::udp(cache.addr(), &edns);
    assert!(!reply.truncated(), "EDNS 1232 holds all 60: {reply:?}");
    assert_eq!(records(reply.answers()), all);
    let reply = client::tcp(cache.addr(), &client::query(SIXTY, RecordType::A));
    assert!(!reply.truncated());
    assert_eq!(records(reply.answers()), all, "TCP gets all 60");
}

/// `bufsize 512` + `prefer_udp`: knot truncates over UDP, the cache retries over TCP.
fn upstream_truncation_is_retried_over_tcp() {
    let knot = zones::knot();
    let direct = client::tcp(knot.addr(), &client::query(BIG, RecordType::TXT));
    let udp_before = knot.stat("mod-stats.request-protocol[udp4]");
    let tcp_before = knot.stat("mod-stats.request-protocol[tcp4]");
    let cache = Cache::start(
        &corefile(&knot, CACHE_30, &["prefer_udp"], &["bufsize 512"]),
        1,
    );
    let query = client::with_edns(client::query(BIG, RecordType::TXT), 4096, false);
    let reply = client::udp(cache.addr(), &query);
    let stats = knot.stats();
    assert!(
        !reply.truncated(),
        "the client (EDNS 4096) must get the full answer, not TC: {reply:?}"
    );
    assert_eq!(reply.response_code(), ResponseCode::NoError);
    assert_eq!(
        records(reply.answers()),
        records(direct.answers()),
        "the full RRset"
    );
    let udp = stats
        .get("mod-stats.request-protocol[udp4]")
        .copied()
        .unwrap_or(0)
        - udp_before;
    let tcp = stats
        .get("mod-stats.request-protocol[tcp4]")
        .copied()
        .unwrap_or(0)
        - tcp_before;
    assert!(
        udp >= 1,
        "the cache asks knot over UDP first (prefer_udp): {stats:?}"
    );
    assert!(
        tcp >= 1,
        "after TC=1 from knot the cache retries over TCP: {stats:?}"
    );
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(
    large_answer_without_edns_over_udp_is_truncated_and_complete_over_tcp,
    upstream_truncation_is_retried_over_tcp,
);
