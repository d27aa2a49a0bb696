#!/usr/bin/env bash
# Cache capacity across shards: one Zipf workload (20,000 names, 30,000 queries,
# s=1.0, capacity 1000) against a fresh server with 1, 2, 8 and 16 shards, one query
# at a time from 32 client sockets, knotd as the upstream. The hit ratio is counted,
# not timed (1 - queries knotd answered / queries sent), so 16 shards on 2 cores give
# the same figure as on 16. It is the integration test
# `capacity::zipf_hit_ratio_is_the_same_on_1_2_8_and_16_shards`, which asserts that
# no shard count falls more than 2 points below one shard; this writes its table.
#
#   bench/cache-shards.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-"bench/runs/$(date -u +%Y-%m-%d)-cache-shards"}
mkdir -p "$out"
cargo nextest run --no-capture --test integration \
  -E 'test(zipf_hit_ratio_is_the_same_on_1_2_8_and_16_shards)' 2>&1 | tee "$out/test.log"
sed -n '/^capacity /,/^16 /p' "$out/test.log" > "$out/table.txt"
cat "$out/table.txt"
