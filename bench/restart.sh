#!/usr/bin/env bash
# Zero-loss restart at the issue's rate: the CI test
# `restart::zero_lost_queries_across_three_restarts_and_two_reloads` (5k QPS, debug
# build) against the release build at QPS (default 20k), RUNS times. Each run: three
# restarts (a new process beside the old one, SO_REUSEPORT hand-over) and two reloads
# under load, plus a stream of never-seen names (misses) at QPS/20.
# Record: bench/runs/<date>-restart/ (or $OUT). Usage: flock /tmp/bench.lock bench/restart.sh [QPS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
qps=${1:-20000}
runs=${2:-3}
out=${OUT:-bench/runs/$(date +%F)-restart}
mkdir -p "$out"
: >"$out/test.log"
for run in $(seq 1 "$runs"); do
    RELIAB_RESTART_QPS=$qps cargo nextest run --release --test reliability \
        -E 'test(zero_lost_queries_across)' --no-capture 2>&1 | tee -a "$out/test.log" |
        grep -E '^restart|PASS|FAIL' || true  # a failed run is part of the record
done
{
    echo "# Zero-loss restart: $qps QPS, $runs runs"
    echo
    echo "Command: \`flock /tmp/bench.lock bench/restart.sh $qps $runs\` (release build, 2 shards per"
    echo "process, knotd upstream; per run 16 s of load with a reload at 2 s and 10 s and a"
    echo "restart at 4.5, 7.5 and 12.5 s; dnsload timeout 3 s; kernel $(uname -r), $(nproc) CPUs,"
    echo "commit $(git rev-parse --short HEAD))."
    echo
    python3 - "$out/test.log" <<'P'
import re, sys
print("| run | load | sent | answered | lost | rcodes | p99 |")
print("|---|---|---|---|---|---|---|")
run = 0
for line in open(sys.argv[1]):
    m = re.match(r"restart \((hits|misses), (\d+) QPS\): sent (\d+) answered (\d+) lost (\d+) rcodes (\S+) p99 ([\d.]+) us", line)
    if m:
        what, qps, sent, answered, lost, rcodes, p99 = m.groups()
        run += what == "hits"
        print(f"| {run} | {what} {qps} QPS | {sent} | {answered} | {lost} | `{rcodes}` | {float(p99) / 1000:.1f} ms |")
    m = re.match(r"restart \(tcp\): (\d+) queries, (\d+) needed", line)
    if m:
        print(f"| {run} | tcp, sequential | {m[1]} | {m[1]} | 0 | {m[2]} retried on a new connection | |")
P
    echo
    echo "Passed runs: $(grep -c 'PASS \[' "$out/test.log") of $runs. Full output (with each old"
    echo "process's stop time): test.log."
} >"$out/README.md"
cat "$out/README.md"
