//! What a reply echoes of the query: the question's letter case and the client's OPT.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client::{self, records};
use crate::harness::{corefile, Cache, CACHE_30};
use crate::zones;

/// Miss in mixed case, hit in lower case, hit in another mixed case: each reply's
/// question is spelled as its query's.
#[test]
fn question_keeps_the_clients_letter_case() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    let expected =
        records(client::udp(knot.addr(), &client::query("www.test.", RecordType::A)).answers());
    for (i, name) in ["WwW.TeSt.", "www.test.", "wWw.tEsT.", "WWW.TEST."]
        .into_iter()
        .enumerate()
    {
        for over_tcp in [false, true] {
            let query = client::query(name, RecordType::A);
            let reply = if over_tcp {
                client::tcp(cache.addr(), &query)
            } else {
                client::udp(cache.addr(), &query)
            };
            let asked = reply
                .query()
                .expect("reply has a question")
                .name()
                .to_ascii();
            assert_eq!(
                asked, name,
                "reply #{i} (tcp: {over_tcp}) must keep the question's case"
            );
            assert_eq!(reply.response_code(), ResponseCode::NoError);
            assert_eq!(records(reply.answers()), expected, "answer to {name}");
        }
    }
    // One query was ours, straight to knot; the cache must have sent one.
    let sent = knot.queries_of_type("A") - 1;
    assert_eq!(
        sent, 1,
        "the cache key is case-insensitive: one upstream query"
    );
}

/// EDNS in the reply iff the client sent it; DO echoed. Each variant asked twice (miss,
/// then hit), and the hit variants interleaved so a cached OPT cannot leak.
#[test]
fn reply_opt_mirrors_the_clients() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    // (EDNS?, DO) in an order that alternates across entries.
    let variants = [
        (false, false),
        (true, false),
        (true, true),
        (false, false),
        (true, true),
        (true, false),
    ];
    for name in ["www.test.", "txt.test."] {
        let rtype = if name == "www.test." {
            RecordType::A
        } else {
            RecordType::TXT
        };
        for (i, (edns, dnssec_ok)) in variants.into_iter().enumerate() {
            let mut query = client::query(name, rtype);
            if edns {
                query = client::with_edns(query, 1232, dnssec_ok);
            }
            let reply = client::udp(cache.addr(), &query);
            let what = format!("{name} {rtype} #{i} (EDNS {edns}, DO {dnssec_ok})");
            assert_eq!(reply.response_code(), ResponseCode::NoError, "{what}");
            assert!(!reply.answers().is_empty(), "{what}: {reply:?}");
            match reply.extensions() {
                None => assert!(!edns, "{what}: the client sent EDNS, the reply has no OPT"),
                Some(opt) => {
                    assert!(
                        edns,
                        "{what}: the client sent no EDNS, the reply has an OPT: {opt:?}"
                    );
                    assert_eq!(
                        opt.flags().dnssec_ok,
                        dnssec_ok,
                        "{what}: DO bit not echoed"
                    );
                    assert_eq!(opt.version(), 0, "{what}");
                }
            }
            let opts = reply
                .additionals()
                .iter()
                .filter(|r| r.record_type() == RecordType::OPT)
                .count();
            assert_eq!(
                opts, 0,
                "{what}: OPT must not appear as a plain additional record"
            );
        }
    }
    // The DO bit is part of the cache key (no EDNS counts as DO=0): two entries each.
    assert_eq!(
        knot.queries_of_type("A"),
        2,
        "www.test A: one upstream query per DO value"
    );
    assert_eq!(
        knot.queries_of_type("TXT"),
        2,
        "txt.test TXT: one upstream query per DO value"
    );
}
