#!/bin/bash
# Three dnsload builds in turn, closed loop (-c 16 -q 500) against ours (1 shard, UDP
# GSO on, cache warm) on core 0, dnsload and knotd on core 1; both cores' busy %.
# DNSLOAD_DIR holds dnsload-old (loadgen as at fec2783^), dnsload-epoll (fec2783 with
# the whole-batch hold switched off) and dnsload-flow (fec2783).
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_work
bench_zone bench. "$work/bench.zone"
bench_knot_conf "$work" 25553 bench.
taskset -c 1 knotd -c "$work/knot.conf" 2>"$work/knot.log" & pids+=($!)
printf '.:25560 {\n    bind 127.0.0.1\n    cache 3600\n    forward . 127.0.0.1:25553 {\n        force_tcp\n    }\n}\n' > "$work/Corefile"
taskset -c 0 ./target/release/nodelocaldns -conf "$work/Corefile" --shards 1 ${OURS_ARGS:-} > "$work/ours.log" 2>&1 & pids+=($!)
for i in $(seq 0 999); do echo "w$i.bench A"; done > "$work/hit.txt"
sleep 2
core_times() { awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
"${DNSLOAD_DIR:?}/dnsload-old" -s 127.0.0.1 -p 25560 -d "$work/hit.txt" -n 3 -c 4 -q 100 >/dev/null 2>&1
for rep in 1 2 3 4 5; do
for v in old epoll flow; do
  a=($(core_times 0)); b0=($(core_times 1))
  taskset -c 1 "${DNSLOAD_DIR:?}/dnsload-$v" -s 127.0.0.1 -p 25560 -d "$work/hit.txt" -l 4 -c 16 -q 500 -T 1 --cores 1 -t 2 --json "$work/$v.json" > /dev/null 2>&1
  b=($(core_times 0)); b1=($(core_times 1))
  q=$(python3 -c "import json;d=json.load(open('$work/$v.json'));print(int(d['qps']))")
  echo "$v qps=$q core0 busy $(( (b[0]-a[0])*100/(b[1]-a[1]) ))% core1 busy $(( (b1[0]-b0[0])*100/(b1[1]-b0[1]) ))%"
done; done
