#!/usr/bin/env bash
# Cache-hit QPS of nodelocaldns against its shard count (1 and 2 on this 2-core
# machine), same knotd zone and dnsload load as bench/compare.sh. With 1 shard the
# server has core 0 and dnsload core 1; with 2 shards the shards have cores 0 and 1
# and dnsload shares them (there is no third core), so the 2-shard figure is a floor.
# Runs alternate 1 and 2 shards; medians. Record: bench/runs/<date>-scaling/.
#
#   bench/scaling.sh [SECONDS_PER_RUN] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${1:-5}
rounds=${2:-3}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p nodelocaldns -p dnsload
out=${OUT:-"bench/runs/$(date -u +%Y-%m-%d)-scaling"}
mkdir -p "$out/raw"
bench_work
knot_port=25553
bench_zone bench. "$work/bench.zone"
bench_knot_conf "$work" "$knot_port" bench.
knotd -c "$work/knot.conf" 2>/dev/null & pids+=($!)
for i in $(seq 0 999); do echo "w$i.bench A"; done > "$work/hit.txt"
declare -A port=([1]=25554 [2]=25555) cores=([1]=0 [2]=0,1)
for n in 1 2; do
  cat > "$work/Corefile$n" <<CF
.:${port[$n]} {
    bind 127.0.0.1
    cache 3600
    forward . 127.0.0.1:$knot_port {
        force_tcp
    }
}
CF
  taskset -c "${cores[$n]}" "$target/release/nodelocaldns" -conf "$work/Corefile$n" --shards "$n" \
    2>"$out/raw/shards$n.log" & pids+=($!)
done
sleep 2
: > "$out/runs.tsv"
for n in 1 2; do
  # Enough sockets that REUSEPORT spreads the load over both shards; warm each shard.
  "$target/release/dnsload" -s 127.0.0.1 -p "${port[$n]}" -d "$work/hit.txt" -n 4 -c 32 -q 200 --quiet --no-pin > /dev/null 2>&1 || true
done
for r in $(seq 1 "$rounds"); do
  for n in 1 2; do
    "$target/release/dnsload" -s 127.0.0.1 -p "${port[$n]}" -d "$work/hit.txt" -l "$secs" -c 32 -q 500 -T 1 \
      --cores 1 -t 2 --quiet --json "$out/raw/shards$n-$r.json" > /dev/null 2>&1 || true
    q=$(python3 -c "import json; j=json.load(open('$out/raw/shards$n-$r.json')); print(round(j['qps'] * j['rcodes'].get('NOERROR', 0) / max(j['counters']['answered'], 1)))")
    echo "$n	$r	$q" >> "$out/runs.tsv"
    echo "round $r shards $n: $q" >&2
  done
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m1=$(awk '$1 == 1 {print $3}' "$out/runs.tsv" | median)
m2=$(awk '$1 == 2 {print $3}' "$out/runs.tsv" | median)
{
  echo "# Cache-hit QPS against shard count ($(date -u +%FT%TZ))"
  echo
  echo "Command: \`bench/scaling.sh $secs $rounds\` at $(git rev-parse --short HEAD); dnsload -c 32 -q 500 -T 1 on core 1,"
  echo "1,000 warm names; 1 shard on core 0; 2 shards on cores 0 and 1 (sharing core 1 with dnsload)."
  echo
  echo "| shards | median hit QPS | runs |"
  echo "|---|---|---|"
  echo "| 1 | $m1 | $(awk '$1 == 1 {printf "%s ", $3}' "$out/runs.tsv")|"
  echo "| 2 | $m2 | $(awk '$1 == 2 {printf "%s ", $3}' "$out/runs.tsv")|"
  echo
  echo "Load average: $(cut -d' ' -f1-3 /proc/loadavg); kernel $(uname -r); $(nproc) cores."
} > "$out/README.md"
cat "$out/README.md"
