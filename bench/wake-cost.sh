#!/usr/bin/env bash
# What a wake-up costs the woken thread on this machine (bench/wake), with the idle
# core halting (the default here) and polling (/dev/cpu_dma_latency held at 0 by
# the measuring process for its own run only). Each case runs ROUNDS times,
# alternating the two idle modes; the record keeps every line and the medians.
#
#   bench/wake-cost.sh [SECONDS_PER_CASE] [ROUNDS]
#   env: OUT (record directory, default bench/runs/<date>-wake-cost)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
rounds=${2:-3}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --manifest-path bench/wake/Cargo.toml --target-dir "$target"
wake="$target/release/bench-wake"
out=${OUT:-bench/runs/$(date -u +%Y-%m-%d)-wake-cost}
mkdir -p "$out"
lines="$out/lines.txt"
: >"$lines"
cases=("cross 5000" "cross 20000" "cross 100000" "sleep 20000" "sleep 100000" "arm 50000" "arm 10000000")
for round in $(seq 1 "$rounds"); do
  for c in "${cases[@]}"; do
    # shellcheck disable=SC2086 # a case is two words
    "$wake" $c "$secs" | tee -a "$lines"
    "$wake" --idle-poll $c "$secs" | tee -a "$lines"
  done
done
python3 - "$lines" >"$out/table.md" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split())
    cost = next(v for k, v in kv.items() if k.startswith("cpu_us_per"))
    rows[(kv["mode"], int(kv["ns"]), kv["idle_poll"])].append(float(cost))
print("| case | idle core | CPU µs of the woken thread per wake-up (arm: per arm + cancel), median | runs |")
print("|---|---|---|---|")
for (mode, ns, poll), v in sorted(rows.items()):
    what = {"cross": f"woken from core 1 every {ns / 1000:g} µs",
            "sleep": f"nanosleep {ns / 1000:g} µs",
            "arm": f"arm a timer {ns / 1000:g} µs ahead and cancel it"}[mode]
    idle = "polls" if poll == "true" else "halts"
    print(f"| {what} | {idle} | {statistics.median(v):.2f} | {', '.join(f'{x:.2f}' for x in v)} |")
PY
{
  echo "kernel $(uname -r); $(nproc) cores; cpuidle $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)"
  echo "bench/wake-cost.sh $secs $rounds"
} >"$out/commands.txt"
cat "$out/table.md"
