#!/usr/bin/env bash
# Misses (unique names, 200 QPS for 5 s) against a server with SHARDS shards while a
# hit load of HIT_RATE QPS keeps its shards' UDP loops hot; prints the misses' latency
# and how many were answered. Cores are shared (two here): latency is not comparable
# across runs, the answered count is the check.
#
#   cross-shard-miss.sh BIN SHARDS HIT_RATE       (EXTRA: more server flags)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bin=$1 shards=$2 hitrate=$3
release=target/release
bench_work
kp=25653 p=25660
bench_zone bench. "$work/bench.zone" '*.miss A 192.0.2.7'
bench_knot_conf "$work" "$kp" bench.
taskset -c 1 knotd -c "$work/knot.conf" >/dev/null 2>&1 & pids+=($!)
printf '.:%s {\n    bind 127.0.0.1\n    cache 3600\n    forward . 127.0.0.1:%s {\n        force_tcp\n    }\n}\n' "$p" "$kp" > "$work/Corefile"
"$bin" -conf "$work/Corefile" --shards "$shards" ${EXTRA:-} >"$work/server.log" 2>&1 & pids+=($!)
sleep 1.5
for i in $(seq 0 999); do echo "w$i.bench A"; done > "$work/hit.txt"
load() { "$release/dnsload" -s 127.0.0.1 -p "$p" --quiet -t 2 "$@"; }
load -d "$work/hit.txt" -n 3 -c 64 -q 100 >/dev/null 2>&1
if [ "$hitrate" != 0 ]; then
  load -d "$work/hit.txt" -l 7 -c 64 --rate "$hitrate" -T 1 --cores 1 >/dev/null 2>&1 & hl=$!
fi
sleep 1
load --random-names 100000 --random-suffix "s$RANDOM.miss.bench." --seed $RANDOM -l 5 -c 64 --rate 200 -T 1 --cores 1 --json "$work/m.json" >/dev/null 2>&1
[ "$hitrate" != 0 ] && wait $hl
python3 -c "
import json;j=json.load(open('$work/m.json'));l=j['latency'];print('miss p50=%s p90=%s p99=%s answered=%s' % (l['p50_us'],l.get('p90_us'),l['p99_us'],j['counters']['answered']))"
