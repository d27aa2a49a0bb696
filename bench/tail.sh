#!/usr/bin/env bash
# Tail latency at a fixed rate and where it comes from. Servers pinned to core 0,
# dnsload (and knotd) to core 1, as in compare.sh; every round runs each server once
# (open loop at RATE over 1,000 warm names), rounds alternate the order, and the
# per-run p50/p99/p99.9/max and server CPU µs per answer go into a table with medians.
# Then one more run per server under `perf sched record`: which other tasks held the
# server's core, for how long at a stretch, and the server's worst scheduling delays
# (`perf sched timehist`), to tell the server's own stalls from the machine's.
#
#   bench/tail.sh [SECONDS_PER_RUN] [ROUNDS]
#   env: RATE (50000), SERVERS (default "nodelocaldns nodelocaldns-iouring echo dnsdist
#        unbound"; nodelocaldns-iouring is ours with --udp-hot-wait=false), OUT (record
#        directory, default bench/runs/<date>-tail), SCHED (1: the perf sched runs)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${1:-5}
rounds=${2:-5}
rate=${RATE:-50000}
servers=${SERVERS:-"nodelocaldns nodelocaldns-iouring echo dnsdist unbound"}
target=${CARGO_TARGET_DIR:-target}
out=${OUT:-bench/runs/$(date -u +%Y-%m-%d)-tail}
server_core=0
load_core=1

bench_install knot:knotd dnsdist:dnsdist unbound:unbound linux-perf:perf
cargo build --release -q -p nodelocaldns -p dnsload
cargo build --release -q --manifest-path bench/echo/Cargo.toml --target-dir "$target"
dnsload="$target/release/dnsload"
mkdir -p "$out/raw"
bench_work

knot_port=25453
declare -A port=([nodelocaldns]=25460 [nodelocaldns-iouring]=25461 [echo]=25462
  [dnsdist]=25463 [unbound]=25464)
bench_zone bench. "$work/bench.zone"
bench_knot_conf "$work" $knot_port bench.
taskset -c $load_core knotd -c "$work/knot.conf" 2>"$work/knot.log" & pids+=($!)

for s in nodelocaldns nodelocaldns-iouring; do
  printf '.:%s {\n    bind 127.0.0.1\n    cache 3600\n    forward . 127.0.0.1:%s\n}\n' \
    "${port[$s]}" $knot_port > "$work/$s.Corefile"
done
bench_dnsdist_conf "$work/dnsdist.conf" "${port[dnsdist]}" $knot_port
bench_unbound_conf "$work/unbound.conf" "${port[unbound]}" $knot_port "$work"
ours="$target/release/nodelocaldns --shards 1 -conf $work"
declare -A cmd=(
  [nodelocaldns]="$ours/nodelocaldns.Corefile"
  [nodelocaldns-iouring]="$ours/nodelocaldns-iouring.Corefile --udp-hot-wait=false"
  [echo]="$target/release/bench-echo 127.0.0.1:${port[echo]}"
  [dnsdist]="dnsdist --supervised --disable-syslog -C $work/dnsdist.conf"
  [unbound]="unbound -d -c $work/unbound.conf"
)
declare -A pid
for s in $servers; do
  # shellcheck disable=SC2086
  taskset -c $server_core ${cmd[$s]} >"$work/$s.log" 2>&1 & pid[$s]=$!; pids+=($!)
done
sleep 3
for i in $(seq 0 999); do echo "w$i.bench A"; done > "$work/hit.txt"
load() { taskset -c $load_core nice -n -5 "$dnsload" -s 127.0.0.1 --cores $load_core -T 1 --quiet -t 2 "$@"; }
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }
for s in $servers; do echo "$s	${pid[$s]}"; done > "$out/raw/pids.tsv"
for s in $servers; do
  kill -0 "${pid[$s]}" || { echo "$s did not start: $(tail -3 "$work/$s.log")" >&2; exit 1; }
  load -p "${port[$s]}" -d "$work/hit.txt" -n 3 -c 4 -q 100 > /dev/null
done

echo "$(date -u +%FT%TZ) load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" > "$out/load.txt"
: > "$out/runs.tsv"
order=$servers
for r in $(seq 1 "$rounds"); do
  for s in $order; do
    sleep 1
    c0=$(cpu_ns "${pid[$s]}")
    load -p "${port[$s]}" -d "$work/hit.txt" -l "$secs" -c 16 --rate "$rate" \
      --json "$out/raw/$s-$r.json" > /dev/null
    echo "$s	$r	$c0	$(cpu_ns "${pid[$s]}")" >> "$out/runs.tsv"
  done
  order="${order#* } ${order%% *}"
done
echo "$(date -u +%FT%TZ) load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/load.txt"

if [ "${SCHED:-1}" = 1 ]; then
  for s in $servers; do
    sleep 1
    perf record -q -e sched:sched_switch -e sched:sched_wakeup -C $server_core,$load_core \
      -o "$work/sched.data" -- sleep $((secs + 1)) > /dev/null 2>&1 & rec=$!
    sleep 0.5
    load -p "${port[$s]}" -d "$work/hit.txt" -l "$secs" -c 16 --rate "$rate" \
      --json "$out/raw/$s-sched.json" > /dev/null
    wait $rec || true
    perf sched timehist -i "$work/sched.data" 2>/dev/null | gzip -9 > "$out/raw/$s-timehist.txt.gz"
  done
fi

{
  echo "bench/tail.sh $secs $rounds (RATE=$rate SERVERS=\"$servers\" SCHED=${SCHED:-1})"
  echo "dnsload $("$dnsload" --version | awk '{print $2}'), kernel $(uname -r), $(nproc) cores"
  echo "run:   dnsload -s 127.0.0.1 -p PORT -d hit.txt -l $secs -c 16 --rate $rate -T 1 --cores $load_core -t 2"
  echo "sched: perf record -e sched:sched_switch -e sched:sched_wakeup -C $server_core,$load_core; perf sched timehist"
  for s in $servers; do echo "$s: ${cmd[$s]}" | sed "s|$work/||g"; done
} > "$out/commands.txt"
python3 bench/tail-report.py "$out" "$rate" "$server_core" $servers
gzip -9f "$out"/raw/*.json
cat "$out/README.md"
