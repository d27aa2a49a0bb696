#!/usr/bin/env bash
# Descriptors and RSS across 100k faulty upstream exchanges (TCP resets, wrong
# questions, garbage, closes after N answers; each retried on knotd), release build:
# the CI test `faults::no_descriptor_or_memory_leak_across_faulty_exchanges` (20k
# exchanges, debug build) run at full length. Record: bench/runs/<date>-faults-leak/.
# Usage: flock /tmp/bench.lock bench/faults-leak.sh [EXCHANGES]
set -euo pipefail
cd "$(dirname "$0")/.."
exchanges=${1:-100000}
out=bench/runs/$(date +%F)-faults-leak
mkdir -p "$out"
export RELIAB_LEAK_EXCHANGES=$exchanges
cargo nextest run --release --test reliability -E 'test(no_descriptor_or_memory_leak)' \
    --no-capture 2>&1 | tee "$out/test.log" | grep -E '^leak:|PASS|FAIL'
line=$(grep '^leak:' "$out/test.log")
verdict=$(grep -qE 'PASS \[' "$out/test.log" && echo pass || echo FAIL)
{
    echo "# Descriptors and RSS across $exchanges faulty exchanges"
    echo
    echo "Command: \`flock /tmp/bench.lock bench/faults-leak.sh $exchanges\` (release build, 2 shards,"
    echo "open loop 2,000 QPS of names \`n{0..2499}.{reset,wrongq,garbage,closeafter}.f.test\`,"
    echo "forward with force_tcp to the faulty upstream first, knotd second; rounds of 4 s;"
    echo "fd count and RSS read between rounds; kernel $(uname -r), $(nproc) CPUs,"
    echo "commit $(git rev-parse --short HEAD))."
    echo
    echo "Result: **$verdict** (bound: fds +4, RSS +8 MiB from the checkpoint after two warm-up rounds)."
    echo
    echo '```'
    echo "$line" | sed 's/; rounds/;\nrounds/'
    echo '```'
    echo
    echo "Full output: test.log."
} >"$out/README.md"
cat "$out/README.md"
