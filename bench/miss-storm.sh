#!/usr/bin/env bash
# Memory under a unique-name miss storm: the cache (`cache 30`, `forward` with
# force_tcp to one knotd worker pinned to a core, 2 shards) takes dnsload's random
# names (A and TXT, every query a miss) at RATE for SECS, once without a memory limit
# and once planning within 64 MiB (`--memory-limit`). Reports the peak RSS (sampled
# every 0.5 s), answers, SERVFAIL and whether the process survived.
#
#   bench/miss-storm.sh [OUT_DIR] [SECS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
out=${1:-"bench/runs/$(date -u +%Y-%m-%d)-miss-storm"}
secs=${2:-15}
rate=${3:-40000}
bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release -q -p nodelocaldns -p dnsload
mkdir -p "$out"
bench_work
kport=25831; port=25832
cat >"$work/knot.conf" <<K
server:
    rundir: $work
    listen: 127.0.0.1@$kport
    tcp-workers: 1
    udp-workers: 1
    background-workers: 1
database:
    storage: $work
zone:
  - domain: example.test.
    file: $work/z.zone
log:
  - target: stderr
    any: error
K
{ printf '$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 30\n@ NS ns\nns A 127.0.0.1\n'
  echo '* TXT "x"'; echo '* A 192.0.2.1'; } >"$work/z.zone"
taskset -c 1 knotd -c "$work/knot.conf" >/dev/null 2>&1 & pids+=($!)
printf '.:%s {\n bind 127.0.0.1\n cache 30\n forward . 127.0.0.1:%s {\n  force_tcp\n }\n}\n' \
  "$port" "$kport" >"$work/Corefile"
echo "variant,peak_rss_kib,sent,answered,noerror,servfail,alive" >"$out/results.csv"
for variant in unlimited limit-64MiB; do
  extra=()
  [ "$variant" = limit-64MiB ] && extra=(--memory-limit 67108864)
  "$bin/nodelocaldns" -conf "$work/Corefile" --shards 2 "${extra[@]}" \
    >"$out/$variant.log" 2>&1 & cache=$!
  sleep 1.5
  "$bin/dnsload" -s 127.0.0.1 -p "$port" --random-names 3000000 --random-suffix example.test \
    --qtype A=50,TXT=50 --rate "$rate" -l "$secs" -t 2 --no-pin --quiet \
    --json "$out/$variant.json" >/dev/null 2>&1 & load=$!
  peak=0
  while kill -0 "$load" 2>/dev/null; do
    rss=$(awk '/VmRSS/{print $2}' "/proc/$cache/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && peak=$rss
    sleep 0.5
  done
  alive=no; kill -0 "$cache" 2>/dev/null && alive=yes
  kill "$cache" 2>/dev/null || true; wait "$cache" 2>/dev/null || true
  python3 - "$out/$variant.json" "$variant" "$peak" "$alive" >>"$out/results.csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = r["counters"]; rc = r["rcodes"]
# The record keeps the figures, not the full histogram and per-second series.
slim = {k: v for k, v in r.items() if k not in ("histogram", "series")}
json.dump(slim, open(sys.argv[1], "w"), indent=1)
print(f'{sys.argv[2]},{sys.argv[3]},{c["sent"]},{c["answered"]},{rc.get("NOERROR", 0)},{rc.get("SERVFAIL", 0)},{sys.argv[4]}')
PY
done
column -s, -t "$out/results.csv"
