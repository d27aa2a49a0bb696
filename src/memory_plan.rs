//! The memory plan: every budget of the process sized within one memory limit (the
//! cgroup's, read by [`crate::cgroup`], or `--memory-limit`), so a flood fills its
//! budgets and gets SERVFAIL or REFUSED past them instead of growing until the
//! kernel OOM-kills the container.
//!
//! Of the limit, [`MEMORY_SLACK_QUARTERS`] stays out of every budget (the kernel's
//! socket buffers charged to the cgroup, fragmentation). From the rest come the base
//! and each shard's fixed memory (its I/O memory, batches, buffers, log), and what is
//! left is shared in eighths by the cache (bytes of every block's cache together), the
//! pending misses (each with its upstream query and in-flight entry) and the TCP
//! clients. Each budget has its flag, which wins over the plan; without a limit the
//! budgets are the per-shard maxima and the cache is as configured.
//!
//! The plan is logged at start in one line ([`Plan::log`]); a cache whose configured
//! size does not fit is capped when its configuration is applied ([`fit_caches`]) and
//! logged with both sizes.

use crate::config::Config;
use crate::limits::{
    CACHE_BYTES_MIN, CACHE_ENTRY_BYTES_BUDGET, CACHE_ENTRY_BYTES_TYPICAL, IO_MEMORY_BYTES_DEFAULT,
    IO_MEMORY_BYTES_MIN, MEMORY_BASE_BYTES, MEMORY_CACHE_EIGHTHS, MEMORY_LOG_BYTES,
    MEMORY_MISSES_EIGHTHS, MEMORY_RCVBUF_DIVISOR, MEMORY_SHARD_BYTES, MEMORY_SLACK_QUARTERS,
    MEMORY_TCP_EIGHTHS, MISSES_PENDING_PER_SHARD_MAX, MISSES_PENDING_PER_SHARD_MIN,
    MISS_PENDING_BYTES, TCP_CLIENTS_PER_SHARD_MAX, TCP_CLIENTS_PER_SHARD_MIN, TCP_CLIENT_BYTES,
    UDP_RCVBUF_BYTES_DEFAULT, UDP_RCVBUF_BYTES_MIN,
};

/// The budgets an operator set by flag; each wins over the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--cache-bytes-max`: bytes of every block's cache together.
    pub cache_bytes: Option<u64>,
    /// `--misses-pending-max`.
    pub misses_pending_per_shard: Option<usize>,
    /// `--tcp-clients-max`.
    pub tcp_clients_per_shard: Option<usize>,
    /// `--io-memory-bytes`.
    pub io_memory_bytes: Option<usize>,
    /// `--rcvbuf-bytes`.
    pub rcvbuf_bytes: Option<usize>,
}

/// Where the limit came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    Flag,
    Cgroup,
    None,
}

/// Every budget of the process, sized at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The limit planned within (None: no limit).
    pub limit_bytes: Option<u64>,
    pub source: LimitSource,
    pub shards: usize,
    /// The process apart from the shards and budgets.
    pub base_bytes: u64,
    /// Each shard's fixed memory, its I/O memory included.
    pub shard_bytes: u64,
    /// io_uring memory per shard.
    pub io_memory_bytes: usize,
    /// SO_RCVBUF of each UDP listening socket.
    pub rcvbuf_bytes: usize,
    /// Logging, per shard.
    pub log_bytes: u64,
    /// Bytes of every block's cache together (None: as configured).
    pub cache_bytes: Option<u64>,
    pub misses_pending_per_shard: usize,
    pub tcp_clients_per_shard: usize,
}

impl Plan {
    /// The plan for `limit_bytes` and `shards`, with the operator's `overrides`.
    pub fn new(
        limit_bytes: Option<u64>,
        source: LimitSource,
        shards: usize,
        overrides: &Overrides,
    ) -> Plan {
        let shards = shards.max(1);
        let io_memory_bytes = overrides
            .io_memory_bytes
            .unwrap_or_else(|| io_memory_for(limit_bytes));
        let shard_bytes = MEMORY_SHARD_BYTES + io_memory_bytes as u64 + MEMORY_LOG_BYTES;
        let left = limit_bytes.map(|limit| {
            (limit / 4 * (4 - MEMORY_SLACK_QUARTERS))
                .saturating_sub(MEMORY_BASE_BYTES)
                .saturating_sub(shard_bytes.saturating_mul(shards as u64))
        });
        let eighths = |n: u64| left.map(|left| left / 8 * n);
        let per_shard = |bytes: Option<u64>, each: u64, min: usize, max: usize| match bytes {
            None => max,
            Some(bytes) => usize::try_from(bytes / each / shards as u64)
                .unwrap_or(usize::MAX)
                .clamp(min, max),
        };
        Plan {
            limit_bytes,
            source,
            shards,
            base_bytes: MEMORY_BASE_BYTES,
            shard_bytes,
            io_memory_bytes,
            rcvbuf_bytes: overrides
                .rcvbuf_bytes
                .unwrap_or_else(|| rcvbuf_for(limit_bytes)),
            log_bytes: MEMORY_LOG_BYTES,
            cache_bytes: overrides
                .cache_bytes
                .or_else(|| eighths(MEMORY_CACHE_EIGHTHS).map(|bytes| bytes.max(CACHE_BYTES_MIN))),
            misses_pending_per_shard: overrides.misses_pending_per_shard.unwrap_or_else(|| {
                per_shard(
                    eighths(MEMORY_MISSES_EIGHTHS),
                    MISS_PENDING_BYTES,
                    MISSES_PENDING_PER_SHARD_MIN,
                    MISSES_PENDING_PER_SHARD_MAX,
                )
            }),
            tcp_clients_per_shard: overrides.tcp_clients_per_shard.unwrap_or_else(|| {
                per_shard(
                    eighths(MEMORY_TCP_EIGHTHS),
                    TCP_CLIENT_BYTES,
                    TCP_CLIENTS_PER_SHARD_MIN,
                    TCP_CLIENTS_PER_SHARD_MAX,
                )
            }),
        }
    }

    /// What the process may take with every budget full (the cache at its planned
    /// or, without one, no figure): base, shards, misses, TCP clients, cache.
    pub fn planned_bytes(&self) -> Option<u64> {
        let shards = self.shards as u64;
        let misses = self.misses_pending_per_shard as u64 * MISS_PENDING_BYTES;
        let tcp = self.tcp_clients_per_shard as u64 * TCP_CLIENT_BYTES;
        let fixed = self.base_bytes + shards * (self.shard_bytes + misses + tcp);
        self.cache_bytes.map(|cache| fixed + cache)
    }

    /// Logs the whole plan in one line, and a warning when the budgets at their
    /// minima do not fit the limit (too many shards for it).
    pub fn log(&self) {
        tracing::info!(
            memory_limit_bytes = ?self.limit_bytes,
            from = match self.source {
                LimitSource::Flag => "--memory-limit",
                LimitSource::Cgroup => "cgroup memory limit",
                LimitSource::None => "no memory limit",
            },
            shards = self.shards,
            base_bytes = self.base_bytes,
            shard_bytes = self.shard_bytes,
            io_memory_bytes = self.io_memory_bytes,
            rcvbuf_bytes = self.rcvbuf_bytes,
            log_bytes = self.log_bytes,
            cache_bytes = ?self.cache_bytes,
            misses_pending_per_shard = self.misses_pending_per_shard,
            tcp_clients_per_shard = self.tcp_clients_per_shard,
            planned_bytes = ?self.planned_bytes(),
            "memory plan"
        );
        if let (Some(limit), Some(planned)) = (self.limit_bytes, self.planned_bytes()) {
            if planned > limit / 4 * (4 - MEMORY_SLACK_QUARTERS) {
                tracing::warn!(
                    memory_limit_bytes = limit,
                    planned_bytes = planned,
                    shards = self.shards,
                    "the memory limit is small for this many shards and budgets: \
                     set --shards, a CPU limit or smaller budgets"
                );
            }
        }
    }
}

/// io_uring memory for a limit: the default, less under a tight limit (1/64 of it).
fn io_memory_for(limit_bytes: Option<u64>) -> usize {
    limit_bytes.map_or(IO_MEMORY_BYTES_DEFAULT, |limit| {
        usize::try_from(limit / 64)
            .unwrap_or(usize::MAX)
            .clamp(IO_MEMORY_BYTES_MIN, IO_MEMORY_BYTES_DEFAULT)
    })
}

/// SO_RCVBUF for a limit (see [`MEMORY_RCVBUF_DIVISOR`]).
fn rcvbuf_for(limit_bytes: Option<u64>) -> usize {
    limit_bytes.map_or(UDP_RCVBUF_BYTES_DEFAULT, |limit| {
        usize::try_from(limit / MEMORY_RCVBUF_DIVISOR)
            .unwrap_or(usize::MAX)
            .clamp(UDP_RCVBUF_BYTES_MIN, UDP_RCVBUF_BYTES_DEFAULT)
    })
}

/// What one block's cache was capped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheCap {
    /// The block's first zone, for the log.
    pub zone: String,
    pub configured_bytes: usize,
    pub planned_bytes: usize,
    /// Entries per class (success, denial) as configured and as capped.
    pub configured_entries: (usize, usize),
    pub planned_entries: (usize, usize),
}

/// The bytes `cache` may take as configured: `max_bytes`, or its entries at the
/// per-entry budget (as `cache::Shard` sizes it).
fn configured_bytes(cache: &crate::config::CacheConfig) -> usize {
    cache.max_bytes.unwrap_or_else(|| {
        (cache.success.capacity + cache.denial.capacity).saturating_mul(CACHE_ENTRY_BYTES_BUDGET)
    })
}

/// Fits the caches of `config` within `cache_bytes` (all blocks together): when
/// their configured sizes add up to more, each block's byte budget is scaled down in
/// proportion and its entries capped to what those bytes hold at
/// [`CACHE_ENTRY_BYTES_TYPICAL`] each. Returns what was capped (empty: it fit, or no
/// budget), each logged.
pub fn fit_caches(config: &mut Config, cache_bytes: Option<u64>) -> Vec<CacheCap> {
    let Some(budget) = cache_bytes else {
        return Vec::new();
    };
    let budget = usize::try_from(budget).unwrap_or(usize::MAX);
    let total: usize = config
        .servers
        .iter()
        .filter_map(|block| block.cache.as_ref())
        .map(configured_bytes)
        .fold(0, usize::saturating_add);
    if total <= budget {
        return Vec::new();
    }
    let mut capped = Vec::new();
    for block in &mut config.servers {
        let zone = block
            .zones
            .first()
            .map(|z| z.name.clone())
            .unwrap_or_default();
        let Some(cache) = block.cache.as_mut() else {
            continue;
        };
        let configured = configured_bytes(cache);
        let planned = share(configured, budget, total).max(1);
        let entries = (cache.success.capacity, cache.denial.capacity);
        let room = (planned / CACHE_ENTRY_BYTES_TYPICAL).max(2);
        if entries.0 + entries.1 > room {
            let success = share(entries.0, room, entries.0 + entries.1).max(1);
            cache.success.capacity = success;
            cache.denial.capacity = (room - success).max(1);
        }
        cache.max_bytes = Some(planned);
        let cap = CacheCap {
            zone,
            configured_bytes: configured,
            planned_bytes: planned,
            configured_entries: entries,
            planned_entries: (cache.success.capacity, cache.denial.capacity),
        };
        tracing::warn!(
            zone = %cap.zone,
            configured_bytes = cap.configured_bytes,
            planned_bytes = cap.planned_bytes,
            configured_entries = ?cap.configured_entries,
            planned_entries = ?cap.planned_entries,
            "cache capped to fit the memory plan (--cache-bytes-max or --memory-limit to change)"
        );
        capped.push(cap);
    }
    capped
}

/// `part × budget / total`, without overflow.
fn share(part: usize, budget: usize, total: usize) -> usize {
    let scaled = part as u128 * budget as u128 / (total.max(1) as u128);
    usize::try_from(scaled).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests;
