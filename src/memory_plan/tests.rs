//! The plan's arithmetic, table-driven: limits read from cgroup v1 and v2 files and
//! given by flag, no limit, overrides; and caches fitted within a plan.

use std::path::Path;

use super::*;
use crate::cgroup::Limits;

const MIB: u64 = 1 << 20;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The memory limit read from a v1 or a v2 cgroup tree holding `limit` ("max" or
/// a number for v2, the page-rounded i64 max for v1 "no limit").
fn limit_from_files(version: u8, limit: &str) -> Option<u64> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let table = if version == 1 {
        write(
            root,
            "memory/pod/c/memory.limit_in_bytes",
            &format!("{limit}\n"),
        );
        "5:memory:/pod/c\n0::/\n"
    } else {
        write(root, "kubepods/pod/c/memory.max", &format!("{limit}\n"));
        "0::/kubepods/pod/c\n"
    };
    Limits::read(root, table).memory_bytes
}

/// (limit, shards) → io memory, rcvbuf, cache bytes, pending misses and TCP
/// clients per shard.
struct Row {
    name: &'static str,
    version: u8,
    file: &'static str,
    shards: usize,
    io_memory: usize,
    rcvbuf: usize,
    cache: Option<u64>,
    misses: usize,
    tcp: usize,
}

const NO_LIMIT_V1: &str = "9223372036854771712";

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // 64 MiB: 48 usable, less 16 base and 3.25 a shard (1 MiB io, 2 fixed, 0.25 log);
    // the rest in eighths: 3 cache, 3 misses at 12 KiB, 2 TCP clients at 16 KiB.
    Row { name: "64m v1, 1 shard", version: 1, file: "67108864", shards: 1,
          io_memory: 1 << 20, rcvbuf: 1 << 20, cache: Some(11_304_960), misses: 920, tcp: 460 },
    Row { name: "64m v2, 2 shards", version: 2, file: "67108864", shards: 2,
          io_memory: 1 << 20, rcvbuf: 1 << 20, cache: Some(10_027_008), misses: 408, tcp: 204 },
    Row { name: "128m v2, 2 shards", version: 2, file: "134217728", shards: 2,
          io_memory: 2 << 20, rcvbuf: 2 << 20, cache: Some(28_114_944), misses: 1_144, tcp: 572 },
    Row { name: "128m v1, 4 shards", version: 1, file: "134217728", shards: 4,
          io_memory: 2 << 20, rcvbuf: 2 << 20, cache: Some(24_772_608), misses: 504, tcp: 252 },
    // 1 GiB: the per-shard maxima.
    Row { name: "1g v2, 2 shards", version: 2, file: "1073741824", shards: 2,
          io_memory: 2 << 20, rcvbuf: 4 << 20, cache: Some(292_356_096), misses: 4_096, tcp: 1_024 },
    // No limit: the maxima, the cache as configured.
    Row { name: "no limit v2", version: 2, file: "max", shards: 2,
          io_memory: 2 << 20, rcvbuf: 4 << 20, cache: None, misses: 4_096, tcp: 1_024 },
    Row { name: "no limit v1", version: 1, file: NO_LIMIT_V1, shards: 8,
          io_memory: 2 << 20, rcvbuf: 4 << 20, cache: None, misses: 4_096, tcp: 1_024 },
    // 16 MiB cannot hold the base and a shard: every budget at its minimum.
    Row { name: "16m v1, 2 shards", version: 1, file: "16777216", shards: 2,
          io_memory: 512 << 10, rcvbuf: 256 << 10, cache: Some(1 << 20), misses: 64, tcp: 16 },
];

#[test]
fn plans_from_cgroup_files() {
    for row in TABLE {
        let limit = limit_from_files(row.version, row.file);
        let source = if limit.is_some() {
            LimitSource::Cgroup
        } else {
            LimitSource::None
        };
        let plan = Plan::new(limit, source, row.shards, &Overrides::default());
        let got = (
            plan.io_memory_bytes,
            plan.rcvbuf_bytes,
            plan.cache_bytes,
            plan.misses_pending_per_shard,
            plan.tcp_clients_per_shard,
        );
        let want = (row.io_memory, row.rcvbuf, row.cache, row.misses, row.tcp);
        assert_eq!(got, want, "{}", row.name);
        // With every budget full the process stays within the usable part of the
        // limit, whenever the limit can hold the minima at all.
        if let (Some(limit), Some(planned)) = (limit, plan.planned_bytes()) {
            if limit >= 64 * MIB {
                assert!(
                    planned <= limit / 4 * 3,
                    "{}: {planned} of {limit}",
                    row.name
                );
            } else {
                assert!(
                    planned > limit / 4 * 3,
                    "{}: the minima exceed it",
                    row.name
                );
            }
        }
    }
}

#[test]
fn a_smaller_limit_never_gives_a_larger_budget() {
    let mut last: Option<Plan> = None;
    for mib in [4096u64, 1024, 512, 256, 128, 96, 64, 48, 32, 16] {
        let plan = Plan::new(Some(mib * MIB), LimitSource::Flag, 2, &Overrides::default());
        if let Some(prev) = last {
            assert!(plan.cache_bytes <= prev.cache_bytes, "{mib} MiB");
            assert!(plan.misses_pending_per_shard <= prev.misses_pending_per_shard);
            assert!(plan.tcp_clients_per_shard <= prev.tcp_clients_per_shard);
            assert!(plan.io_memory_bytes <= prev.io_memory_bytes);
            assert!(plan.rcvbuf_bytes <= prev.rcvbuf_bytes);
        }
        last = Some(plan);
    }
}

#[test]
fn overrides_win_over_the_plan() {
    let overrides = Overrides {
        cache_bytes: Some(123 * MIB),
        misses_pending_per_shard: Some(7),
        tcp_clients_per_shard: Some(3),
        io_memory_bytes: Some(4 << 20),
        rcvbuf_bytes: Some(8 << 20),
    };
    for limit in [None, Some(64 * MIB), Some(16 * MIB)] {
        let plan = Plan::new(limit, LimitSource::Flag, 2, &overrides);
        assert_eq!(plan.cache_bytes, Some(123 * MIB));
        assert_eq!(plan.misses_pending_per_shard, 7);
        assert_eq!(plan.tcp_clients_per_shard, 3);
        assert_eq!(plan.io_memory_bytes, 4 << 20);
        assert_eq!(plan.rcvbuf_bytes, 8 << 20);
        assert_eq!(plan.shard_bytes, (2 << 20) + (4 << 20) + (256 << 10));
    }
    // Zero shards plans as one; a huge limit does not overflow.
    let plan = Plan::new(Some(u64::MAX), LimitSource::Flag, 0, &Overrides::default());
    assert_eq!(plan.shards, 1);
    assert_eq!(plan.misses_pending_per_shard, MISSES_PENDING_PER_SHARD_MAX);
}

/// The node's four blocks, each with a default-sized cache (9,984 + 9,984 entries at
/// 512 bytes: 10,223,616 bytes each, 40,894,464 in all).
fn node_config() -> Config {
    let text = "cluster.local:53 {\n cache {\n  success 9984 30\n  denial 9984 5\n }\n forward . 10.0.0.10\n}\n\
                in-addr.arpa:53 {\n cache 30\n forward . 10.0.0.10\n}\n\
                ip6.arpa:53 {\n cache 30\n forward . 10.0.0.10\n}\n\
                .:53 {\n cache 30\n forward . 10.0.0.10\n}\n";
    crate::config::parse_corefile(text, Path::new("Corefile")).unwrap()
}

#[test]
fn caches_that_fit_are_left_alone() {
    let mut config = node_config();
    let before = config.clone();
    assert!(fit_caches(&mut config, None).is_empty());
    assert!(fit_caches(&mut config, Some(40_894_464)).is_empty());
    assert_eq!(config, before);
}

#[test]
fn caches_that_do_not_fit_share_the_budget() {
    let plan = Plan::new(
        Some(64 * MIB),
        LimitSource::Cgroup,
        1,
        &Overrides::default(),
    );
    let budget = plan.cache_bytes.unwrap();
    let mut config = node_config();
    let capped = fit_caches(&mut config, plan.cache_bytes);
    assert_eq!(capped.len(), 4);
    let mut bytes = 0;
    for (cap, block) in capped.iter().zip(&config.servers) {
        let cache = block.cache.as_ref().unwrap();
        // Each block gets a quarter (they were configured alike).
        assert_eq!(cap.configured_bytes, 10_223_616, "{}", cap.zone);
        assert_eq!(cap.planned_bytes, budget as usize / 4, "{}", cap.zone);
        assert_eq!(cache.max_bytes, Some(cap.planned_bytes));
        // Entries: what the bytes hold at 256 each, split as configured (half each).
        let room = cap.planned_bytes / CACHE_ENTRY_BYTES_TYPICAL;
        assert_eq!(
            cap.planned_entries,
            (room / 2, room - room / 2),
            "{}",
            cap.zone
        );
        assert_eq!(
            (cache.success.capacity, cache.denial.capacity),
            cap.planned_entries
        );
        bytes += cap.planned_bytes;
    }
    assert!(bytes <= budget as usize);
    assert_eq!(capped[0].zone, "cluster.local.");
    // Applied twice, nothing more changes (a reload of the same Corefile).
    let again = config.clone();
    assert!(fit_caches(&mut config, plan.cache_bytes).is_empty());
    assert_eq!(config, again);
}

#[test]
fn an_explicit_max_bytes_is_scaled_too() {
    let text = ".:53 {\n cache 30 {\n  success 100\n  denial 100\n  max_bytes 64M\n }\n forward . 10.0.0.10\n}\n\
                example:53 {\n forward . 10.0.0.10\n}\n";
    let mut config = crate::config::parse_corefile(text, Path::new("Corefile")).unwrap();
    let capped = fit_caches(&mut config, Some(16 * MIB));
    assert_eq!(capped.len(), 1);
    assert_eq!(capped[0].planned_bytes, 16 << 20);
    // 200 entries fit in 16 MiB: the count stays.
    assert_eq!(capped[0].planned_entries, (100, 100));
    assert!(config.servers[1].cache.is_none());
}
