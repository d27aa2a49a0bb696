#!/usr/bin/env bash
# One server (nodelocaldns --shards 1, or "echo" for bench-echo) on core 0, knotd and
# dnsload on core 1, 1,000 warm names, dnsload open loop at RATE for SECS. Prints each
# server thread's CPU and context switches over its life (voluntary = wake-ups after
# blocking; the warm-up is ~3,000 queries), then QPS, CPU µs per answer over the rate
# run and latency. IDLE_POLL=1 holds /dev/cpu_dma_latency at 0.
#
#   rate-wakes.sh BIN|echo [RATE] [SECS]        (from the project root)
set -euo pipefail
. bench/lib.sh
bin=$1 rate=${2:-50000} secs=${3:-5}
release=${CARGO_TARGET_DIR:-target}/release
bench_idle_poll
bench_work
knot_port=25453 port=25460
bench_zone bench. "$work/bench.zone"
bench_knot_conf "$work" "$knot_port" bench.
taskset -c 1 knotd -c "$work/knot.conf" >/dev/null 2>&1 & pids+=($!)
printf '.:%s {\n    bind 127.0.0.1\n    cache 3600\n    forward . 127.0.0.1:%s {\n        force_tcp\n    }\n}\n' \
  "$port" "$knot_port" > "$work/Corefile"
if [ "$bin" = echo ]; then
  taskset -c 0 "$release/bench-echo" "127.0.0.1:$port" & server=$!
else
  taskset -c 0 "$bin" -conf "$work/Corefile" --shards 1 >"$work/server.log" 2>&1 & server=$!
fi
pids+=("$server")
sleep 1.5
for i in $(seq 0 999); do echo "w$i.bench A"; done > "$work/hit.txt"
load() { taskset -c 1 nice -n -5 "$release/dnsload" -s 127.0.0.1 -p "$port" --cores 1 -T 1 --quiet -t 2 "$@"; }
load -d "$work/hit.txt" -n 3 -c 4 -q 100 >/dev/null 2>&1
cpu() { cat /proc/"$server"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }
before=$(cpu)
load -d "$work/hit.txt" -l "$secs" -c 16 --rate "$rate" --json "$work/r.json" >/dev/null 2>&1
after=$(cpu)
for t in /proc/"$server"/task/*; do
  echo "thread $(cat "$t/comm") cpu_ms=$(awk '{printf "%.1f", $1 / 1e6}' "$t/schedstat")" \
    "$(grep ctxt "$t/status" | tr '\n' ' ')"
done
python3 - "$work/r.json" "$((after - before))" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
a, lat = j["counters"]["answered"], j["latency"]
print(f"qps={j['qps']:.0f} answered={a} loss={j['loss_pct']} "
      f"cpu_us/q={int(sys.argv[2]) / 1000 / a:.2f} "
      f"p50={lat['p50_us']} p99={lat['p99_us']} p999={lat['p99_9_us']}")
PY
