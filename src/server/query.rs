//! The per-core query path, top to bottom: parse and check the query, pick the
//! server block, answer from the cache shard, or hand the miss to a task on the miss
//! path (`miss.rs`) that answers when the resolution returns.

use std::rc::Rc;
use std::time::Instant;

use super::miss::{self, Miss};
use super::shard::{Block, Shard};
use crate::config::AclAction;
use crate::limits;
use crate::telemetry::{Meter, Plugin, Proto, QueryLog};
use crate::upstream::Transport;
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
        let (out, plugin) = miss::answer(&task_shard, &miss, &packet).await;
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

/// Answers from the block's cache into `out` (its length is the size limit) and
/// starts the one refresh the cache asks for (prefetch, stale). None on a miss.
fn cached_reply(
    shard: &Rc<Shard>,
    block_index: usize,
    query: &Query<'_>,
    transport: Transport,
    now: Instant,
    out: &mut [u8],
) -> Option<usize> {
    let (len, must_refresh) = shard.cached(block_index, query, now, out)?;
    if must_refresh {
        miss::spawn_refresh(shard.clone(), block_index, query.packet.to_vec(), transport);
    }
    Some(len)
}
