//! The per-core query path, top to bottom: parse and check the query, pick the
//! server block, answer from the cache shard, or forward the miss (one upstream
//! query per name in flight on this shard) and answer when it returns.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use futures_channel::oneshot;

use super::owner::Outcome;
use super::shard::{Block, Shard};
use crate::cache::{self, AnswerClass, StoredAnswer};
use crate::config::AclAction;
use crate::limits;
use crate::telemetry::{Meter, Plugin, Proto, QueryLog};
use crate::upstream::{Transport, UpstreamError};
use crate::wire::{self, Query, Rcode, Rejection};

/// What the caller does with a query it handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// An answer of this many bytes is in the output buffer.
    Reply(usize),
    /// A task answers later through the reply path.
    Later,
    /// Nothing is sent (unreadable header, or a response sent to us).
    Drop,
}

/// The outcome of one upstream resolution, shared by every coalesced waiter.
pub type Resolution = Rc<Result<StoredAnswer, Rcode>>;

/// Misses in flight on one block of one shard, by cache key (lower-cased name,
/// type, class, DO, CD): each waiter gets the shared resolution.
#[derive(Default)]
pub struct Inflight {
    /// foldhash, randomly seeded per table: the keys are names from the network.
    waiting: RefCell<
        hashbrown::HashMap<Vec<u8>, Vec<oneshot::Sender<Resolution>>, foldhash::fast::RandomState>,
    >,
}

impl Inflight {
    /// Distinct keys being resolved.
    pub fn len(&self) -> usize {
        self.waiting.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Handles one query that arrived on `endpoint`. Cache hits and errors are written
/// into `out` at once; misses start a task that answers through the closure `reply`
/// makes (called only for a miss, so a hit clones nothing for it).
// The socket loops pass what they know of the datagram; bundling it would only move the list.
#[allow(clippy::too_many_arguments)]
pub fn handle<R: FnOnce(&[u8]) + 'static>(
    shard: &Rc<Shard>,
    endpoint: usize,
    client: std::net::SocketAddr,
    packet: &[u8],
    transport: Transport,
    now: Instant,
    out: &mut [u8],
    reply: impl FnOnce() -> R,
) -> Handled {
    shard.counters.queries.set(shard.counters.queries.get() + 1);
    let query = match wire::parse_query(packet) {
        Ok(query) => query,
        Err(Rejection::Drop(_)) => {
            shard.counters.dropped.set(shard.counters.dropped.get() + 1);
            return Handled::Drop;
        }
        Err(Rejection::Reply(rcode)) => {
            shard
                .counters
                .rejected
                .set(shard.counters.rejected.get() + 1);
            return Handled::Reply(wire::write_error_reply(packet, rcode, out));
        }
    };
    if query.qtype == super::loop_detect::HINFO {
        super::loop_detect::check(query.qname);
    }
    let Some((block_index, zone)) = shard.block_zone_for(endpoint, query.qname) else {
        return Handled::Reply(wire::write_error_reply(packet, Rcode::Refused, out));
    };
    let block = &shard.blocks[block_index];
    if let Some(refused) = acl_check(shard, block, client, &query, packet, out) {
        return refused;
    }
    let (max_len, proto) = match transport {
        Transport::Udp => (query.udp_limit(), Proto::Udp),
        Transport::Tcp => (limits::MESSAGE_BYTES_MAX, Proto::Tcp),
    };
    let meter = Meter::new(
        &shard.stats,
        endpoint,
        (block_index, zone),
        &query,
        proto,
        packet.len(),
        now,
    );
    let log = block
        .log
        .map(|classes| QueryLog::new(client, &query, proto, packet.len(), now, classes));
    if block.whoami {
        let len = wire::write_whoami(&query, client, transport == Transport::Tcp, out);
        if let (Some(meter), Some(answer)) = (meter, out.get(..len)) {
            meter.answered(&shard.stats, answer, Plugin::Server);
        }
        return Handled::Reply(len);
    }
    let limit = max_len.min(out.len());
    let hit = cached_reply(
        shard,
        block_index,
        &query,
        transport,
        now,
        &mut out[..limit],
    );
    if let Some(len) = hit {
        shard.counters.hits.set(shard.counters.hits.get() + 1);
        if let (Some(meter), Some(answer)) = (meter, out.get(..len)) {
            meter.cache_hit(&shard.stats, answer);
        }
        if let (Some(log), Some(answer)) = (&log, out.get(..len)) {
            log.answered(answer);
        }
        return Handled::Reply(len);
    }
    if block.cache.is_some() {
        shard.counters.misses.set(shard.counters.misses.get() + 1);
        if let Some(meter) = meter {
            meter.cache_miss(&shard.stats);
        }
    }
    if !block
        .forwarder
        .as_ref()
        .is_some_and(|f| f.forwards(query.qname))
    {
        let len = wire::write_error_reply(packet, Rcode::ServFail, out);
        if let (Some(meter), Some(answer)) = (meter, out.get(..len)) {
            meter.answered(&shard.stats, answer, Plugin::Server);
        }
        if let (Some(log), Some(answer)) = (&log, out.get(..len)) {
            log.answered(answer);
        }
        return Handled::Reply(len);
    }
    // A flood of misses (cold names, or the upstream stalling) must not grow memory
    // without bound: past the limit a miss is answered SERVFAIL at once.
    let pending = &shard.counters.pending_misses;
    if pending.get() >= limits::MISSES_PENDING_PER_SHARD_MAX {
        let overloaded = &shard.counters.miss_overload;
        overloaded.set(overloaded.get() + 1);
        return Handled::Reply(wire::write_error_reply(packet, Rcode::ServFail, out));
    }
    pending.set(pending.get() + 1);
    let reply = reply();
    let task_shard = shard.clone();
    let packet = packet.to_vec();
    glommio::spawn_local(async move {
        let miss = Miss {
            block_index,
            transport,
            max_len,
            meter,
        };
        let (out, plugin) = answer_miss(&task_shard, &miss, &packet).await;
        let pending = &task_shard.counters.pending_misses;
        pending.set(pending.get().saturating_sub(1));
        // An empty answer means "nothing to send" but still ends the query.
        let answer = out.as_slice();
        reply(answer);
        if let Some(meter) = meter {
            meter.answered(&task_shard.stats, answer, plugin);
        }
        if let Some(log) = log {
            log.answered(answer);
        }
    })
    .detach();
    Handled::Later
}

/// The block's `acl` verdict: None to serve the query, else what to do instead.
fn acl_check(
    shard: &Shard,
    block: &Block,
    client: std::net::SocketAddr,
    query: &Query<'_>,
    packet: &[u8],
    out: &mut [u8],
) -> Option<Handled> {
    let acl = block.acl.as_ref()?;
    let counters = &shard.counters;
    let rcode = match acl.decide(client.ip(), query.qname, query.qtype) {
        AclAction::Allow => return None,
        AclAction::Drop => {
            counters.acl_dropped.set(counters.acl_dropped.get() + 1);
            return Some(Handled::Drop);
        }
        AclAction::Block => Rcode::Refused,
        AclAction::Filter => Rcode::NoError,
    };
    counters.acl_refused.set(counters.acl_refused.get() + 1);
    Some(Handled::Reply(wire::write_error_reply(packet, rcode, out)))
}

/// A miss handed to its task.
struct Miss {
    block_index: usize,
    transport: Transport,
    max_len: usize,
    meter: Option<Meter>,
}

/// Answers from the block's cache into `out` (its length is the size limit) and
/// starts the one refresh the cache asks for (prefetch, stale). None on a miss.
pub fn cached_reply(
    shard: &Rc<Shard>,
    block_index: usize,
    query: &Query<'_>,
    transport: Transport,
    now: Instant,
    out: &mut [u8],
) -> Option<usize> {
    let cache = shard.blocks[block_index].cache.as_ref()?;
    let max_len = out.len();
    let lookup = cache.borrow_mut().lookup(query, now, out, max_len);
    let len = lookup.reply_len()?;
    if lookup.must_refresh() {
        let packet = query.packet.to_vec();
        glommio::spawn_local(refresh(shard.clone(), block_index, packet, transport)).detach();
    }
    Some(len)
}

/// Resolves a miss (sharing an upstream query already in flight for the same key,
/// here or on the key's owner shard) and writes the answer for this client; returns
/// its length and who answered.
async fn answer_miss(shard: &Rc<Shard>, miss: &Miss, packet: &[u8]) -> (Vec<u8>, Plugin) {
    let Ok(query) = wire::parse_query(packet) else {
        return (Vec::new(), Plugin::Server);
    };
    let block = &shard.blocks[miss.block_index];
    let resolution = resolve_shared(
        shard,
        miss.block_index,
        &query,
        miss.transport,
        Route::ToOwner,
        miss.meter,
    )
    .await;
    let failed = match resolution.as_ref() {
        Ok(stored) => matches!(
            stored.class(),
            AnswerClass::ServFail | AnswerClass::Uncacheable
        ),
        Err(_) => true,
    };
    // The answer buffer exists only once there is an answer, so a miss waiting on
    // the upstream holds no more than its query.
    let mut out = vec![0u8; miss.max_len];
    // serve_stale verify: an expired answer still beats a failure.
    if let (true, Some(cache)) = (failed, &block.cache) {
        let stale = cache
            .borrow_mut()
            .lookup_stale(&query, Instant::now(), &mut out, miss.max_len);
        if let Some(len) = stale {
            out.truncate(len);
            return (out, Plugin::Cache);
        }
    }
    let (len, plugin) = match resolution.as_ref() {
        Ok(stored) => {
            if stored.rcode() == Rcode::ServFail.code() {
                log_error(block, &query, "upstream answered SERVFAIL");
            }
            let len = cache::write_reply(
                stored,
                &query,
                stored.ttl_secs(),
                false,
                &mut out,
                miss.max_len,
            );
            (len, Plugin::Forward)
        }
        Err(rcode) => (
            wire::write_error_reply(packet, *rcode, &mut out),
            Plugin::Server,
        ),
    };
    out.truncate(len);
    (out, plugin)
}

/// Refreshes an entry the cache asked to refresh (prefetch or serve_stale
/// immediate): an answer of any kind is inserted by the resolution (which clears the
/// entry's refresh mark); a failure clears it here.
async fn refresh(shard: Rc<Shard>, block_index: usize, packet: Vec<u8>, transport: Transport) {
    let Ok(query) = wire::parse_query(&packet) else {
        return;
    };
    let block = &shard.blocks[block_index];
    let resolution =
        resolve_shared(&shard, block_index, &query, transport, Route::Refresh, None).await;
    if let (Err(_), Some(cache)) = (resolution.as_ref(), &block.cache) {
        cache.borrow_mut().refresh_failed(&query);
    }
}

/// Whether a miss may be handed to the shard that owns its key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    ToOwner,
    /// As `ToOwner`, for a refresh of this shard's entry (prefetch, stale).
    Refresh,
    /// This shard is the owner (a request from another shard): resolve here.
    Here,
}

/// Resolves a miss another shard handed to this one, its owner.
pub async fn resolve_owned(
    shard: &Rc<Shard>,
    block_index: usize,
    query: &Query<'_>,
    transport: Transport,
) -> Resolution {
    resolve_shared(shard, block_index, query, transport, Route::Here, None).await
}

/// Joins the upstream query in flight for this key, or starts it (on the owner
/// shard of the key when that is another shard).
async fn resolve_shared(
    shard: &Rc<Shard>,
    block_index: usize,
    query: &Query<'_>,
    transport: Transport,
    route: Route,
    meter: Option<Meter>,
) -> Resolution {
    let block = &shard.blocks[block_index];
    let key = inflight_key(query);
    let waiter = {
        let mut waiting = block.inflight.waiting.borrow_mut();
        let full = waiting.len() >= limits::MISSES_INFLIGHT_MAX;
        match waiting.get_mut(&key) {
            Some(waiters) if waiters.len() < limits::COALESCED_WAITERS_MAX => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Some(rx)
            }
            Some(_) => return Rc::new(Err(Rcode::ServFail)),
            None if full => return Rc::new(Err(Rcode::ServFail)),
            None => {
                waiting.insert(key.clone(), Vec::new());
                None
            }
        }
    };
    if let Some(rx) = waiter {
        shard
            .counters
            .coalesced
            .set(shard.counters.coalesced.get() + 1);
        return rx.await.unwrap_or_else(|_| Rc::new(Err(Rcode::ServFail)));
    }
    // The leader: remove the in-flight entry however this ends, so a dropped
    // future never leaves waiters parked forever (they see a closed channel).
    let owner = shard.peers.as_ref().map(|p| (p.owner(&key), p.me()));
    let guard = LeaderGuard { block, key };
    let from_owner = match (route, owner, &shard.peers) {
        (Route::ToOwner | Route::Refresh, Some((owner, me)), Some(peers)) if owner != me => {
            peers
                .ask(
                    owner,
                    shard.generation,
                    block_index,
                    query.packet,
                    transport,
                    route == Route::Refresh,
                )
                .await
        }
        _ => None,
    };
    let result = match from_owner {
        Some(Outcome::Resolved(result)) => result,
        Some(Outcome::Cached(reply)) => {
            StoredAnswer::from_upstream(&reply, query, &block.cache_config)
                .map_err(|_| Rcode::ServFail)
        }
        _ => resolve(shard, block, query, transport, meter).await,
    };
    let resolution = Rc::new(result);
    if let (Ok(stored), Some(cache)) = (resolution.as_ref(), &block.cache) {
        cache
            .borrow_mut()
            .insert(query, stored.clone(), Instant::now());
    }
    for waiter in guard.take() {
        let _ = waiter.send(resolution.clone());
    }
    resolution
}

/// Asks the upstreams and normalises the answer for the cache and the reply.
async fn resolve(
    shard: &Rc<Shard>,
    block: &Block,
    query: &Query<'_>,
    transport: Transport,
    meter: Option<Meter>,
) -> Result<StoredAnswer, Rcode> {
    let Some(forwarder) = &block.forwarder else {
        return Err(Rcode::ServFail);
    };
    let mut upstream_query = [0u8; limits::UDP_PAYLOAD_BYTES_MAX];
    let len = wire::write_upstream_query(query, 0, block.bufsize, &mut upstream_query);
    let answer = match forwarder.resolve(&upstream_query[..len], transport).await {
        Ok(answer) => answer,
        Err(UpstreamError::MaxConcurrent) => return Err(Rcode::Refused),
        Err(err) => {
            shard
                .counters
                .upstream_failures
                .set(shard.counters.upstream_failures.get() + 1);
            log_error(block, query, &err.to_string());
            return Err(Rcode::ServFail);
        }
    };
    StoredAnswer::from_upstream(&answer, query, &block.cache_config).map_err(|err| {
        shard
            .counters
            .bad_answers
            .set(shard.counters.bad_answers.get() + 1);
        if let Some(meter) = meter {
            meter.cache_drop(&shard.stats);
        }
        log_error(block, query, &err.to_string());
        Rcode::ServFail
    })
}

/// The cache key of a query as owned bytes: lower-cased name, type, class, DO, CD.
fn inflight_key(query: &Query<'_>) -> Vec<u8> {
    let mut name = [0u8; limits::NAME_BYTES_MAX];
    let lower = wire::name::lowercase_into(query.qname, &mut name).unwrap_or(query.qname);
    let mut key = Vec::with_capacity(lower.len() + 5);
    key.extend_from_slice(lower);
    key.extend_from_slice(&query.qtype.to_be_bytes());
    key.extend_from_slice(&query.qclass.to_be_bytes());
    key.push(u8::from(query.dnssec_ok()) | u8::from(query.cd()) << 1);
    key
}

/// The `errors` directive's line `SERVFAIL qname QTYPE: error`, for blocks with it.
fn log_error(block: &Block, query: &Query<'_>, error: &str) {
    if let Some(errors) = &block.errors {
        let (name, qtype) = (
            wire::name_to_string(query.qname),
            wire::type_to_string(query.qtype),
        );
        errors.failed("SERVFAIL", &name, &qtype, error);
    }
}

struct LeaderGuard<'a> {
    block: &'a Block,
    key: Vec<u8>,
}

impl LeaderGuard<'_> {
    fn take(self) -> Vec<oneshot::Sender<Resolution>> {
        self.block
            .inflight
            .waiting
            .borrow_mut()
            .remove(&self.key)
            .unwrap_or_default()
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        self.block.inflight.waiting.borrow_mut().remove(&self.key);
    }
}
