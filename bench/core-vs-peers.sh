#!/usr/bin/env bash
# Cache-hit QPS side by side: nodelocaldns (1 shard), dnsdist and unbound, each a
# caching forwarder for the same knotd zone, pinned to core 0; dnsperf on core 1.
# Rounds alternate between servers; the record (commands, versions, raw output,
# medians) goes under bench/runs/<date>-core-vs-peers/.
#
#   bench/core-vs-peers.sh [SECONDS_PER_RUN] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${1:-10}
rounds=${2:-3}
server_core=0
load_core=1

bench_install knot:knotd dnsperf:dnsperf dnsdist:dnsdist unbound:unbound
cargo build --release -q -p nodelocaldns

out="bench/runs/$(date -u +%Y-%m-%d)-core-vs-peers"
mkdir -p "$out"
bench_work

knot_port=25353; ours=25354; dnsdist_port=25355; unbound_port=25356

# Upstream: knotd with a zone of 1,000 names.
bench_zone test. "$work/test.zone"
bench_knot_conf "$work" "$knot_port" test.
taskset -c $load_core knotd -c "$work/knot.conf" 2>"$work/knot.log" & pids+=($!)

cat > "$work/Corefile" <<CF
.:$ours {
    bind 127.0.0.1
    cache 3600
    forward . 127.0.0.1:$knot_port
}
CF
bench_dnsdist_conf "$work/dnsdist.conf" "$dnsdist_port" "$knot_port"
bench_unbound_conf "$work/unbound.conf" "$unbound_port" "$knot_port" "$work"

taskset -c $server_core ./target/release/nodelocaldns -conf "$work/Corefile" --shards 1 2>"$work/ours.log" & pids+=($!)
taskset -c $server_core dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >"$work/dnsdist.log" 2>&1 & pids+=($!)
taskset -c $server_core unbound -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 & pids+=($!)
sleep 2

for i in $(seq 0 999); do echo "w$i.test A"; done > "$work/queries.txt"
run() { # name port
  taskset -c $load_core dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries.txt" -l 2 -c 8 -q 200 >/dev/null 2>&1 || true  # warm
  taskset -c $load_core dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries.txt" -l "$secs" -c 16 -q 500 -T 1 > "$out/$1-round$3.txt" 2>&1 || true
  awk '/Queries per second/ {print $4}' "$out/$1-round$3.txt"
}
declare -A qps
for r in $(seq 1 "$rounds"); do
  for s in nodelocaldns:$ours dnsdist:$dnsdist_port unbound:$unbound_port; do
    v=$(run "${s%%:*}" "${s#*:}" "$r"); qps[${s%%:*}]+="$v "
    echo "round $r ${s%%:*}: $v QPS"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }
{
  echo "# Cache-hit QPS, one core each ($(date -u +%FT%TZ))"
  echo
  echo "Command: \`bench/core-vs-peers.sh $secs $rounds\` — servers pinned to core $server_core, dnsperf (-c 16 -q 500 -T 1, ${secs}s) on core $load_core,"
  echo "1,000 names from a knotd zone, cache warm. Rounds alternate servers; median of $rounds."
  echo
  echo "| server | version | median QPS | runs | ratio to nodelocaldns |"
  echo "|---|---|---|---|---|"
  m_ours=$(echo "${qps[nodelocaldns]}" | median)
  for s in nodelocaldns dnsdist unbound; do
    case $s in
      nodelocaldns) v="$(git rev-parse --short HEAD)";;
      dnsdist) v=$(dnsdist --version 2>/dev/null | head -1 | awk '{print $2}');;
      unbound) v=$(unbound -V 2>/dev/null | awk '/Version/ {print $2}');;
    esac
    m=$(echo "${qps[$s]}" | median)
    echo "| $s | $v | $m | ${qps[$s]}| $(awk -v a="$m" -v b="$m_ours" 'BEGIN {if (b>0) printf "%.2f", a/b; else print "-"}') |"
  done
  echo
  echo "dnsperf: $(dnsperf -h 2>&1 | awk '/Version/ {print $2; exit}'); kernel $(uname -r); $(nproc) cores."
} > "$out/README.md"
cat "$out/README.md"
