#!/usr/bin/env bash
# Two builds of nodelocaldns side by side on one core, io_uring engine, one shard:
# CPU µs per answer (/proc utime+stime of each server) and p50/p99 of pod-shaped
# load (`dnsload --pods`) at each rate, in ROUNDS rounds whose order of the two
# builds alternates. The shape is bench/engines.sh's: `cluster.local` (force_tcp)
# and `.` blocks, `cache 30`, bound to two loopback addresses (127.0.0.10 standing
# for 169.254.20.10, 127.0.0.11 for the kube-dns IP; the load goes to the second),
# or to 127.0.0.11 alone with ADDRS=one.
#
# With PERF=1 each point also counts the server's system calls and context
# switches (`perf stat` on its pid; the tracepoints cost the server some CPU, so
# CPU figures of such a run are not compared with those of a run without):
# perf.tsv, per answer.
#
#   ab.sh BEFORE_BIN AFTER_BIN OUT_DIR     env: RATES ("2000 10000"), SECS (15),
#   ROUNDS (3), ADDRS (two|one), PERF (0), SERVER_CPU (1), LOAD_CPU (0),
#   BASE_PORT (25750), DNSLOAD (target/release/dnsload)
set -euo pipefail
cd "$(dirname "$0")/../../.."
. bench/lib.sh
before_bin=$1 after_bin=$2 out=$3
rates=${RATES:-"2000 10000"}
secs=${SECS:-15}
rounds=${ROUNDS:-3}
addrs=${ADDRS:-two}
perf=${PERF:-0}
events=raw_syscalls:sys_enter,context-switches,task-clock
for call in io_uring_enter epoll_pwait recvmmsg sendmmsg recvmsg membarrier; do
  events+=",syscalls:sys_enter_$call"
done
server_cpu=${SERVER_CPU:-1}
load_cpu=${LOAD_CPU:-0}
base=${BASE_PORT:-25750}
dnsload=${DNSLOAD:-target/release/dnsload}
case $addrs in
  two) bind="127.0.0.10 127.0.0.11" ;;
  one) bind="127.0.0.11" ;;
  *) echo "ADDRS must be two or one" >&2; exit 2 ;;
esac
mkdir -p "$out"
bench_work
knot_port=$base
per_lookup=4.72   # queries per lookup of the default pod profile: `--rate` counts lookups
"$dnsload" --pods 110 --write-zones "$work/zones" > "$work/zones.txt"
{
  echo "server:"; echo "    rundir: \"$work\""; echo "    listen: 127.0.0.1@$knot_port"
  echo "database:"; echo "    storage: \"$work/zones\""
  echo "log:"; echo "  - target: stderr"; echo "    any: warning"
  echo "zone:"
  while read -r origin path; do
    echo "  - domain: $origin"; echo "    file: \"$path\""
  done < "$work/zones.txt"
} > "$work/knot.conf"
taskset -c "$load_cpu" knotd -c "$work/knot.conf" 2>"$work/knot.log" & pids+=($!)
sleep 1
declare -A port pid bin
bin[before]=$before_bin bin[after]=$after_bin
i=1
for build in before after; do
  port[$build]=$((base + i)); i=$((i + 1))
  cat > "$work/Corefile.$build" <<CF
cluster.local:${port[$build]} {
    bind $bind
    cache 30
    forward . 127.0.0.1:$knot_port {
        force_tcp
    }
}
.:${port[$build]} {
    bind $bind
    cache 30
    forward . 127.0.0.1:$knot_port
}
CF
  taskset -c "$server_cpu" "${bin[$build]}" -conf "$work/Corefile.$build" --shards 1 \
    --io-engine=io_uring 2>"$work/$build.log" & pid[$build]=$!; pids+=($!)
done
sleep 2
for build in before after; do
  grep -q "listening" "$work/$build.log" || { cat "$work/$build.log"; exit 1; }
done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
load() { # BUILD QPS SECS JSON
  local lookups
  lookups=$(python3 -c "print(max(1, round($2 / $per_lookup)))")
  taskset -c "$load_cpu" "$dnsload" -s 127.0.0.11 -p "${port[$1]}" --pods 110 --rate "$lookups" \
    -l "$3" -t 2 --quiet --no-pin --json "$4" > /dev/null
}
for build in before after; do load "$build" 2000 5 "$work/warm.json"; done
echo "# $(uname -r); $(nproc) CPUs; addrs=$addrs; before: $(uptime)" > "$out/load.txt"
printf 'round\tbuild\tqps_target\tqps\tanswered\tlost\tcpu_us_per_answer\tp50_us\tp99_us\n' > "$out/ab.tsv"
[ "$perf" = 1 ] && printf 'round\tbuild\tqps_target\tanswered\tper_answer\n' > "$out/perf.tsv"
for round in $(seq 1 "$rounds"); do
  order="before after"; [ $((round % 2)) -eq 0 ] && order="after before"
  for qps in $rates; do
    for build in $order; do
      json="$work/$build-$qps-$round.json"
      ticks0=$(cpu_ticks "${pid[$build]}")
      stat="$out/perf-$build-$qps-r$round.csv"
      if [ "$perf" = 1 ]; then
        perf stat -x, -e "$events" -o "$stat" -p "${pid[$build]}" & perf_pid=$!; pids+=($perf_pid)
      fi
      load "$build" "$qps" "$secs" "$json"
      if [ "$perf" = 1 ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
      ticks1=$(cpu_ticks "${pid[$build]}")
      python3 - "$json" "$round" "$build" "$qps" "$((ticks1 - ticks0))" "$hz" "$secs" "$out" >> "$out/ab.tsv" <<'PY'
import json, sys
path, rnd, build, qps, ticks, hz, secs, out = sys.argv[1:]
r = json.load(open(path))
c = r["counters"]
answered = c["answered"]
cpu_us = int(ticks) * 1e6 / int(hz)
small = {k: v for k, v in r.items() if k not in ("histogram", "histograms", "series")}
small["server_cpu_ticks"] = int(ticks)
json.dump(small, open(f"{out}/{build}-{qps}-r{rnd}.json", "w"), indent=1)
lat = r["latency"]
print(f"{rnd}\t{build}\t{qps}\t{answered / int(secs):.0f}\t{answered}\t{c['lost']}\t"
      f"{cpu_us / max(answered, 1):.1f}\t{lat['p50_us']:.0f}\t{lat['p99_us']:.0f}")
PY
      tail -1 "$out/ab.tsv"
      if [ "$perf" = 1 ]; then
        python3 - "$stat" "$json" "$round" "$build" "$qps" >> "$out/perf.tsv" <<'PY'
import json, sys
stat, path, rnd, build, qps = sys.argv[1:]
answered = max(json.load(open(path))["counters"]["answered"], 1)
counts = {}
for line in open(stat):
    f = line.strip().split(",")
    if len(f) > 2 and f[0] and not line.startswith("#"):
        try:
            counts[f[2].replace("syscalls:sys_enter_", "")] = float(f[0])
        except ValueError:
            pass
per = " ".join(f"{k}={v / answered:.3f}" for k, v in counts.items() if k != "task-clock")
print(f"{rnd}\t{build}\t{qps}\t{answered}\t{per}")
PY
        tail -1 "$out/perf.tsv"
      fi
    done
  done
done
echo "# after: $(uptime)" >> "$out/load.txt"
for build in before after; do cp "$work/$build.log" "$out/$build.log"; done
python3 - "$out/ab.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("build\tqps\tmedian_cpu_us_per_answer\tmedian_p50_us\tmedian_p99_us\truns")
for qps in dict.fromkeys(r["qps_target"] for r in rows):
    for build in ("before", "after"):
        sel = [r for r in rows if r["qps_target"] == qps and r["build"] == build]
        med = lambda k: statistics.median(float(r[k]) for r in sel)
        print(f"{build}\t{qps}\t{med('cpu_us_per_answer'):.1f}\t{med('p50_us'):.0f}\t{med('p99_us'):.0f}\t{len(sel)}")
PY
