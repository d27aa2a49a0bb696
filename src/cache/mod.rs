//! Per-core cache shard: keys, stored wire answers patched on a hit, CoreDNS
//! classification and TTL rules, prefetch and serve_stale with one refresh in flight
//! per entry, eviction bounded by entries and bytes. Options: README.md.
//!
//! - [`answer`]: [`StoredAnswer`] (upstream answer → classified, TTL'd, OPT-less
//!   bytes) and [`write_reply`], which serves hits and pass-throughs alike.
//! - [`shard`]: [`Shard`], the per-core table with CLOCK eviction, expiry order and
//!   sweeping, and the refresh protocol the server follows ([`Lookup`]).
//! - `clock`: the shard's milliseconds and the 6-byte stamps entries keep.
//! - `refresh`: when an entry is due for prefetch; the one-refresh-in-flight mark.
//! - [`stats`]: [`CacheStats`], the shard's counters.

pub mod answer;
mod clock;
mod refresh;
pub mod shard;
pub mod stats;

pub use answer::{write_reply, AnswerClass, AnswerError, StoredAnswer};
pub use shard::{Key, Lookup, Shard, StaleEntry, Tally};
pub use stats::CacheStats;

#[cfg(test)]
mod tests;
