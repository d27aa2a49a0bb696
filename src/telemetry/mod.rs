//! Per-shard counters, merged into CoreDNS-named metrics when scraped.
