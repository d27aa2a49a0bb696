//! The miss path, top to bottom: a miss joins the upstream query in flight for its
//! key on this shard or leads it (`coalesce.rs`); the leader asks the key's owner
//! shard over the mesh (`mesh.rs`) when that is another shard, else the upstreams;
//! the answer fills this shard's cache and every waiter's reply. The owner's side of
//! a request, and the refreshes the cache asks for, run the same path.

use std::rc::Rc;
use std::time::Instant;

use futures_lite::future::BoxedLocal;

use super::coalesce::{self, Join, Resolution};
use super::mesh::{Outcome, Request};
use super::shard::{Block, Shard};
use super::Current;
use crate::cache::{self, StoredAnswer};
use crate::limits;
use crate::plugin::{errors, Origin};
use crate::telemetry::Meter;
use crate::upstream::{Transport, UpstreamError};
use crate::wire::{self, Edns, Query, Rcode};

/// A client's miss handed to its task.
#[derive(Clone, Copy)]
pub struct Miss {
    pub block_index: usize,
    /// The listening address the query came through (its cache tally).
    pub endpoint: usize,
    pub transport: Transport,
    /// The client's size limit for the answer.
    pub max_len: usize,
    pub meter: Option<Meter>,
}

/// A query as a task keeps it: its bytes and what parsing found, so that the task
/// reads it without parsing it again.
#[derive(Clone)]
pub struct Asked {
    packet: Box<[u8]>,
    id: u16,
    flags: u16,
    /// Where the question name is in `packet`, and its length.
    qname: (usize, usize),
    qtype: u16,
    qclass: u16,
    question_end: usize,
    edns: Option<Edns>,
}

impl Asked {
    /// Keeps a copy of `query` (its packet included).
    pub fn new(query: &Query<'_>) -> Asked {
        Asked::keep(query.packet.into(), query)
    }

    /// Parses `packet` (the one parse of this shard hop) and keeps it.
    fn parse(packet: Vec<u8>) -> Option<Asked> {
        let query = wire::parse_query(&packet).ok()?;
        let asked = Asked::keep(Box::default(), &query);
        Some(Asked {
            packet: packet.into(),
            ..asked
        })
    }

    fn keep(packet: Box<[u8]>, query: &Query<'_>) -> Asked {
        // The name is a slice of the packet (no pointers in a question).
        let at = (query.qname.as_ptr() as usize).wrapping_sub(query.packet.as_ptr() as usize);
        Asked {
            packet,
            id: query.id,
            flags: query.flags,
            qname: (at, query.qname.len()),
            qtype: query.qtype,
            qclass: query.qclass,
            question_end: query.question_end,
            edns: query.edns,
        }
    }

    /// The query, as parsing found it.
    pub fn query(&self) -> Query<'_> {
        let (at, len) = self.qname;
        Query {
            packet: &self.packet,
            id: self.id,
            flags: self.flags,
            qname: at
                .checked_add(len)
                .and_then(|end| self.packet.get(at..end))
                .unwrap_or_default(),
            qtype: self.qtype,
            qclass: self.qclass,
            question_end: self.question_end,
            edns: self.edns,
        }
    }
}

/// Resolves a client's miss and writes the answer for the client; returns the
/// answer (empty: nothing to send) and who answered.
///
/// With `serve_stale`, an expired entry still beats a failure: an upstream error, an
/// answer that cannot refresh it (SERVFAIL, REFUSED, ...), or with `prefer_positive`
/// anything but a positive answer. With `verify` and a VERIFY_TIMEOUT, the stale
/// answer goes out once the timeout passes and the upstream query goes on in the
/// background, refreshing the entry when it ends.
pub async fn answer(shard: &Rc<Shard>, miss: &Miss, asked: &Asked) -> (Vec<u8>, Origin) {
    let query = asked.query();
    let block = &shard.blocks[miss.block_index];
    let stale = block
        .chain
        .cache()
        .and_then(|c| c.cell().borrow().stale_entry(&query, Instant::now()));
    let resolution = match stale.and_then(|s| s.verify_timeout) {
        Some(timeout) => {
            let mut resolution = std::pin::pin!(detached_resolution(shard, miss, asked));
            let timer = async {
                crate::engine::sleep(timeout).await;
                None
            };
            let first = async { Some((&mut resolution).await) };
            match futures_lite::future::or(first, timer).await {
                Some(resolution) => resolution,
                None => match stale_answer(block, &query, miss.max_len) {
                    Some(answer) => return answer,
                    None => resolution.await,
                },
            }
        }
        None => client_resolution(shard, miss, &query).await,
    };
    if let Some(answer) = stale_instead(block, &query, &resolution, stale.is_some(), miss.max_len) {
        return answer;
    }
    // The answer buffer exists only once there is an answer, so a miss waiting on
    // the upstream holds no more than its query.
    let mut out = vec![0u8; miss.max_len];
    let (len, origin) = match resolution.as_ref() {
        Ok(stored) => {
            if stored.rcode() == Rcode::ServFail.code() {
                log_error(block, &query, "upstream answered SERVFAIL");
            }
            // A copy of a cache entry (the owner's, fresh or stale, or this shard's
            // filled meanwhile) is a cache answer and the lookup's miss a hit;
            // anything else is upstream's.
            let hit = stored.from_cache();
            if let (true, Some(cache)) = (hit, block.chain.cache()) {
                let mut cache = cache.cell().borrow_mut();
                cache.hit_elsewhere(miss.endpoint, stored.class());
            }
            let len = cache::write_reply(
                stored,
                &query,
                stored.ttl_secs(),
                hit,
                &mut out,
                miss.max_len,
            );
            (len, if hit { Origin::Cache } else { Origin::Forward })
        }
        Err(rcode) => (
            wire::write_error_reply(query.packet, *rcode, &mut out),
            Origin::Server,
        ),
    };
    out.truncate(len);
    (out, origin)
}

/// The stale answer that replaces `resolution` for the client, if serve_stale has
/// one and the resolution is no good: an upstream error or an answer that cannot
/// refresh an entry (whenever an entry is there to answer with), or with
/// `prefer_positive` anything but a positive answer, when the miss began on an
/// expired entry (`had_stale`).
fn stale_instead(
    block: &Block,
    query: &Query<'_>,
    resolution: &Resolution,
    had_stale: bool,
    max_len: usize,
) -> Option<(Vec<u8>, Origin)> {
    let cache = block.chain.cache()?;
    let refreshes = resolution
        .as_ref()
        .as_ref()
        .is_ok_and(StoredAnswer::refreshes);
    let positive = resolution
        .as_ref()
        .as_ref()
        .is_ok_and(StoredAnswer::answering);
    if refreshes && (positive || !cache.cell().borrow().prefer_positive()) {
        return None;
    }
    if resolution.is_err() {
        // A verify miss may hold the entry's refresh mark (FAILURE_RECHECK).
        cache.cell().borrow_mut().refresh_failed(query);
    }
    if refreshes && !had_stale {
        return None;
    }
    stale_answer(block, query, max_len)
}

/// The client's miss resolved on this shard: joined to the resolution in flight for
/// its key, or leading one through the key's owner shard.
async fn client_resolution(shard: &Rc<Shard>, miss: &Miss, query: &Query<'_>) -> Resolution {
    let block = &shard.blocks[miss.block_index];
    let lead = |key: &[u8]| {
        let owner = other_owner(shard, key);
        async move {
            if let Some(stored) = cached_since(shard, miss.block_index, query) {
                return Ok(stored);
            }
            let resolution = via_owner(
                shard,
                miss.block_index,
                query,
                owner,
                miss.transport,
                false,
                miss.meter,
            );
            resolution.await
        }
    };
    coalesced(shard, block, query, lead).await
}

/// [`client_resolution`] in a task of its own, so that it runs to the end (and fills
/// the cache) even if the client is answered before it ends.
fn detached_resolution(
    shard: &Rc<Shard>,
    miss: &Miss,
    asked: &Asked,
) -> impl std::future::Future<Output = Resolution> {
    let (tx, rx) = futures_channel::oneshot::channel();
    let (shard, asked) = (shard.clone(), asked.clone());
    let miss = *miss;
    crate::engine::spawn_local(async move {
        let resolution = client_resolution(&shard, &miss, &asked.query()).await;
        let _ = tx.send(resolution);
    })
    .detach();
    async move { rx.await.unwrap_or_else(|_| Rc::new(Err(Rcode::ServFail))) }
}

/// The stale answer to `query` from the block's cache, if there is one to give.
fn stale_answer(block: &Block, query: &Query<'_>, max_len: usize) -> Option<(Vec<u8>, Origin)> {
    let cache = block.chain.cache()?;
    let mut out = vec![0u8; max_len];
    let len = cache
        .cell()
        .borrow_mut()
        .lookup_stale(query, Instant::now(), &mut out, max_len)?;
    out.truncate(len);
    Some((out, Origin::Cache))
}

/// Starts the refresh the cache asked for (prefetch or serve_stale immediate) of
/// the entry `asked` asks for.
pub fn spawn_refresh(shard: Rc<Shard>, block_index: usize, asked: Asked, transport: Transport) {
    crate::engine::spawn_local(refresh(shard, block_index, asked, transport)).detach();
}

/// An answer of any kind is inserted by the resolution (which clears the entry's
/// refresh mark); a failure clears it here.
async fn refresh(shard: Rc<Shard>, block_index: usize, asked: Asked, transport: Transport) {
    let query = asked.query();
    let block = &shard.blocks[block_index];
    let lead = |key: &[u8]| {
        let owner = other_owner(&shard, key);
        via_owner(&shard, block_index, &query, owner, transport, true, None)
    };
    let resolution = coalesced(&shard, block, &query, lead).await;
    if let (Err(_), Some(cache)) = (resolution.as_ref(), block.chain.cache()) {
        cache.cell().borrow_mut().refresh_failed(&query);
    }
}

/// The mesh handler of a shard: answers the requests other shards send the owner.
pub fn owner_handler(current: Current) -> super::mesh::Handler {
    Rc::new(move |request: Request| -> BoxedLocal<Outcome> {
        let shard = current.borrow().clone();
        Box::pin(answer_request(shard, request))
    })
}

/// The owner's side of a request: its cache first (the reply travels as bytes), else
/// a resolution shared with every other miss of the key on this shard.
///
/// A `refresh` request for an entry the owner is refreshing itself (both copies
/// became due together) joins that refresh (no extra upstream query) and gets the new
/// answer, or the failure, instead of the copy about to be replaced, which the
/// requester would cache again and soon refresh again. A client's miss takes the
/// cached copy at once, an expired one too where serve_stale answers with it (the
/// requester passes it on without caching it), or with `verify` once the upstream
/// failed to refresh it; a refresh takes only a fresh copy.
async fn answer_request(shard: Rc<Shard>, request: Request) -> Outcome {
    let Request {
        generation,
        block: block_index,
        packet,
        transport,
        refresh,
    } = request;
    let Some(block) = shard.blocks.get(block_index) else {
        return Outcome::Mismatch;
    };
    if shard.generation != generation {
        return Outcome::Mismatch;
    }
    let Some(asked) = Asked::parse(packet) else {
        return Outcome::Resolved(Err(Rcode::FormErr));
    };
    let query = asked.query();
    let now = Instant::now();
    if let Some(copy) = shard.cached_copy(block_index, &query, now, !refresh) {
        if copy.must_refresh {
            spawn_refresh(shard.clone(), block_index, asked.clone(), transport);
        }
        if copy.stale {
            return Outcome::Stale(copy.reply);
        }
        let refreshing = refresh
            && block
                .chain
                .cache()
                .is_some_and(|c| c.cell().borrow().refreshing(&query, now));
        if !refreshing {
            return Outcome::Cached(copy.reply);
        }
    }
    // serve_stale verify: the owner's expired entry beats the failure for the asker.
    let had_stale = !refresh
        && block
            .chain
            .cache()
            .is_some_and(|c| c.cell().borrow().stale_entry(&query, now).is_some());
    let lead = |_: &[u8]| resolve(&shard, block, &query, transport, None);
    let resolution = coalesced(&shard, block, &query, lead).await;
    if had_stale {
        let max_len = limits::MESSAGE_BYTES_MAX;
        if let Some((reply, _)) = stale_instead(block, &query, &resolution, true, max_len) {
            return Outcome::Stale(reply);
        }
    }
    Outcome::Resolved((*resolution).clone())
}

/// Joins the resolution in flight for the query's key on this shard, or leads it
/// with `lead` (given the key); the result fills the cache and every waiter.
async fn coalesced<F, L>(shard: &Shard, block: &Block, query: &Query<'_>, lead: L) -> Resolution
where
    L: FnOnce(&[u8]) -> F,
    F: std::future::Future<Output = Result<StoredAnswer, Rcode>>,
{
    let leader = match block.inflight.join(coalesce::key(query)) {
        Join::Lead(leader) => leader,
        Join::Wait(rx) => {
            let coalesced = &shard.counters.coalesced;
            coalesced.set(coalesced.get() + 1);
            return rx.await.unwrap_or_else(|_| Rc::new(Err(Rcode::ServFail)));
        }
        Join::Full => return Rc::new(Err(Rcode::ServFail)),
    };
    let resolution = Rc::new(lead(leader.key()).await);
    if let (Ok(stored), Some(cache)) = (resolution.as_ref(), block.chain.cache()) {
        // Only the key's owner counts the entry against the capacity; other shards
        // keep a copy apart (the capacity is the node's, as CoreDNS's is).
        let copy = other_owner(shard, leader.key()).is_some();
        let (mut cache, now) = (cache.cell().borrow_mut(), Instant::now());
        match copy {
            true => cache.insert_copy(query, stored.clone(), now),
            false => cache.insert(query, stored.clone(), now),
        };
    }
    leader.finish(&resolution);
    resolution
}

/// The answer cached since the client's miss was counted: its task runs after the
/// batch that read it, and another miss of the key may have been answered and
/// cached in between (then it led no resolution to join). Taken as the owner's
/// copy would be, so no upstream query is sent for it.
fn cached_since(shard: &Shard, block_index: usize, query: &Query<'_>) -> Option<StoredAnswer> {
    let copy = shard.cached_copy(block_index, query, Instant::now(), false)?;
    let block = shard.blocks.get(block_index)?;
    let stored = StoredAnswer::from_upstream(&copy.reply, query, &block.cache_config).ok()?;
    Some(stored.into_cached())
}

/// The shard that owns `key`, when that is not this one.
fn other_owner(shard: &Shard, key: &[u8]) -> Option<usize> {
    let peers = shard.peers.as_ref()?;
    Some(peers.owner(key)).filter(|owner| *owner != peers.me())
}

/// Asks `owner` (`refresh`: to refresh this shard's entry), else, or when the owner
/// cannot answer, the upstreams.
async fn via_owner(
    shard: &Shard,
    block_index: usize,
    query: &Query<'_>,
    owner: Option<usize>,
    transport: Transport,
    refresh: bool,
    meter: Option<Meter>,
) -> Result<StoredAnswer, Rcode> {
    let block = &shard.blocks[block_index];
    if let (Some(owner), Some(peers)) = (owner, &shard.peers) {
        let generation = shard.generation;
        let asked = peers.ask(
            owner,
            generation,
            block_index,
            query.packet,
            transport,
            refresh,
        );
        match asked.await {
            Some(Outcome::Resolved(result)) => return result,
            Some(Outcome::Cached(reply)) => {
                return StoredAnswer::from_upstream(&reply, query, &block.cache_config)
                    .map(StoredAnswer::into_cached)
                    .map_err(|_| Rcode::ServFail)
            }
            Some(Outcome::Stale(reply)) => {
                let stale = block.cache_config.serve_stale;
                let ttl = stale.map_or(0, |s| s.response_ttl_secs);
                return StoredAnswer::from_upstream(&reply, query, &block.cache_config)
                    .map(|stored| stored.into_stale(ttl))
                    .map_err(|_| Rcode::ServFail);
            }
            Some(Outcome::Mismatch) | None => {}
        }
    }
    resolve(shard, block, query, transport, meter).await
}

/// Asks the upstreams and normalises the answer for the cache and the reply.
async fn resolve(
    shard: &Shard,
    block: &Block,
    query: &Query<'_>,
    transport: Transport,
    meter: Option<Meter>,
) -> Result<StoredAnswer, Rcode> {
    let Some(forward) = block.chain.forward() else {
        return Err(Rcode::ServFail);
    };
    let mut upstream_query = [0u8; limits::UDP_PAYLOAD_BYTES_MAX];
    let len = wire::write_upstream_query(query, 0, forward.bufsize, &mut upstream_query);
    let answer = match forward
        .forwarder
        .resolve(&upstream_query[..len], transport)
        .await
    {
        Ok(answer) => answer,
        Err(UpstreamError::MaxConcurrent) => return Err(Rcode::Refused),
        Err(err) => {
            let failures = &shard.counters.upstream_failures;
            failures.set(failures.get() + 1);
            if block.chain.errors().is_some() {
                let proto = forward.upstream_proto(transport);
                log_error(block, query, &errors::upstream_reason(&err, proto));
            }
            return Err(Rcode::ServFail);
        }
    };
    StoredAnswer::from_upstream(&answer, query, &block.cache_config).map_err(|err| {
        let bad = &shard.counters.bad_answers;
        bad.set(bad.get() + 1);
        if let Some(meter) = meter {
            meter.cache_drop(&shard.stats);
        }
        log_error(block, query, &err.to_string());
        Rcode::ServFail
    })
}

/// The `errors` directive's line for a SERVFAIL (`2 qname QTYPE: error`), for
/// blocks with it.
fn log_error(block: &Block, query: &Query<'_>, error: &str) {
    if let Some(errors) = block.chain.errors() {
        let (name, qtype) = (
            wire::name_to_string(query.qname),
            wire::type_to_string(query.qtype),
        );
        errors.failed(Rcode::ServFail.code(), &name, &qtype, error);
    }
}
