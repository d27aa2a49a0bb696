//! Truncation: a reply larger than the client's UDP size is TC=1 and empty; TCP gets it
//! all; an upstream UDP answer with TC=1 is retried over TCP.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client::{self, records};
use crate::harness::{corefile, Cache, CACHE_30};
use crate::zones;

/// The big TXT RRset: one record of four 200-byte strings, > 512 bytes on the wire.
const BIG: &str = "big.test.";

#[test]
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
            "a truncated reply #{i} carries no records: {reply:?}"
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
        "a truncated hit carries no records: {reply:?}"
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

/// `bufsize 512` + `prefer_udp`: knot truncates over UDP, the cache retries over TCP.
#[test]
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
