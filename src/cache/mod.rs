//! Per-core cache shard: keys, stored wire answers patched on a hit, CoreDNS
//! classification and TTL rules, eviction bounded by entries and bytes.
//!
//! - [`answer`]: [`StoredAnswer`] (upstream answer → classified, TTL'd, OPT-less
//!   bytes) and [`write_reply`], which serves hits and pass-throughs alike.
//! - [`shard`]: [`Shard`], the per-core table with CLOCK eviction and sweeping.

pub mod answer;
pub mod shard;

pub use answer::{write_reply, AnswerClass, AnswerError, StoredAnswer};
pub use shard::{Key, Lookup, Shard};

#[cfg(test)]
mod tests;
