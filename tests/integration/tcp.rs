//! TCP clients: many pipelined queries on one connection.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::client;
use crate::harness::{corefile, Cache, CACHE_30};
use crate::zones::{self, MANY_ADDR};

const QUERIES: u16 = 1000;
/// Distinct names among the queries: some misses, many hits and coalesced duplicates.
const NAMES: u16 = 50;

/// Writes 1,000 queries back to back on one connection, then reads 1,000 answers
/// matched by ID (in any order).
fn thousand_pipelined_queries_on_one_connection() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 2);
    let mut stream = client::tcp_connect(cache.addr());
    let mut writer = stream.try_clone().expect("cloning the stream");
    let name_of = |id: u16| format!("p{}.many.test.", id % NAMES);
    let sender = thread::spawn(move || {
        for id in 0..QUERIES {
            let mut query = client::query(&name_of(id), RecordType::A);
            query.set_id(id);
            client::tcp_send(&mut writer, &client::encode(&query));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered: HashMap<u16, ()> = HashMap::new();
    while answered.len() < QUERIES as usize && Instant::now() < deadline {
        let bytes = match client::tcp_recv(&mut stream) {
            Ok(bytes) => bytes,
            Err(e) => panic!(
                "after {} answers the connection failed: {e}",
                answered.len()
            ),
        };
        let reply = client::decode(&bytes);
        let id = reply.id();
        assert!(id < QUERIES, "answer with an ID never sent: {id}");
        assert!(answered.insert(id, ()).is_none(), "two answers for ID {id}");
        let question = reply
            .query()
            .expect("answer has a question")
            .name()
            .to_ascii();
        assert_eq!(
            question,
            name_of(id),
            "answer for ID {id} is for another question"
        );
        assert_eq!(reply.response_code(), ResponseCode::NoError, "ID {id}");
        let addrs: Vec<String> = reply
            .answers()
            .iter()
            .map(|r| r.data().to_string())
            .collect();
        assert_eq!(addrs, [MANY_ADDR], "ID {id}");
    }
    sender.join().expect("sender thread");
    assert_eq!(
        answered.len(),
        QUERIES as usize,
        "answers received on the connection"
    );
    assert!(
        knot.queries_of_type("A") <= NAMES as u64 * 2,
        "duplicates should be hits or coalesced, knot saw {} A queries for {NAMES} names",
        knot.queries_of_type("A")
    );
}

/// After a first query the connection is idle-timed (10 s), not read-timed (3 s): a
/// second query 4 s later on the same connection is answered.
fn tcp_connection_survives_a_pause_between_queries() {
    let knot = zones::knot();
    let cache = Cache::start(&corefile(&knot, CACHE_30, &[], &[]), 1);
    let mut stream = client::tcp_connect(cache.addr());
    for i in 0..2 {
        if i > 0 {
            thread::sleep(Duration::from_secs(4));
        }
        let query = client::query("www.test.", RecordType::A);
        client::tcp_send(&mut stream, &client::encode(&query));
        let bytes = client::tcp_recv(&mut stream).unwrap_or_else(|e| {
            panic!(
                "query #{i} on the connection (after a 4 s pause: {}): {e}",
                i > 0
            )
        });
        let reply = client::decode(&bytes);
        assert_eq!(reply.id(), query.id());
        assert_eq!(reply.answers().len(), 2, "query #{i}: {reply:?}");
    }
}

// Each on both I/O engines (`name::io_uring`, `name::epoll`).
crate::on_each_engine!(
    thousand_pipelined_queries_on_one_connection,
    tcp_connection_survives_a_pause_between_queries,
);
