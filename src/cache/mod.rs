//! Per-core cache shard: keys, stored wire answers patched on a hit, CoreDNS
//! classification and TTL rules, eviction bounded by entries and bytes.
