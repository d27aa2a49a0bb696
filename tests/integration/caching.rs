//! Cache semantics: hits do not reach the upstream, TTLs are capped and count down,
//! denials are cached for the denial TTL and then asked again, and a denial without
//! an SOA is not cached at all (RFC 2308 §5).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::client::{self, answer_ttls, records};
use crate::harness::{corefile, Cache, Knot, Zone, CACHE_30};
use crate::readme::{examples, runnable};
use crate::zones;

/// The second identical query is a hit: knot sees the MX query once, the hit has AA.
/// One shard, because each shard owns its cache.
fn repeated_query_is_answered_from_cache() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &["force_tcp"], &[]), 1);
    let first = client::udp(cache.addr(), &client::query("test.", RecordType::MX));
    assert_eq!(first.response_code(), ResponseCode::NoError);
    assert_eq!(
        knot.queries_of_type("MX"),
        1,
        "the miss must reach knot once"
    );
    for transport in ["udp", "tcp", "udp", "tcp"] {
        let query = client::query("test.", RecordType::MX);
        let hit = if transport == "udp" {
            client::udp(cache.addr(), &query)
        } else {
            client::tcp(cache.addr(), &query)
        };
        assert_eq!(
            records(hit.answers()),
            records(first.answers()),
            "hit over {transport}"
        );
        assert!(
            hit.authoritative(),
            "a reply served from cache has AA set (over {transport})"
        );
    }
    assert_eq!(
        knot.queries_of_type("MX"),
        1,
        "hits must not reach knot; stats: {:?}",
        knot.stats()
    );
}

/// With two shards a miss goes to the shard that owns the name, and its answer fills
/// the cache of the shard that asked: twenty repeats over fresh UDP sockets and TCP
/// connections (spread over both shards by SO_REUSEPORT) reach knot once.
fn repeated_query_reaches_upstream_once_across_shards() {
    const SHARDS: usize = 2;
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &["force_tcp"], &[]), SHARDS);
    for i in 0..20 {
        let query = client::query("test.", RecordType::MX);
        let reply = if i % 2 == 0 {
            client::udp(cache.addr(), &query)
        } else {
            client::tcp(cache.addr(), &query)
        };
        assert_eq!(reply.answers().len(), 2, "repeat #{i}: {reply:?}");
    }
    let seen = knot.queries_of_type("MX");
    assert_eq!(
        seen,
        1,
        "knot saw {seen} MX queries for 20 repeats on {SHARDS} shards; server log:\n{}",
        cache.log()
    );
}

/// A cold name asked at once by 64 clients (64 source ports, so both shards get some)
/// costs one upstream query: shards coalesce locally and hand the miss to the
/// name's owner shard, which coalesces them all.
fn a_cold_name_asked_on_every_shard_at_once_costs_one_upstream_query() {
    const SHARDS: usize = 2;
    const CLIENTS: usize = 64;
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &["force_tcp"], &[]), SHARDS);
    let addr = cache.addr();
    let start = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                let query = client::query("cold.many.test.", RecordType::A);
                start.wait();
                client::udp(addr, &query).answers().len()
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), 1, "every client gets the answer");
    }
    assert_eq!(
        knot.queries_of_type("A"),
        1,
        "{CLIENTS} clients on {SHARDS} shards must cost one upstream query; stats: {:?}",
        knot.stats()
    );
}

/// TTL 300 upstream under `cache 30`: at most 30, and 2.1 s later at least 2 lower.
#[test]
fn ttl_is_capped_and_counts_down() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    let first = client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    let first_ttls = answer_ttls(&first);
    assert_eq!(first_ttls.len(), 2, "two A records expected: {first:?}");
    assert!(
        first_ttls.iter().all(|&t| t <= 30),
        "TTLs must be capped to 30: {first_ttls:?}"
    );
    sleep(Duration::from_millis(2100));
    let later = client::udp(cache.addr(), &client::query("www.test.", RecordType::A));
    let later_ttls = answer_ttls(&later);
    let max_first = *first_ttls.iter().max().unwrap();
    assert!(
        later_ttls.iter().all(|&t| t + 2 <= max_first),
        "after 2.1 s the TTLs {later_ttls:?} should be ≥ 2 below {first_ttls:?}"
    );
    assert_eq!(
        knot.queries_of_type("A"),
        1,
        "the second query must be a hit"
    );
}

/// A cache whose denial TTL is 2 s (MINTTL 1 s): denial entries live 2 s.
fn denial_cache(knot: &Knot) -> Cache {
    let cache = "cache 30 {\n        success 9984 30\n        denial 9984 2 1\n    }";
    Cache::start(&corefile(knot, cache, &[], &[]), 1)
}

/// NXDOMAIN is cached for the denial TTL, then asked again.
#[test]
fn nxdomain_is_cached_for_the_denial_ttl() {
    let knot = zones::knot();
    let cache = denial_cache(&knot);
    let nxdomains = || knot.stat("mod-stats.response-code[NXDOMAIN]");
    let start = Instant::now();
    for i in 0..3 {
        let reply = client::udp(cache.addr(), &client::query("nx.test.", RecordType::A));
        assert_eq!(reply.response_code(), ResponseCode::NXDomain, "reply #{i}");
        let soa: Vec<_> = reply
            .name_servers()
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .collect();
        assert_eq!(soa.len(), 1, "NXDOMAIN #{i} carries the SOA: {reply:?}");
        assert!(
            soa[0].ttl() <= 2,
            "the SOA TTL is capped to the denial TTL 2: {}",
            soa[0].ttl()
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "too slow to test a 2 s TTL"
    );
    assert_eq!(
        nxdomains(),
        1,
        "the NXDOMAIN must reach knot once within its TTL"
    );
    sleep(Duration::from_millis(3100));
    let reply = client::udp(cache.addr(), &client::query("nx.test.", RecordType::A));
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    assert_eq!(
        nxdomains(),
        2,
        "after the 2 s denial TTL the NXDOMAIN must be asked again"
    );
}

/// NODATA (NOERROR, no answer, SOA) is cached for the denial TTL, then asked again.
#[test]
fn nodata_is_cached_for_the_denial_ttl() {
    let knot = zones::knot();
    let cache = denial_cache(&knot);
    let start = Instant::now();
    for i in 0..3 {
        let reply = client::udp(
            cache.addr(),
            &client::query("nodata.test.", RecordType::AAAA),
        );
        assert_eq!(reply.response_code(), ResponseCode::NoError, "reply #{i}");
        assert!(
            reply.answers().is_empty(),
            "NODATA #{i} has no answer: {reply:?}"
        );
        assert!(
            reply
                .name_servers()
                .iter()
                .any(|r| r.record_type() == RecordType::SOA),
            "NODATA #{i} carries the SOA: {reply:?}"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "too slow to test a 2 s TTL"
    );
    assert_eq!(
        knot.queries_of_type("AAAA"),
        1,
        "the NODATA must reach knot once within its TTL"
    );
    sleep(Duration::from_millis(3100));
    client::udp(
        cache.addr(),
        &client::query("nodata.test.", RecordType::AAAA),
    );
    assert_eq!(
        knot.queries_of_type("AAAA"),
        2,
        "after the 2 s denial TTL the NODATA must be asked again"
    );
}

/// A record with TTL 1 is kept for the success MINTTL (default 5 s): asked again 1.5 s
/// later it is still a hit.
#[test]
fn short_ttl_is_raised_to_min_ttl() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    let first = client::udp(cache.addr(), &client::query("short.test.", RecordType::A));
    assert_eq!(first.answers().len(), 1, "{first:?}");
    sleep(Duration::from_millis(1500));
    let again = client::udp(cache.addr(), &client::query("short.test.", RecordType::A));
    assert_eq!(records(again.answers()), records(first.answers()));
    assert_eq!(
        knot.queries_of_type("A"),
        1,
        "a TTL-1 record is cached for MINTTL 5 s, not 1 s"
    );
}

/// An upstream SERVFAIL is cached for `servfail 2s`, then asked again.
fn servfail_is_cached_for_the_servfail_duration() {
    let knot = Knot::start(&[
        Zone::new("test.", zones::TEST_ZONE),
        Zone::new("broken.", "this is not a zone file\n"),
    ]);
    let cache_directive = "cache 30 {\n        servfail 2s\n    }";
    let cache = Cache::start(&corefile(&knot, cache_directive, &[], &[]), 1);
    let servfails = || knot.stat("mod-stats.response-code[SERVFAIL]");
    let start = Instant::now();
    for i in 0..3 {
        let reply = client::udp(cache.addr(), &client::query("www.broken.", RecordType::A));
        assert_eq!(reply.response_code(), ResponseCode::ServFail, "reply #{i}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "too slow to test a 2 s duration"
    );
    assert_eq!(
        servfails(),
        1,
        "knot's SERVFAIL must be asked once within `servfail 2s`"
    );
    sleep(Duration::from_millis(3100));
    let reply = client::udp(cache.addr(), &client::query("www.broken.", RecordType::A));
    assert_eq!(reply.response_code(), ResponseCode::ServFail);
    assert_eq!(servfails(), 2, "after 2 s the SERVFAIL must be asked again");
}

/// `rfc2308.`: a CNAME to a name that does not exist, and a CNAME to a name without
/// the type asked (knot answers NXDOMAIN, and NOERROR, with the chain and the SOA).
const RFC2308_ZONE: &str = r#"$ORIGIN rfc2308.
$TTL 300
@         SOA   ns.rfc2308. host.rfc2308. 1 3600 600 86400 3600
@         NS    ns
ns        A     127.0.0.1
dangling  CNAME gone
alias     CNAME www
www       A     192.0.2.1
"#;

/// The records of `reply` of type `rtype`, in its answer and authority sections.
fn count(reply: &Message, rtype: RecordType) -> (usize, usize) {
    let of = |rs: &[Record]| rs.iter().filter(|r| r.record_type() == rtype).count();
    (of(reply.answers()), of(reply.name_servers()))
}

/// NXDOMAIN with a CNAME chain and an SOA is a denial (RFC 2308 §2.1, §5) and is
/// cached for the denial TTL like any other; so is NODATA behind a CNAME chain.
#[test]
fn nxdomain_and_nodata_behind_a_cname_chain_are_cached_as_denials() {
    let knot = Knot::start(&[Zone::new("rfc2308.", RFC2308_ZONE)]);
    let cache = denial_cache(&knot);
    let nxdomains = || knot.stat("mod-stats.response-code[NXDOMAIN]");
    let start = Instant::now();
    for i in 0..3 {
        let reply = client::udp(
            cache.addr(),
            &client::query("dangling.rfc2308.", RecordType::A),
        );
        assert_eq!(reply.response_code(), ResponseCode::NXDomain, "#{i}");
        assert_eq!(count(&reply, RecordType::CNAME), (1, 0), "#{i}: {reply:?}");
        assert_eq!(count(&reply, RecordType::SOA), (0, 1), "#{i}: {reply:?}");
        let nodata = client::udp(
            cache.addr(),
            &client::query("alias.rfc2308.", RecordType::AAAA),
        );
        assert_eq!(nodata.response_code(), ResponseCode::NoError, "#{i}");
        assert_eq!(
            count(&nodata, RecordType::CNAME),
            (1, 0),
            "#{i}: {nodata:?}"
        );
        assert_eq!(count(&nodata, RecordType::SOA), (0, 1), "#{i}: {nodata:?}");
        assert!(
            answer_ttls(&nodata).iter().all(|&t| t <= 2),
            "NODATA behind a CNAME is capped to the denial TTL 2: {nodata:?}"
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "too slow to test a 2 s TTL"
    );
    assert_eq!(
        nxdomains(),
        1,
        "the NXDOMAIN with a CNAME reaches knot once within its TTL"
    );
    assert_eq!(
        knot.queries_of_type("AAAA"),
        1,
        "the NODATA with a CNAME, once too"
    );
    sleep(Duration::from_millis(3100));
    let reply = client::udp(
        cache.addr(),
        &client::query("dangling.rfc2308.", RecordType::A),
    );
    assert_eq!(reply.response_code(), ResponseCode::NXDomain);
    assert_eq!(nxdomains(), 2, "after the 2 s denial TTL it is asked again");
}

/// An upstream that denies without SOA: the fault is the point. NXDOMAIN without
/// authority for `nosoa.*` names; for `chain.*`, NOERROR with a CNAME to a name with
/// no record of the type asked, and no SOA (an SOA-less NODATA). Counts queries
/// for names other than the root.
struct SoalessUpstream {
    addr: SocketAddr,
    queries: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SoalessUpstream {
    fn start() -> SoalessUpstream {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the scripted upstream");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("local address");
        let (queries, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (counted, stopped) = (queries.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                // Only the names asked below (not a start-up probe of the root).
                if query.queries().iter().any(|q| !q.name().is_root()) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                let reply = Self::reply(&query);
                let _ = socket.send_to(&reply.to_vec().expect("encode"), from);
            }
        });
        SoalessUpstream {
            addr,
            queries,
            stop,
        }
    }

    fn reply(query: &Message) -> Message {
        let mut reply = Message::new();
        reply
            .set_id(query.id())
            .set_message_type(MessageType::Response)
            .set_recursion_desired(query.recursion_desired())
            .set_recursion_available(true)
            .add_queries(query.queries().iter().cloned());
        let Some(q) = query.queries().first() else {
            return reply;
        };
        if q.name().to_ascii().starts_with("nosoa.") {
            reply.set_response_code(ResponseCode::NXDomain);
        } else {
            let target = Name::from_ascii("elsewhere.example.").expect("name");
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                300,
                RData::CNAME(CNAME(target)),
            ));
        }
        reply
    }

    fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for SoalessUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// RFC 2308 §5: an NXDOMAIN without SOA, and a NOERROR whose CNAME chain does not
/// reach the type asked without SOA, are passed on but never cached: every query
/// reaches the upstream.
#[test]
fn denials_without_soa_are_not_cached() {
    let upstream = SoalessUpstream::start();
    let corefile = format!(
        ".:$PORT {{\n    bind 127.0.0.1\n    cache 30\n    forward . {}\n}}\n",
        upstream.addr
    );
    let cache = Cache::start(&corefile, 1);
    for i in 1..=3 {
        let reply = client::udp(
            cache.addr(),
            &client::query("nosoa.example.", RecordType::A),
        );
        assert_eq!(reply.response_code(), ResponseCode::NXDomain, "#{i}");
        assert!(reply.name_servers().is_empty(), "#{i}: {reply:?}");
        assert_eq!(
            upstream.queries(),
            2 * i - 1,
            "NXDOMAIN without SOA #{i} asked upstream"
        );
        let reply = client::udp(
            cache.addr(),
            &client::query("chain.example.", RecordType::A),
        );
        assert_eq!(reply.response_code(), ResponseCode::NoError, "#{i}");
        assert_eq!(count(&reply, RecordType::CNAME), (1, 0), "#{i}: {reply:?}");
        assert_eq!(
            upstream.queries(),
            2 * i,
            "SOA-less NODATA #{i} asked upstream"
        );
    }
}

/// `cluster.local.` for the README's NodeLocal DNSCache example.
const CLUSTER_ZONE: &str = "$ORIGIN cluster.local.\n$TTL 300\n\
    @ SOA ns.cluster.local. host.cluster.local. 1 3600 600 86400 3600\n\
    @ NS ns\nns A 127.0.0.1\nwww A 192.0.2.1\nwww A 192.0.2.2\n";

/// Every Corefile example of the cache README starts and answers through knot, and
/// its second identical query is a hit (the NodeLocal DNSCache example's `:53` key
/// gives way to the test's port).
#[test]
fn cache_readme_examples_start_and_answer() {
    let knot = Knot::start(&[
        Zone::new("test.", &zones::test_zone()),
        Zone::new("cluster.local.", CLUSTER_ZONE),
    ]);
    let found = examples(include_str!("../../src/cache/README.md"));
    assert_eq!(found.len(), 8, "examples in src/cache/README.md");
    for (index, example) in found.iter().enumerate() {
        let example = example.replacen(":53 {", " {", 1);
        let cache = Cache::start(&runnable(&example, &knot), 1);
        let name = if example.starts_with("cluster.local") {
            "www.cluster.local."
        } else {
            "www.test."
        };
        let before = knot.queries_of_type("A");
        for _ in 0..2 {
            let reply = client::udp(cache.addr(), &client::query(name, RecordType::A));
            assert_eq!(
                reply.response_code(),
                ResponseCode::NoError,
                "example {index}"
            );
            assert_eq!(reply.answers().len(), 2, "example {index}: {reply:?}");
        }
        // The third example caches only example.org.
        let want = if index == 2 { 2 } else { 1 };
        assert_eq!(
            knot.queries_of_type("A") - before,
            want,
            "example {index}:\n{example}"
        );
    }
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(
    repeated_query_is_answered_from_cache,
    repeated_query_reaches_upstream_once_across_shards,
    a_cold_name_asked_on_every_shard_at_once_costs_one_upstream_query,
    servfail_is_cached_for_the_servfail_duration,
);
