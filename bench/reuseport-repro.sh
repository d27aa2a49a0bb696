#!/usr/bin/env bash
# Reproduces the open finding of the 2026-11-22-cache-zipf record (a 1M fill that
# left 2/3 of its names in the cache): a second nodelocaldns bound to the same port
# (SO_REUSEPORT, as our UDP sockets are) silently takes the queries of some client
# sockets. Two servers on one port, 100k distinct names, entries of each.
#   bench/reuseport-repro.sh   (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
bin=${CARGO_TARGET_DIR:-target}/release
bench_work
knot_port=25463; port=25464
# knotd answering every *.z.test. name with one A record.
bench_zone z.test. "$work/z.test.zone" '* A 192.0.2.1'
bench_knot_conf "$work" "$knot_port" z.test.
taskset -c 1 knotd -c "$work/knot.conf" 2>/dev/null & pids+=($!)
for m in 25465 25466; do
  cat > "$work/Corefile-$m" <<CF
.:$port {
    bind 127.0.0.1
    prometheus 127.0.0.1:$m
    cache 3600 {
        success 1000000
    }
    forward . 127.0.0.1:$knot_port
}
CF
  taskset -c 0 "$bin/nodelocaldns" -conf "$work/Corefile-$m" --shards 1 2>"$work/ours-$m.log" & pids+=($!)
  sleep 1
done
entries() { curl -s "http://127.0.0.1:$1/metrics" | awk '$1 ~ /^coredns_cache_entries[{]/ {s += $NF} END {printf "%.0f\n", s}'; }
taskset -c 1 "$bin/dnsload" -p $port --names "f{0..99999}.z.test." -n 1 -q 200 -c 16 --cores 1 --quiet \
  | grep -E "Queries (sent|answered)|NOERROR|SERVFAIL"
sleep 0.5
a=$(entries 25465); b=$(entries 25466)
echo "server A entries: $a; server B entries: $b; sum: $((a + b)) (100000 names asked)"
