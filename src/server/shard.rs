//! One shard's state: its server blocks (plugin chain, misses in flight) and its
//! counters. Owned by one thread; nothing in here is shared or locked.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::coalesce::Inflight;
use super::listen::Endpoint;
use super::mesh::Peers;
use crate::cache::Lookup;
use crate::config::{self, CacheClass, CacheConfig, Config, ServerBlock};
use crate::limits;
use crate::plugin::Chain;
use crate::wire;

/// Plain per-shard counters, read by the control plane when metrics are scraped.
#[derive(Default)]
pub struct Counters {
    pub queries: Cell<u64>,
    /// Packets dropped without an answer (unreadable header, QR=1).
    pub dropped: Cell<u64>,
    /// Queries answered FORMERR/NOTIMP/REFUSED/BADVERS by the checks.
    pub rejected: Cell<u64>,
    /// Misses that joined an upstream query already in flight.
    pub coalesced: Cell<u64>,
    pub upstream_failures: Cell<u64>,
    /// Upstream answers rejected by validation (wrong question, unparsable).
    pub bad_answers: Cell<u64>,
    /// UDP answers the kernel did not take.
    pub send_failures: Cell<u64>,
    /// TCP clients refused because the shard had too many.
    pub tcp_refused: Cell<u64>,
    /// Misses waiting for an answer now (bounded by `Options::misses_pending_max`).
    pub pending_misses: Cell<usize>,
    /// Misses answered SERVFAIL at once because too many were pending.
    pub miss_overload: Cell<u64>,
}

/// A server block as a shard runs it.
pub struct Block {
    /// Wire forms of the block's zones (lower case).
    zones: Vec<Vec<u8>>,
    /// The block's plugins, in node-cache's order.
    pub chain: Chain,
    /// Classification and TTL bounds for answers (the cache's, or defaults without one).
    pub cache_config: CacheConfig,
    pub inflight: Inflight,
    /// `timeouts`: the block's TCP client timeouts.
    pub timeouts: Option<config::TimeoutsConfig>,
}

/// A cached answer copied out for another shard or task ([`Shard::cached_copy`]).
pub struct CachedCopy {
    pub reply: Vec<u8>,
    /// The cache asks for a refresh of the entry.
    pub must_refresh: bool,
    /// From an expired entry (serve_stale).
    pub stale: bool,
}

pub struct Shard {
    pub blocks: Vec<Block>,
    /// Reloads applied before this state; block indices mean the same block on two
    /// shards only when their generations agree.
    pub generation: u64,
    /// The other shards, which own the misses of the keys that hash to them.
    pub peers: Option<Rc<Peers>>,
    /// For each endpoint, its address and the blocks behind it.
    endpoint_blocks: Vec<(std::net::SocketAddr, Vec<usize>)>,
    pub counters: Counters,
    /// Metrics of the blocks with `prometheus` (empty without).
    pub stats: crate::telemetry::ShardStats,
    /// The buffer an owner writes a cached answer for another shard into.
    scratch: RefCell<Box<[u8]>>,
}

impl Shard {
    pub fn new(
        config: &Config,
        endpoints: &[Endpoint],
        shards: usize,
        generation: u64,
        peers: Option<Rc<Peers>>,
    ) -> Rc<Shard> {
        let blocks: Vec<Block> = config
            .servers
            .iter()
            .map(|block| Block::new(block, shards))
            .collect();
        let stats = crate::telemetry::ShardStats::new(
            config,
            endpoints.iter().map(|e| (e.addr, e.blocks.as_slice())),
        );
        for cache in blocks.iter().filter_map(|b| b.chain.cache()) {
            cache
                .cell()
                .borrow_mut()
                .tally_addresses(endpoints.len(), Some);
        }
        Rc::new(Shard {
            blocks,
            generation,
            peers,
            endpoint_blocks: endpoints
                .iter()
                .map(|e| (e.addr, e.blocks.clone()))
                .collect(),
            counters: Counters::default(),
            stats,
            scratch: RefCell::new(vec![0u8; limits::MESSAGE_BYTES_MAX].into_boxed_slice()),
        })
    }

    /// The address of endpoint `index`.
    pub fn endpoint_addr(&self, index: usize) -> Option<std::net::SocketAddr> {
        self.endpoint_blocks.get(index).map(|(addr, _)| *addr)
    }

    /// The index of the endpoint listening on `addr`, None once it is gone.
    pub fn endpoint_index(&self, addr: std::net::SocketAddr) -> Option<usize> {
        self.endpoint_blocks.iter().position(|(a, _)| *a == addr)
    }

    /// The TCP client timeouts of `endpoint`: each from the first of its blocks
    /// that sets it (CoreDNS keeps one set per listener).
    pub fn tcp_timeouts(&self, endpoint: usize) -> config::TimeoutsConfig {
        let mut merged = config::TimeoutsConfig::default();
        let blocks = self
            .endpoint_blocks
            .get(endpoint)
            .map_or(&[][..], |(_, b)| b);
        for t in blocks.iter().filter_map(|&i| self.blocks.get(i)?.timeouts) {
            merged.read = merged.read.or(t.read);
            merged.write = merged.write.or(t.write);
            merged.idle = merged.idle.or(t.idle);
            merged.max_queries = merged.max_queries.or(t.max_queries);
        }
        merged
    }

    /// The block of `endpoint` with the longest zone containing `qname`.
    pub fn block_for(&self, endpoint: usize, qname: &[u8]) -> Option<usize> {
        self.block_zone_for(endpoint, qname).map(|(block, _)| block)
    }

    /// The block of `endpoint` with the longest zone containing `qname`, and the
    /// index of that zone in the block (the `zone` label of the metrics).
    pub fn block_zone_for(&self, endpoint: usize, qname: &[u8]) -> Option<(usize, usize)> {
        let (_, candidates) = self.endpoint_blocks.get(endpoint)?;
        let mut best: Option<(usize, usize, usize)> = None;
        for &index in candidates {
            for (zone_index, zone) in self.blocks[index].zones.iter().enumerate() {
                let longer = best.is_none_or(|(_, _, len)| zone.len() > len);
                if longer && wire::name::in_zone(qname, zone) {
                    best = Some((index, zone_index, zone.len()));
                }
            }
        }
        best.map(|(index, zone, _)| (index, zone))
    }

    /// The cached answer to `query` of block `block_index` for another shard or a
    /// later task, as an answer of its own length (written in the shard's scratch
    /// buffer first). None on a miss or without a cache; an expired entry answers
    /// only if `stale_ok` (and serve_stale answers with it). The copy is cached again
    /// by its taker, so a stale one must be said to be so.
    pub fn cached_copy(
        &self,
        block_index: usize,
        query: &wire::Query<'_>,
        now: std::time::Instant,
        stale_ok: bool,
    ) -> Option<CachedCopy> {
        let cache = self.blocks.get(block_index)?.chain.cache()?.cell();
        let mut scratch = self.scratch.borrow_mut();
        let max_len = scratch.len();
        // Counted where the query arrived, not again here.
        let lookup = match stale_ok {
            true => cache
                .borrow_mut()
                .lookup_via(None, query, now, &mut scratch, max_len),
            false => cache.borrow_mut().lookup_fresh(query, now, &mut scratch),
        };
        Some(CachedCopy {
            reply: scratch.get(..lookup.reply_len()?)?.to_vec(),
            must_refresh: lookup.must_refresh(),
            stale: matches!(lookup, Lookup::Stale(_) | Lookup::StaleRefresh(_)),
        })
    }

    /// Prints the `errors consolidate` summaries whose period is over.
    pub fn flush_error_summaries(&self, now: std::time::Instant) {
        for block in &self.blocks {
            if let Some(errors) = block.chain.errors() {
                errors.flush(now);
            }
        }
    }

    /// Distinct upstream queries in flight on this shard (the stop drain waits for them).
    pub fn misses_in_flight(&self) -> usize {
        self.blocks.iter().map(|b| b.inflight.len()).sum()
    }

    /// Takes over the caches of `old` (the state a reload replaces) for every block
    /// whose zones and `cache` settings are unchanged, so a reload does not start cold
    /// (a cold cache after a reload at 20k QPS sends a burst of misses upstream at
    /// once). `old` gets this state's empty caches in exchange: its misses still in
    /// flight insert there, and their entries are fetched again on the new state.
    /// Returns how many caches were carried over.
    pub fn adopt_caches(&self, old: &Shard) -> usize {
        let mut adopted = 0;
        for (index, block) in self.blocks.iter().enumerate() {
            let Some(cache) = block.chain.cache() else {
                continue;
            };
            let same = |o: &&Block| {
                o.chain.cache().is_some()
                    && o.zones == block.zones
                    && o.cache_config == block.cache_config
            };
            // The block at the same place first: blocks of equal zones on two ports.
            let Some(old_cache) = old
                .blocks
                .get(index)
                .filter(same)
                .or_else(|| old.blocks.iter().find(same))
                .and_then(|o| o.chain.cache())
            else {
                continue;
            };
            // Borrows never outlive a call on this thread; a failed one only means a
            // cold start for this block.
            if let (Ok(mut theirs), Ok(mut ours)) = (
                old_cache.cell().try_borrow_mut(),
                cache.cell().try_borrow_mut(),
            ) {
                std::mem::swap(&mut *theirs, &mut *ours);
                let was = |i: usize| {
                    let (addr, _) = self.endpoint_blocks.get(i)?;
                    old.endpoint_index(*addr)
                };
                ours.tally_addresses(self.endpoint_blocks.len(), was);
                theirs.tally_addresses(old.endpoint_blocks.len(), |_| None);
                adopted += 1;
            }
        }
        adopted
    }

    /// Examines up to `budget` cache entries per block and drops the expired ones;
    /// lets `hosts` check its file (it reads it only once its period is over).
    pub fn sweep(&self, budget: usize) {
        let now = std::time::Instant::now();
        for block in &self.blocks {
            if let Some(hosts) = block.chain.hosts() {
                hosts.refresh(now);
            }
            if let Some(cache) = block.chain.cache() {
                cache.cell().borrow_mut().sweep(now, budget);
            }
        }
    }
}

impl Block {
    fn new(block: &ServerBlock, shards: usize) -> Block {
        let zones = block
            .zones
            .iter()
            .filter_map(|zone| wire::name::zone_to_wire(&zone.name))
            .collect();
        let cache_config = block.cache.clone().unwrap_or_else(uncached_defaults);
        Block {
            zones,
            chain: Chain::new(block, shards),
            cache_config,
            inflight: Inflight::default(),
            timeouts: block.timeouts,
        }
    }
}

/// Classification bounds for a block without a `cache` directive (CoreDNS defaults).
fn uncached_defaults() -> CacheConfig {
    let class = |ttl_max| CacheClass {
        capacity: 0,
        ttl_max,
        ttl_min: config::MIN_TTL_DEFAULT,
    };
    CacheConfig {
        zones: Vec::new(),
        success: class(config::SUCCESS_TTL_DEFAULT),
        denial: class(config::DENIAL_TTL_DEFAULT),
        prefetch: None,
        serve_stale: None,
        servfail_ttl: Duration::ZERO,
        disable_success: Vec::new(),
        disable_denial: Vec::new(),
        keepttl: false,
        max_bytes: None,
    }
}
