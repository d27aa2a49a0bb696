//! The per-core query path, top to bottom: parse and check the query (once), pick
//! the server block, run the block's plugin chain (`crate::plugin`). A cache hit, an
//! error or any other answer the chain writes at once is sent by the caller; a query
//! the chain defers (forward) becomes a task on the miss path (`miss.rs`), which
//! answers through the closure `reply` makes and sends the answer back through the
//! chain.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::miss::{self, Asked, Miss};
use super::shard::Shard;
use crate::limits;
use crate::plugin::{Flow, Origin, Request, Trail};
use crate::upstream::Transport;
use crate::wire::{self, Rcode, Rejection};

/// What the caller does with a query it handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// An answer of this many bytes is in the output buffer.
    Reply(usize),
    /// A task answers later through the reply path.
    Later,
    /// Nothing is sent (unreadable header, a response sent to us, an `acl` drop).
    Drop,
}

/// Handles one query that arrived on `endpoint`. Answers the chain writes at once go
/// into `out`; a deferred query starts a task that answers through the closure
/// `reply` makes (called only then, so a hit clones nothing for it).
// The socket loops pass what they know of the datagram; bundling it would only move the list.
#[allow(clippy::too_many_arguments)]
#[inline]
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
    let counters = &shard.counters;
    counters.queries.set(counters.queries.get() + 1);
    let query = match wire::parse_query(packet) {
        Ok(query) => query,
        Err(Rejection::Drop(_)) => {
            counters.dropped.set(counters.dropped.get() + 1);
            return Handled::Drop;
        }
        Err(Rejection::Reply(rcode)) => {
            counters.rejected.set(counters.rejected.get() + 1);
            let before = BeforeChain {
                shard,
                endpoint,
                transport,
                now,
            };
            return before.reply(packet, None, rcode, out);
        }
    };
    let Some((block_index, zone)) = shard.block_zone_for(endpoint, query.qname) else {
        let before = BeforeChain {
            shard,
            endpoint,
            transport,
            now,
        };
        return before.reply(packet, Some(&query), Rcode::Refused, out);
    };
    let max_len = match transport {
        Transport::Udp => query.udp_limit(),
        Transport::Tcp => limits::MESSAGE_BYTES_MAX,
    };
    let limit = max_len.min(out.len());
    let request = Request {
        query: &query,
        client,
        transport,
        endpoint,
        block: block_index,
        zone,
        max_len,
        now,
        stats: &shard.stats,
    };
    let chain = &shard.blocks[block_index].chain;
    let mut trail = Trail::default();
    match chain.serve(&request, &mut trail, &mut out[..limit]) {
        Flow::Answer(len, origin) if trail.synthesize => {
            let answer = out.get(..len).unwrap_or_default();
            super::dns64::later(shard, &request, trail, answer, origin, reply);
            Handled::Later
        }
        Flow::Answer(len, _) => {
            if trail.refresh {
                let asked = trail.with_query(&query, Asked::new);
                miss::spawn_refresh(shard.clone(), block_index, asked, transport);
            }
            Handled::Reply(len)
        }
        Flow::Defer => defer(shard, &request, trail, out, reply),
        Flow::Drop | Flow::Next | Flow::Rewritten => Handled::Drop,
    }
}

/// A query answered before any chain (a malformed query, or a zone no block of its
/// endpoint serves): CoreDNS counts it under the `dropped` zone.
struct BeforeChain<'a> {
    shard: &'a Shard,
    endpoint: usize,
    transport: Transport,
    now: Instant,
}

impl BeforeChain<'_> {
    /// Writes the `rcode` reply to `packet` into `out` and counts it.
    fn reply(
        &self,
        packet: &[u8],
        query: Option<&wire::Query<'_>>,
        rcode: Rcode,
        out: &mut [u8],
    ) -> Handled {
        let len = wire::write_error_reply(packet, rcode, out);
        let answer = out.get(..len).unwrap_or_default();
        self.shard.stats.answered_before_chain(
            self.endpoint,
            self.transport.into(),
            query.map(|q| q.qtype),
            query.is_some_and(|q| q.dnssec_ok()),
            packet.len(),
            answer,
            self.now,
        );
        Handled::Reply(len)
    }
}

/// The process's bound on pending misses per shard (`Options::misses_pending_max`,
/// from the memory plan), set once when the server starts.
static MISSES_PENDING_MAX: AtomicUsize = AtomicUsize::new(limits::MISSES_PENDING_PER_SHARD_MAX);

/// Sets the bound on pending misses per shard (at least one).
pub fn set_misses_pending_max(max: usize) {
    MISSES_PENDING_MAX.store(max.max(1), Ordering::Relaxed);
}

/// Starts the task that resolves a deferred query, unless too many are pending: a
/// flood of misses (cold names, or the upstream stalling) must not grow memory
/// without bound, so past the limit a miss is answered SERVFAIL at once.
fn defer<R: FnOnce(&[u8]) + 'static>(
    shard: &Rc<Shard>,
    request: &Request<'_>,
    trail: Trail,
    out: &mut [u8],
    reply: impl FnOnce() -> R,
) -> Handled {
    let counters = &shard.counters;
    let pending = &counters.pending_misses;
    if pending.get() >= MISSES_PENDING_MAX.load(Ordering::Relaxed) {
        let overloaded = &counters.miss_overload;
        overloaded.set(overloaded.get() + 1);
        let packet = request.query.packet;
        let len = wire::write_error_reply(packet, Rcode::ServFail, out);
        // Still a query of the block: `prometheus` counts it as the server's answer.
        if let Some(meter) = trail.meter {
            let answer = out.get(..len).unwrap_or_default();
            meter.answered(request.stats, answer, Origin::Server);
        }
        return Handled::Reply(len);
    }
    pending.set(pending.get() + 1);
    let reply = reply();
    let shard = shard.clone();
    let asked = trail.with_query(request.query, Asked::new);
    let dns64 = trail.dns64.map(|_| super::dns64::Context::of(request));
    let miss = Miss {
        block_index: request.block,
        endpoint: request.endpoint,
        transport: request.transport,
        max_len: request.max_len,
        meter: trail.meter,
    };
    crate::engine::spawn_local(async move {
        let (mut answer, origin) = miss::answer(&shard, &miss, &asked).await;
        if let Some(ctx) = dns64 {
            answer = super::dns64::replace(&shard, &ctx, &trail, &asked, answer).await;
        }
        let pending = &shard.counters.pending_misses;
        pending.set(pending.get().saturating_sub(1));
        let chain = &shard.blocks[miss.block_index].chain;
        chain.back(&shard.stats, &trail, &mut answer, origin);
        // An empty answer means "nothing to send" but still ends the query.
        reply(&answer);
    })
    .detach();
    Handled::Later
}
