//! Cache capacity is the node's, as CoreDNS's is: `success N` holds about N distinct
//! entries whatever the shard count, because only a name's owner shard counts it
//! against its share, and the copies other shards keep of hot names live apart. So
//! one Zipf workload has (nearly) the same hit ratio on 1, 2, 8 and 16 shards. The
//! ratio is counted, not timed: 1 − (queries knotd answered) / (queries sent).

use std::net::UdpSocket;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use rand::{Rng, SeedableRng};

use crate::client;
use crate::harness::{corefile, Cache};
use crate::zones;

/// The configured capacity, well below the names asked, so eviction decides.
const CAPACITY: usize = 1000;
/// Distinct names (`n<rank>.many.test.`, the zone's wildcard answers them all).
const UNIVERSE: usize = 20_000;
const QUERIES: usize = 30_000;
const ZIPF_S: f64 = 1.0;
/// Client sockets, used in turn: the kernel spreads them over the shards.
const SOCKETS: usize = 32;
/// Most points (of 100) a shard count's hit ratio may fall below one shard's.
const POINTS_MAX: f64 = 2.0;

/// The ranks asked, Zipf(ZIPF_S) over UNIVERSE names, the same on every call.
fn workload() -> Vec<usize> {
    let mut cdf = Vec::with_capacity(UNIVERSE);
    let mut total = 0.0;
    for rank in 1..=UNIVERSE {
        total += 1.0 / (rank as f64).powf(ZIPF_S);
        cdf.push(total);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(18);
    (0..QUERIES)
        .map(|_| {
            let x = rng.gen::<f64>() * total;
            cdf.partition_point(|&c| c < x).min(UNIVERSE - 1)
        })
        .collect()
}

/// Runs the workload on a fresh server with `shards` shards; its hit ratio.
fn hit_ratio(shards: usize, ranks: &[usize]) -> f64 {
    let knot = zones::knot();
    let cache_line =
        format!("cache 3600 {{\n        success {CAPACITY}\n        denial {CAPACITY}\n    }}");
    let cache = Cache::start(&corefile(&knot, &cache_line, &[], &[]), shards);
    let before = knot.queries_of_type("A");
    let sockets: Vec<UdpSocket> = (0..SOCKETS)
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket
                .set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            socket
        })
        .collect();
    let mut sent = 0u64;
    let mut buf = [0u8; 4096];
    for (i, rank) in ranks.iter().enumerate() {
        let socket = &sockets[i % SOCKETS];
        let mut query = client::query(&format!("n{rank}.many.test."), RecordType::A);
        query.set_id(i as u16);
        let bytes = client::encode(&query);
        // One at a time (no miss joins another's); a datagram lost on a loaded
        // machine is asked again, and counted as sent again.
        let answered = (0..3).any(|_| {
            sent += 1;
            socket.send_to(&bytes, cache.addr()).expect("send");
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) if n >= 2 && buf[..2] == (i as u16).to_be_bytes() => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
        });
        assert!(
            answered,
            "query {i} unanswered on {shards} shards:\n{}",
            cache.log()
        );
    }
    let upstream = knot.queries_of_type("A") - before;
    1.0 - upstream as f64 / sent as f64
}

#[test]
fn zipf_hit_ratio_is_the_same_on_1_2_8_and_16_shards() {
    let ranks = workload();
    let one = hit_ratio(1, &ranks);
    let mut table = format!("capacity {CAPACITY}, {UNIVERSE} names, {QUERIES} queries, Zipf s={ZIPF_S}\nshards hit%\n1 {:.2}\n", one * 100.0);
    let mut worst = 0.0f64;
    for shards in [2, 8, 16] {
        let ratio = hit_ratio(shards, &ranks);
        table += &format!("{shards} {:.2}\n", ratio * 100.0);
        worst = worst.max((one - ratio) * 100.0);
    }
    eprintln!("{table}");
    assert!(
        worst <= POINTS_MAX,
        "a shard count loses {worst:.2} points:\n{table}"
    );
}
