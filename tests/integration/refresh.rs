//! Refreshing cached answers against a real upstream that the tests stop, pause
//! (SIGSTOP: a silent upstream), start again or whose zone they change: `serve_stale`
//! (`immediate` and `verify`, with RESPONSE_TTL, FAILURE_RECHECK and VERIFY_TIMEOUT)
//! while knot is down and once it is back, `serve_stale_policy prefer_positive`
//! against a name that disappears, one prefetch however many hits arrive, and the
//! byte budget under a flood of large unique answers.

use std::net::{SocketAddr, UdpSocket};
use std::thread::sleep;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::client::{self, answer_ttls, records};
use crate::harness::{corefile, Cache, Knot, Zone};

/// `refresh.`: one name with two A records, and a wildcard with a ~0.8 KB TXT answer
/// for the byte-budget flood. TTLs are 300 s; the caches below cap them.
const REFRESH_ZONE: &str = r#"$ORIGIN refresh.
$TTL 300
@       SOA   ns.refresh. host.refresh. 1 3600 600 86400 3600
@       NS    ns
ns      A     127.0.0.1
www     A     192.0.2.1
www     A     192.0.2.2
*.big   TXT   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
"#;

const WWW: &str = "www.refresh.";

fn knot() -> Knot {
    Knot::start(&[Zone::new("refresh.", REFRESH_ZONE)])
}

/// A `cache` directive: success entries live `ttl` seconds (MINTTL 1), plus `extra`
/// options, one per line.
fn cache_directive(ttl: u32, extra: &[&str]) -> String {
    let mut text = format!("cache 30 {{\n        success 9984 {ttl} 1\n");
    for line in extra {
        text.push_str(&format!("        {line}\n"));
    }
    text.push_str("    }");
    text
}

/// A server with `cache`, forwarding to `knot`, with `/metrics` on `$FREEPORT1`.
fn start_cache(knot: &Knot, cache: &str, shards: usize) -> Cache {
    let prometheus = ["prometheus 127.0.0.1:$FREEPORT1"];
    Cache::start(&corefile(knot, cache, &[], &prometheus), shards)
}

fn ask_www(cache: &Cache) -> Message {
    let reply = client::udp(cache.addr(), &client::query(WWW, RecordType::A));
    assert_eq!(reply.response_code(), ResponseCode::NoError, "{reply:?}");
    reply
}

/// Like [`ask_www`], with a client timeout above the server's 5 s query deadline, for
/// when the server may wait for a dead upstream first.
fn ask_www_patiently(cache: &Cache) -> Message {
    let query = client::query(WWW, RecordType::A);
    let reply = client::udp_try(cache.addr(), &query, Duration::from_secs(8))
        .unwrap_or_else(|| panic!("no answer within 8 s; log:\n{}", cache.log()));
    assert_eq!(reply.response_code(), ResponseCode::NoError, "{reply:?}");
    reply
}

/// Every answer TTL is 0 (stale), and there are answers.
fn is_stale(reply: &Message) -> bool {
    let ttls = answer_ttls(reply);
    !ttls.is_empty() && ttls.iter().all(|&t| t == 0)
}

/// Every answer TTL is above 0 (fresh), and there are answers.
fn is_fresh(reply: &Message) -> bool {
    let ttls = answer_ttls(reply);
    !ttls.is_empty() && ttls.iter().all(|&t| t > 0)
}

/// Polls `cond` every 20 ms for up to `within`.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

/// `serve_stale immediate` with the upstream down: expired answers are served at once
/// with TTL 0 (never waiting for the dead upstream), and once knot is back the entry is
/// refreshed with one upstream query and served fresh again.
#[test]
fn serve_stale_immediate_answers_ttl_0_while_upstream_is_down_then_refreshes() {
    let mut knot = knot();
    let cache = start_cache(&knot, &cache_directive(2, &["serve_stale 1h immediate"]), 1);
    let first = ask_www(&cache);
    assert!(is_fresh(&first), "{first:?}");
    assert_eq!(knot.queries_of_type("A"), 1);

    knot.stop();
    sleep(Duration::from_millis(2600));
    for i in 0..50 {
        let asked = Instant::now();
        let reply = ask_www(&cache);
        assert!(
            asked.elapsed() < Duration::from_millis(1000),
            "stale answer #{i} took {:?}: immediate must not wait for the upstream",
            asked.elapsed()
        );
        assert!(is_stale(&reply), "answer #{i} must have TTL 0: {reply:?}");
        assert_eq!(records(reply.answers()), records(first.answers()));
    }
    let refreshes = cache.metric_sum("coredns_cache_prefetch_total");
    let stale = cache.metric_sum("coredns_cache_served_stale_total");
    assert!(stale >= 50.0, "served_stale_total {stale}");
    assert!(
        (1.0..=5.0).contains(&refreshes),
        "50 stale hits within ~1 s of a dead upstream: one refresh in flight at a time \
         (a new one only after the previous failed), got {refreshes}"
    );

    knot.restart();
    let mut last = None;
    let refreshed = eventually(Duration::from_secs(12), || {
        let reply = ask_www(&cache);
        assert!(
            is_stale(&reply) || is_fresh(&reply),
            "TTLs all 0 or all fresh: {reply:?}"
        );
        assert_eq!(records(reply.answers()), records(first.answers()));
        let fresh = is_fresh(&reply);
        last = Some(reply);
        fresh
    });
    assert!(
        refreshed,
        "still stale 12 s after knot came back: {last:?}\nlog:\n{}",
        cache.log()
    );
    assert_eq!(
        knot.queries_of_type("A"),
        1,
        "the refresh after the restart must cost one upstream query"
    );
}

/// `serve_stale immediate` with the upstream up: the first query after expiry gets the
/// stale answer (TTL 0) and starts one refresh in the background; the next is fresh.
fn serve_stale_immediate_answers_stale_first_and_refreshes_in_background() {
    let knot = knot();
    let cache = start_cache(&knot, &cache_directive(2, &["serve_stale 1h immediate"]), 1);
    assert!(is_fresh(&ask_www(&cache)));
    sleep(Duration::from_millis(2600));
    let stale = ask_www(&cache);
    assert!(
        is_stale(&stale),
        "immediate: the expired entry is answered stale first: {stale:?}"
    );
    assert!(
        eventually(Duration::from_secs(3), || knot.queries_of_type("A") == 2),
        "the stale hit must start one refresh; stats {:?}",
        knot.stats()
    );
    assert!(
        eventually(Duration::from_secs(1), || is_fresh(&ask_www(&cache))),
        "after the refresh the answer is fresh"
    );
    assert_eq!(knot.queries_of_type("A"), 2, "one refresh, no more");
}

/// `serve_stale verify` with the upstream up: an expired entry is a miss, asked
/// upstream first; the answer is the fresh one, never the stale one.
#[test]
fn serve_stale_verify_asks_the_upstream_before_answering() {
    let knot = knot();
    let cache = start_cache(&knot, &cache_directive(2, &["serve_stale 1h verify"]), 1);
    assert!(is_fresh(&ask_www(&cache)));
    sleep(Duration::from_millis(2600));
    let reply = ask_www(&cache);
    assert!(
        is_fresh(&reply),
        "verify: the upstream answered, so the answer is fresh: {reply:?}"
    );
    assert_eq!(
        knot.queries_of_type("A"),
        2,
        "verify asks the upstream before answering"
    );
    assert!(is_fresh(&ask_www(&cache)));
    assert_eq!(knot.queries_of_type("A"), 2, "and caches its answer");
}

/// `serve_stale verify` with the upstream down: the expired answer is served with TTL 0
/// once the upstream attempt failed; when knot is back, the next query is answered
/// fresh by the upstream.
#[test]
fn serve_stale_verify_answers_stale_when_the_upstream_is_down() {
    let mut knot = knot();
    let cache = start_cache(&knot, &cache_directive(2, &["serve_stale 1h verify"]), 1);
    let first = ask_www(&cache);
    assert!(is_fresh(&first));
    knot.stop();
    sleep(Duration::from_millis(2600));
    for i in 0..2 {
        let reply = ask_www_patiently(&cache);
        assert!(
            is_stale(&reply),
            "verify with the upstream down: stale answer #{i} with TTL 0: {reply:?}"
        );
        assert_eq!(records(reply.answers()), records(first.answers()));
    }
    knot.restart();
    let reply = ask_www_patiently(&cache);
    assert!(
        is_fresh(&reply),
        "verify with the upstream back: fresh at once: {reply:?}"
    );
    assert_eq!(knot.queries_of_type("A"), 1);
}

/// `keepttl` shows the original TTL on fresh hits but 0 on stale ones (a stale answer
/// must not be cached downstream for the original TTL).
#[test]
fn keepttl_still_answers_stale_with_ttl_0() {
    let knot = knot();
    let cache = start_cache(
        &knot,
        &cache_directive(3, &["keepttl", "serve_stale 1h immediate"]),
        1,
    );
    ask_www(&cache);
    sleep(Duration::from_millis(1100));
    let hit = ask_www(&cache);
    assert_eq!(answer_ttls(&hit), vec![3, 3], "keepttl: original TTL");
    sleep(Duration::from_millis(2100));
    let stale = ask_www(&cache);
    assert!(is_stale(&stale), "keepttl + stale: TTL 0: {stale:?}");
}

/// Every answer TTL is `ttl`, and there are answers.
fn all_ttls(reply: &Message, ttl: u32) -> bool {
    let ttls = answer_ttls(reply);
    !ttls.is_empty() && ttls.iter().all(|&t| t == ttl)
}

/// The reply to `www.refresh. A`, whatever its rcode, waiting up to 8 s.
fn ask_any(cache: &Cache) -> Message {
    let query = client::query(WWW, RecordType::A);
    client::udp_try(cache.addr(), &query, Duration::from_secs(8))
        .unwrap_or_else(|| panic!("no answer within 8 s; log:\n{}", cache.log()))
}

/// `serve_stale 1h immediate 30s 30s`: stale answers carry RESPONSE_TTL 30, and after
/// a failed refresh the next waits FAILURE_RECHECK (30 s), where the default retries
/// after 1 s: over ~4 s of hits on a dead upstream, one refresh against several.
#[test]
fn serve_stale_immediate_answers_with_response_ttl_and_rechecks_after_a_failure() {
    let mut knot = knot();
    let rechecking = start_cache(
        &knot,
        &cache_directive(2, &["serve_stale 1h immediate 30s 30s"]),
        1,
    );
    let retrying = start_cache(&knot, &cache_directive(2, &["serve_stale 1h immediate"]), 1);
    let first = ask_www(&rechecking);
    assert!(is_fresh(&first) && is_fresh(&ask_www(&retrying)));
    knot.stop();
    sleep(Duration::from_millis(2600));
    for i in 0..26 {
        let reply = ask_www(&rechecking);
        assert!(
            all_ttls(&reply, 30),
            "stale #{i} has RESPONSE_TTL 30: {reply:?}"
        );
        assert_eq!(records(reply.answers()), records(first.answers()));
        assert!(is_stale(&ask_www(&retrying)), "#{i}");
        sleep(Duration::from_millis(150));
    }
    let refreshes = |cache: &Cache| cache.metric_sum("coredns_cache_prefetch_total");
    assert_eq!(
        refreshes(&rechecking),
        1.0,
        "FAILURE_RECHECK 30s: no refresh after the first failed"
    );
    assert!(
        refreshes(&retrying) >= 2.0,
        "the default retries after 1 s: {} refreshes",
        refreshes(&retrying)
    );
}

/// `serve_stale 1h verify 300ms` with a silent upstream (knot paused): the expired
/// answer goes out once VERIFY_TIMEOUT passes, long before the upstream's own
/// deadline, and the verify query goes on; once knot answers it the entry is fresh
/// without another client-driven query.
#[test]
fn serve_stale_verify_timeout_answers_stale_then_the_refresh_lands() {
    let knot = knot();
    let cache = start_cache(
        &knot,
        &cache_directive(2, &["serve_stale 1h verify 300ms"]),
        1,
    );
    let first = ask_www(&cache);
    assert!(is_fresh(&first));
    sleep(Duration::from_millis(2600));
    knot.pause();
    let asked = Instant::now();
    let reply = ask_www_patiently(&cache);
    let waited = asked.elapsed();
    knot.resume();
    assert!(is_stale(&reply), "stale after VERIFY_TIMEOUT: {reply:?}");
    assert_eq!(records(reply.answers()), records(first.answers()));
    assert!(
        waited < Duration::from_millis(1500),
        "answered after {waited:?}: VERIFY_TIMEOUT is 300ms, the upstream attempt 2 s"
    );
    assert!(
        eventually(Duration::from_secs(6), || knot.queries_of_type("A") >= 2),
        "the verify query reaches knot once it runs again"
    );
    assert!(
        eventually(Duration::from_secs(3), || is_fresh(&ask_www(&cache))),
        "the verify's answer refreshed the entry"
    );
}

/// `serve_stale 1h verify 0 0 30s`: the first query after expiry verifies (and
/// fails: knot is down); for FAILURE_RECHECK the entry is answered stale without
/// asking upstream, even once knot is back.
#[test]
fn serve_stale_verify_with_failure_recheck_answers_stale_without_asking_again() {
    let mut knot = knot();
    let cache = start_cache(
        &knot,
        &cache_directive(2, &["serve_stale 1h verify 0 0 30s"]),
        1,
    );
    assert!(is_fresh(&ask_www(&cache)));
    knot.stop();
    sleep(Duration::from_millis(2600));
    let misses = || cache.metric_sum("coredns_cache_misses_total");
    let before = misses();
    for i in 0..10 {
        let reply = ask_www_patiently(&cache);
        assert!(is_stale(&reply), "#{i}: {reply:?}");
    }
    assert_eq!(
        misses() - before,
        1.0,
        "one verify, then stale answers from the cache"
    );
    knot.restart();
    let reply = ask_www(&cache);
    assert!(is_stale(&reply), "still within FAILURE_RECHECK: {reply:?}");
    assert_eq!(
        knot.queries_of_type("A"),
        0,
        "no upstream query within the recheck"
    );
}

/// `serve_stale immediate` on two shards with knot down: a shard without its own copy
/// of a name answers with the owner shard's expired copy, stale (TTL 0) like the
/// owner, never as a fresh answer nor a SERVFAIL. Eight names, each first asked from
/// one socket (so some are cached only on their owner), then each from 16 sockets
/// (so both shards are asked).
#[test]
fn serve_stale_immediate_answers_stale_on_every_shard() {
    stale_on_every_shard("serve_stale 1h immediate");
}

/// The same with `verify`: once the owner's upstream query failed, its expired copy
/// answers the shard without one.
#[test]
fn serve_stale_verify_answers_stale_on_every_shard() {
    stale_on_every_shard("serve_stale 1h verify");
}

fn stale_on_every_shard(serve_stale: &str) {
    let mut knot = crate::zones::knot();
    let cache = Cache::start(
        &crate::harness::corefile(&knot, &cache_directive(2, &[serve_stale]), &[], &[]),
        2,
    );
    let names: Vec<String> = (0..8).map(|i| format!("n{i}.many.test.")).collect();
    for name in &names {
        let reply = client::udp(cache.addr(), &client::query(name, RecordType::A));
        assert!(is_fresh(&reply), "{name}: {reply:?}");
    }
    knot.stop();
    sleep(Duration::from_millis(2600));
    for name in &names {
        for i in 0..16 {
            let reply = client::udp(cache.addr(), &client::query(name, RecordType::A));
            assert_eq!(reply.response_code(), ResponseCode::NoError, "{name} #{i}");
            assert!(
                is_stale(&reply),
                "{name} #{i}: stale on every shard: {reply:?}"
            );
        }
    }
}

/// [`REFRESH_ZONE`] without `www`: knot answers NXDOMAIN for it.
fn zone_without_www() -> String {
    REFRESH_ZONE
        .lines()
        .filter(|line| !line.starts_with("www"))
        .map(|line| line.replace(" 1 3600 600", " 2 3600 600") + "\n")
        .collect()
}

/// `serve_stale_policy prefer_positive`: when the name disappears upstream
/// (NXDOMAIN), the last positive answer is kept and served stale, in `immediate`
/// (the refresh's NXDOMAIN is not cached) and in `verify` (the NXDOMAIN does not
/// count as a refresh); without the policy the NXDOMAIN replaces it.
#[test]
fn prefer_positive_keeps_the_last_positive_answer_over_a_new_nxdomain() {
    let knot = knot();
    let policy = "serve_stale_policy prefer_positive";
    let immediate = start_cache(
        &knot,
        &cache_directive(2, &["serve_stale 1h immediate", policy]),
        1,
    );
    let verify = start_cache(
        &knot,
        &cache_directive(2, &["serve_stale 1h verify", policy]),
        1,
    );
    let plain = start_cache(&knot, &cache_directive(2, &["serve_stale 1h immediate"]), 1);
    let first = ask_www(&immediate);
    assert!(is_fresh(&ask_www(&verify)) && is_fresh(&ask_www(&plain)));
    knot.change_zone("refresh.", &zone_without_www());
    let direct = client::udp(knot.addr(), &client::query(WWW, RecordType::A));
    assert_eq!(direct.response_code(), ResponseCode::NXDomain, "{direct:?}");
    sleep(Duration::from_millis(2600));

    assert!(
        is_stale(&ask_www(&immediate)),
        "stale first, then the refresh"
    );
    assert!(is_stale(&ask_www(&plain)), "without the policy too");
    let reply = ask_any(&verify);
    assert_eq!(reply.response_code(), ResponseCode::NoError, "{reply:?}");
    assert!(
        is_stale(&reply),
        "verify: NXDOMAIN is no refresh, stale answer: {reply:?}"
    );
    assert_eq!(records(reply.answers()), records(first.answers()));
    assert!(
        eventually(Duration::from_secs(3), || {
            ask_any(&plain).response_code() == ResponseCode::NXDomain
        }),
        "without the policy the NXDOMAIN replaces the answer"
    );
    for i in 0..5 {
        let reply = ask_any(&immediate);
        assert_eq!(
            reply.response_code(),
            ResponseCode::NoError,
            "#{i}: {reply:?}"
        );
        assert!(is_stale(&reply), "#{i}: {reply:?}");
        assert_eq!(records(reply.answers()), records(first.answers()));
        sleep(Duration::from_millis(200));
    }
    let refreshes = immediate.metric_sum("coredns_cache_prefetch_total");
    assert!(
        refreshes >= 1.0,
        "the policy's cache asked upstream ({refreshes})"
    );
}

/// Sends `query` once from each of `sockets`, as fast as possible, then collects the
/// replies; returns how many came back with `want` answers.
fn burst(addr: SocketAddr, sockets: &[UdpSocket], query: &Message, want: usize) -> usize {
    let mut ids = Vec::with_capacity(sockets.len());
    for sock in sockets {
        let mut q = query.clone();
        q.set_id(client::next_id());
        sock.send_to(&client::encode(&q), addr).expect("send_to");
        ids.push(q.id());
    }
    let mut buf = vec![0u8; 4096];
    sockets
        .iter()
        .zip(ids)
        .filter(|(sock, id)| match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let reply = client::decode(&buf[..n]);
                reply.id() == *id && reply.answers().len() == want
            }
            Err(_) => false,
        })
        .count()
}

/// 1,000 clients (1,000 source ports, spread over both shards) hit an entry that is due
/// for prefetch at the same moment: knot sees one refresh query, and every client is
/// answered from the cache.
#[test]
fn a_thousand_concurrent_hits_on_an_entry_due_for_prefetch_cost_one_upstream_query() {
    const SHARDS: usize = 2;
    const CLIENTS: usize = 1000;
    let knot = knot();
    // Entries live 10 s; due for prefetch once 5 s or less are left, from the first hit.
    let cache = start_cache(&knot, &cache_directive(10, &["prefetch 1 10s 50%"]), SHARDS);
    let sockets: Vec<UdpSocket> = (0..CLIENTS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            s
        })
        .collect();
    let cached = Instant::now();
    ask_www(&cache);
    assert_eq!(knot.queries_of_type("A"), 1);
    // Warm every shard's copy (the first answer filled the asking and owning shards).
    let query = client::query(WWW, RecordType::A);
    assert_eq!(burst(cache.addr(), &sockets[..64], &query, 2), 64);
    assert_eq!(knot.queries_of_type("A"), 1, "hits while fresh: no refresh");
    sleep(Duration::from_millis(5300).saturating_sub(cached.elapsed()));
    let answered = burst(cache.addr(), &sockets, &query, 2);
    assert!(
        cached.elapsed() < Duration::from_secs(9),
        "the burst took too long ({:?}) to be a test of prefetch",
        cached.elapsed()
    );
    assert_eq!(answered, CLIENTS, "every client is answered");
    sleep(Duration::from_millis(500));
    assert_eq!(
        knot.queries_of_type("A"),
        2,
        "{CLIENTS} hits on an entry due for prefetch must cost one upstream query; log:\n{}",
        cache.log()
    );
    let reply = ask_www(&cache);
    assert!(
        answer_ttls(&reply).iter().all(|&t| t > 5),
        "after the prefetch the entry is fresh again: {reply:?}"
    );
    assert_eq!(knot.queries_of_type("A"), 2);
}

/// Asks `txt` for `count` unique names `{prefix}{i}.big.refresh.` (EDNS 4096, ~0.8 KB
/// answers) from `threads` clients; returns how many were answered NOERROR.
fn flood(addr: SocketAddr, prefix: &str, count: usize, threads: usize) -> usize {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
                sock.set_read_timeout(Some(Duration::from_secs(3)))
                    .expect("timeout");
                let mut buf = vec![0u8; 65535];
                let mut ok = 0;
                for i in (t..count).step_by(threads) {
                    let name = format!("{prefix}{i}.big.refresh.");
                    let q = client::with_edns(client::query(&name, RecordType::TXT), 4096, false);
                    sock.send_to(&client::encode(&q), addr).expect("send_to");
                    // Skip late replies to earlier (timed-out) queries.
                    while let Ok((n, _)) = sock.recv_from(&mut buf) {
                        let reply = client::decode(&buf[..n]);
                        if reply.id() == q.id() {
                            if reply.response_code() == ResponseCode::NoError
                                && reply.answers().len() == 1
                            {
                                ok += 1;
                            }
                            break;
                        }
                    }
                }
                ok
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

/// `max_bytes 256KiB` under a flood of unique names with ~0.8 KB answers: the bytes
/// and entries `/metrics` reports stay within the budget, and the process's RSS does not
/// grow with the number of names asked.
#[test]
fn the_byte_budget_holds_under_a_flood_of_large_unique_answers() {
    const SHARDS: usize = 2;
    const BUDGET: f64 = 256.0 * 1024.0;
    /// The least an entry can count: its answer alone is above this.
    const ENTRY_BYTES_MIN: f64 = 800.0;
    let knot = knot();
    let cache = start_cache(&knot, "cache 30 {\n        max_bytes 256KiB\n    }", SHARDS);
    let check_budget = |phase: &str| {
        let metrics = cache.metrics();
        let bytes = crate::harness::metric_sum(&metrics, "nodelocaldns_shard_cache_bytes");
        let entries = crate::harness::metric_sum(&metrics, "coredns_cache_entries");
        let evictions = crate::harness::metric_sum(&metrics, "coredns_cache_evictions_total");
        assert!(
            bytes > BUDGET / 2.0 && bytes <= BUDGET,
            "{phase}: shard cache bytes {bytes} must be filled up to the budget {BUDGET}"
        );
        assert!(
            entries * ENTRY_BYTES_MIN <= BUDGET,
            "{phase}: {entries} entries of ≥ {ENTRY_BYTES_MIN} B exceed the budget"
        );
        assert!(evictions > 0.0, "{phase}: a full cache evicts");
        (bytes, entries)
    };
    let answered = flood(cache.addr(), "a", 10_000, 8);
    assert!(answered >= 9_900, "flood 1: {answered} of 10000 answered");
    let (bytes1, entries1) = check_budget("after 10k names");
    let rss1 = cache.rss_kib();
    let answered = flood(cache.addr(), "b", 30_000, 8);
    assert!(answered >= 29_700, "flood 2: {answered} of 30000 answered");
    let (bytes2, entries2) = check_budget("after 40k names");
    let rss2 = cache.rss_kib();
    eprintln!(
        "budget {BUDGET}: bytes {bytes1} → {bytes2}, entries {entries1} → {entries2}, \
         RSS {rss1} KiB → {rss2} KiB"
    );
    // Unbounded, 30k more answers of ~0.8 KB would add ~24 MiB.
    assert!(
        rss2.saturating_sub(rss1) < 8 * 1024,
        "RSS grew from {rss1} KiB to {rss2} KiB over 30k more unique names"
    );
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(serve_stale_immediate_answers_stale_first_and_refreshes_in_background,);
