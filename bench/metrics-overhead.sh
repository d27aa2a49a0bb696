#!/usr/bin/env bash
# Cost of the metrics on the hot path: the same cache-hit load against
# nodelocaldns with `prometheus` in the Corefile (scraped every second with curl
# while under load) and without it. Both servers run pinned to core 0 (1 shard),
# dnsperf runs on core 1; rounds alternate; the record (commands, versions, raw
# output, medians, ratio) goes under bench/runs/<date>-metrics-overhead/.
# Other tenants of the machine make single runs noisy, so besides the medians the
# record gives the median of the per-round ratios (adjacent runs, order swapped
# every round) and the server CPU time per answered query (from /proc), which
# contention barely moves.
#
#   bench/metrics-overhead.sh [SECONDS_PER_RUN] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${1:-10}
rounds=${2:-3}
server_core=0
load_core=1

bench_install knot:knotd dnsperf:dnsperf curl:curl
cargo build --release -q -p nodelocaldns
target=${CARGO_TARGET_DIR:-target}

out="bench/runs/$(date -u +%Y-%m-%d)-metrics-overhead"
mkdir -p "$out"
bench_work

knot_port=25363; with_port=25364; without_port=25365; metrics_port=25366

bench_zone test. "$work/test.zone"
bench_knot_conf "$work" "$knot_port" test.
taskset -c $load_core knotd -c "$work/knot.conf" 2>"$work/knot.log" & pids+=($!)

corefile() { # port [prometheus line]
  printf '.:%s {\n    bind 127.0.0.1\n    cache 3600\n    forward . 127.0.0.1:%s\n%s}\n' "$1" "$knot_port" "${2:-}"
}
corefile $with_port "    prometheus 127.0.0.1:$metrics_port
" > "$work/with.Corefile"
corefile $without_port > "$work/without.Corefile"
cp "$work/with.Corefile" "$work/without.Corefile" "$out/"

taskset -c $server_core "$target/release/nodelocaldns" -conf "$work/with.Corefile" --shards 1 2>"$work/with.log" & pids+=($!)
declare -A pid
pid[with]=$!
taskset -c $server_core "$target/release/nodelocaldns" -conf "$work/without.Corefile" --shards 1 2>"$work/without.log" & pids+=($!)
pid[without]=$!
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)
sleep 2

for i in $(seq 0 999); do echo "w$i.test A"; done > "$work/queries.txt"
run() { # name port round
  taskset -c $load_core dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries.txt" -l 2 -c 8 -q 200 >/dev/null 2>&1 || true  # warm
  local scraper=""
  if [ "$1" = with ]; then
    (while :; do curl -s -o /dev/null "http://127.0.0.1:$metrics_port/metrics"; sleep 1; done) & scraper=$!
  fi
  local before after
  before=$(cpu_ticks "${pid[$1]}")
  taskset -c $load_core dnsperf -s 127.0.0.1 -p "$2" -d "$work/queries.txt" -l "$secs" -c 16 -q 500 -T 1 > "$out/$1-round$3.txt" 2>&1 || true
  after=$(cpu_ticks "${pid[$1]}")
  if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; fi
  local q done_q
  q=$(awk '/Queries per second/ {print $4}' "$out/$1-round$3.txt")
  done_q=$(awk '/Queries completed/ {print $3}' "$out/$1-round$3.txt")
  # QPS and server CPU microseconds per answered query.
  echo "$q $(awk -v t=$((after - before)) -v hz="$ticks" -v n="$done_q" 'BEGIN {if (n>0) printf "%.3f", t / hz * 1e6 / n; else print 0}')"
}
declare -A qps cpu
ratios=""; cpu_ratios=""
for r in $(seq 1 "$rounds"); do
  order="with:$with_port without:$without_port"
  if [ $((r % 2)) -eq 0 ]; then order="without:$without_port with:$with_port"; fi
  declare -A this
  for s in $order; do
    read -r v c < <(run "${s%%:*}" "${s#*:}" "$r")
    qps[${s%%:*}]+="$v "; cpu[${s%%:*}]+="$c "; this[${s%%:*}]="$v $c"
    echo "round $r ${s%%:*}: $v QPS, $c us CPU/query"
  done
  read -r qw cw <<<"${this[with]}"; read -r qo co <<<"${this[without]}"
  ratios+="$(awk -v a="$qw" -v b="$qo" 'BEGIN {printf "%.3f", a/b}') "
  cpu_ratios+="$(awk -v a="$cw" -v b="$co" 'BEGIN {if (a>0) printf "%.3f", b/a; else print 0}') "
done
curl -s "http://127.0.0.1:$metrics_port/metrics" > "$out/final-scrape.txt"
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }
m_with=$(echo "${qps[with]}" | median)
m_without=$(echo "${qps[without]}" | median)
ratio=$(awk -v a="$m_with" -v b="$m_without" 'BEGIN {if (b>0) printf "%.3f", a/b; else print "-"}')
m_ratio=$(echo "$ratios" | median)
c_with=$(echo "${cpu[with]}" | median)
c_without=$(echo "${cpu[without]}" | median)
c_ratio=$(echo "$cpu_ratios" | median)
{
  echo "# Metrics overhead: cache-hit QPS with and without \`prometheus\` ($(date -u +%FT%TZ))"
  echo
  echo "Command: \`bench/metrics-overhead.sh $secs $rounds\` at $(git rev-parse --short HEAD) — both servers"
  echo "(\`--shards 1\`) pinned to core $server_core, dnsperf (-c 16 -q 500 -T 1, ${secs}s) on core $load_core,"
  echo "1,000 names from a knotd zone, cache warm. The \`with\` server has \`prometheus\` and is scraped"
  echo "every second with curl during its runs; \`without\` has no \`prometheus\`. Rounds alternate; median of $rounds."
  echo
  echo "| server | median QPS | runs (QPS) | median CPU µs/query | runs (CPU µs/query) |"
  echo "|---|---|---|---|---|"
  echo "| with prometheus, scraped 1/s | $m_with | ${qps[with]}| $c_with | ${cpu[with]}|"
  echo "| without prometheus | $m_without | ${qps[without]}| $c_without | ${cpu[without]}|"
  echo
  echo "- Ratio of median QPS, with / without: **$ratio** (target ≥ 0.97)."
  echo "- Median of the per-round QPS ratios: **$m_ratio** (rounds: $ratios)."
  echo "- Median of the per-round CPU-cost ratios (without / with µs per query): **$c_ratio** (rounds: $cpu_ratios)."
  echo "- Machine load average at the end (other tenants share the cores): $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "Raw dnsperf output: \`with-roundN.txt\`, \`without-roundN.txt\`; Corefiles beside them;"
  echo "\`final-scrape.txt\` is the last exposition of the \`with\` server."
  echo
  echo "dnsperf: $(dnsperf -h 2>&1 | awk '/Version/ {print $2; exit}'); kernel $(uname -r); $(nproc) cores."
} > "$out/README.md"
cat "$out/README.md"
