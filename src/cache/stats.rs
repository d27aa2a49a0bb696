//! What a shard counts, as plain integers (one thread owns the shard), read through
//! [`Shard::stats`](super::Shard::stats) and summed over shards by telemetry.

/// A snapshot of one shard's counters (monotonic since the shard was made) and gauges.
/// "Denial" includes cached SERVFAIL/NOTIMP, as CoreDNS keeps those in its ncache.
///
/// CoreDNS metric each maps to: `coredns_cache_hits_total{type}` ← `hits_*`,
/// `coredns_cache_misses_total` ← `misses`, `coredns_cache_requests_total` ← hits +
/// misses, `coredns_cache_prefetch_total` ← `prefetches`,
/// `coredns_cache_served_stale_total` ← `served_stale`,
/// `coredns_cache_evictions_total{type}` ← `evictions_*`,
/// `coredns_cache_drops_total` ← `drops` (ours; CoreDNS counts question mismatches
/// there, which the server sees before the cache), `coredns_cache_entries{type}` ←
/// `entries_*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from a success entry (fresh, or stale with `immediate`).
    pub hits_success: u64,
    /// Lookups answered from a denial or SERVFAIL entry.
    pub hits_denial: u64,
    /// Lookups that wrote nothing (no entry, expired, or `verify` stale) and were
    /// not answered from another shard's cache after all (see
    /// [`Shard::hit_elsewhere`](super::Shard::hit_elsewhere)).
    pub misses: u64,
    /// Refreshes the shard told the caller to start (prefetch and stale alike, as
    /// CoreDNS counts them).
    pub prefetches: u64,
    /// Refreshes ended by `refresh_failed`, or by an answer that was not cached.
    pub refresh_failures: u64,
    /// Stale answers written (by `lookup` with `immediate`, or by `lookup_stale`).
    pub served_stale: u64,
    /// Entries removed to make room (capacity or bytes), by class.
    pub evictions_success: u64,
    pub evictions_denial: u64,
    /// Entries removed because they were past expiry and the serve_stale window.
    pub expired: u64,
    /// Cacheable answers not cached: larger than the byte budget, or no room made.
    pub drops: u64,
    /// Entries now, by class: the entries this shard owns, each counted by one
    /// shard only (`coredns_cache_entries` is the number of distinct entries).
    pub entries_success: usize,
    pub entries_denial: usize,
    /// Copies of entries other shards own, kept for hits on this core.
    pub copies: usize,
    /// Bytes accounted to entries now.
    pub bytes: usize,
}

impl CacheStats {
    /// `coredns_cache_requests_total`: every lookup.
    pub fn requests(&self) -> u64 {
        self.hits_success + self.hits_denial + self.misses
    }
}
