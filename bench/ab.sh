#!/usr/bin/env bash
# A/B of two nodelocaldns binaries on one core under the same load, in one run: both
# serve (core 0) from the same knotd (core 1, TCP upstream), rounds alternate which
# goes first, and the medians of answers/s and server CPU µs per answer are compared.
# For "is this change faster?" when the machine is too noisy for two separate runs.
#
#   bench/ab.sh BIN_A BIN_B [ROUNDS] [SECONDS_PER_RUN]
#   env: LOAD (miss: unique names, closed loop -c 16 -q 500 | hit: 1,000 warm names,
#        closed loop | rate: 1,000 warm names open loop at RATE), RATE (50000),
#        OUT (record directory; default: print only), LABEL_A / LABEL_B (names of the
#        builds in the report, e.g. their commits; default: the paths)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
[ $# -ge 2 ] || { sed -n 2,11p "$0"; exit 2; }
bins=("$1" "$2")
labels=("${LABEL_A:-$1}" "${LABEL_B:-$2}")
rounds=${3:-6}
secs=${4:-5}
load_kind=${LOAD:-miss}
rate=${RATE:-50000}
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }; done
case $load_kind in miss | hit | rate) ;; *) echo "LOAD must be miss, hit or rate" >&2; exit 2;; esac
bench_install knot:knotd
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p dnsload
dnsload="$target/release/dnsload"
bench_work

knot_port=25553
bench_zone bench. "$work/bench.zone" '*.miss A 192.0.2.7'
bench_knot_conf "$work" $knot_port bench.
taskset -c 1 knotd -c "$work/knot.conf" 2>"$work/knot.log" & pids+=($!)
declare -A pid port
for i in 0 1; do
  port[$i]=$((25560 + i))
  printf '.:%s {\n    bind 127.0.0.1\n    cache 3600 {\n        success 200000\n    }\n    forward . 127.0.0.1:%s {\n        force_tcp\n    }\n}\n' \
    "${port[$i]}" $knot_port > "$work/$i.Corefile"
  taskset -c 0 "${bins[$i]}" -conf "$work/$i.Corefile" --shards 1 > "$work/$i.log" 2>&1 &
  pid[$i]=$!; pids+=($!)
done
sleep 2
for i in $(seq 0 999); do echo "w$i.bench A"; done > "$work/hit.txt"
load() { taskset -c 1 nice -n -5 "$dnsload" -s 127.0.0.1 --cores 1 -T 1 --quiet -t 2 "$@"; }
for i in 0 1; do
  kill -0 "${pid[$i]}" || { echo "${bins[$i]} did not start: $(tail -3 "$work/$i.log")" >&2; exit 1; }
  load -p "${port[$i]}" -d "$work/hit.txt" -n 3 -c 4 -q 100 > /dev/null
done
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }

: > "$work/runs.tsv"
order="0 1"
for r in $(seq 1 "$rounds"); do
  for i in $order; do
    sleep 1
    case $load_kind in
      miss) args=(--random-names 1000000 --random-suffix "r$r-$i.miss.bench." --seed "$r" -c 16 -q 500);;
      hit) args=(-d "$work/hit.txt" -c 16 -q 500);;
      rate) args=(-d "$work/hit.txt" -c 16 --rate "$rate");;
    esac
    c0=$(cpu_ns "${pid[$i]}")
    load -p "${port[$i]}" -l "$secs" "${args[@]}" --json "$work/$i-$r.json" > /dev/null
    echo "$i	$r	$c0	$(cpu_ns "${pid[$i]}")	$work/$i-$r.json" >> "$work/runs.tsv"
  done
  order="${order#* } ${order%% *}"
done

report=$(python3 - "$work/runs.tsv" "${labels[@]}" <<'PY'
import json, statistics, sys
rows, bins = sys.argv[1], sys.argv[2:]
runs = {0: [], 1: []}
for line in open(rows):
    i, r, c0, c1, path = line.split("\t")
    j = json.load(open(path.strip()))
    answered = j["counters"]["answered"]
    runs[int(i)].append((j["qps"], (int(c1) - int(c0)) / 1000 / answered if answered else None,
                         j["latency"]["p99_us"]))
med = lambda xs: statistics.median(x for x in xs if x is not None)
print("| build | answers/s (median) | CPU µs/answer (median) | p99 µs (median) | answers/s of each run |")
print("|---|---|---|---|---|")
for i in (0, 1):
    v = runs[i]
    print(f"| {'AB'[i]}: {bins[i]} | {med(x[0] for x in v):,.0f} | {med(x[1] for x in v):.2f} | "
          f"{med(x[2] for x in v):,.0f} | {', '.join(f'{x[0] / 1000:.1f}k' for x in v)} |")
a, b = med(x[0] for x in runs[0]), med(x[0] for x in runs[1])
print(f"\nB ÷ A answers/s: {b / a:.3f}")
PY
)
echo "$report"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  {
    echo "# A/B: LOAD=$load_kind, $rounds rounds of $secs s, alternating"
    echo
    echo "$report"
    echo
    echo '```'
    echo "bench/ab.sh A B $rounds $secs (LOAD=$load_kind RATE=$rate; A, B: the builds named above)"
    echo "dnsload $("$dnsload" --version | awk '{print $2}'), kernel $(uname -r), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo '```'
  } > "$OUT/README.md"
fi
