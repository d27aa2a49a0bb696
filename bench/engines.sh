#!/usr/bin/env bash
# The two I/O engines side by side on one core: CPU µs per answer (/proc
# accounting of the server process) and p50/p99 at 2k, 10k and 40k queries/s of
# pod-shaped load (`dnsload --pods`, see loadgen/README.md).
#
# Node-shaped: the server listens on two local addresses (two loopback addresses,
# 127.0.0.10 standing for 169.254.20.10 and 127.0.0.11 for the kube-dns service IP;
# the load goes to the second, as pods' queries do), in two server blocks
# (cluster.local forced over TCP to one knotd, everything else to the same knotd
# over UDP), `cache 30`, one shard. Both servers (one per engine, `--io-engine`)
# run at once pinned to the same core, so each rate is measured on both back to
# back; knotd and dnsload share the other core.
#
#   bench/engines.sh [OUT_DIR] [SECS]     env: RATES (queries/s, default "2000 10000 40000"),
#   SERVER_CPU (1), LOAD_CPU (0), BASE_PORT (25650)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
out=${1:-"bench/runs/$(date -u +%Y-%m-%d)-engines"}
secs=${2:-20}
rates=${RATES:-"2000 10000 40000"}
server_cpu=${SERVER_CPU:-1}
load_cpu=${LOAD_CPU:-0}
base=${BASE_PORT:-25650}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p nodelocaldns -p dnsload
ours="$target/release/nodelocaldns"
dnsload="$target/release/dnsload"
mkdir -p "$out"
bench_work
knot_port=$base
# Queries per lookup of the default pod profile (loadgen/README.md): `--rate` counts lookups.
per_lookup=4.72
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
declare -A port pid
i=1
for engine in io_uring epoll; do
  port[$engine]=$((base + i)); i=$((i + 1))
  cat > "$work/Corefile.$engine" <<CF
cluster.local:${port[$engine]} {
    bind 127.0.0.10 127.0.0.11
    cache 30
    forward . 127.0.0.1:$knot_port {
        force_tcp
    }
}
.:${port[$engine]} {
    bind 127.0.0.10 127.0.0.11
    cache 30
    forward . 127.0.0.1:$knot_port
}
CF
  taskset -c "$server_cpu" "$ours" -conf "$work/Corefile.$engine" --shards 1 --io-engine="$engine" \
    2>"$work/$engine.log" & pid[$engine]=$!; pids+=($!)
done
sleep 2
for engine in io_uring epoll; do
  grep -q "listening" "$work/$engine.log" || { cat "$work/$engine.log"; exit 1; }
done
# utime+stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
load() { # ENGINE QPS SECS JSON
  local lookups
  lookups=$(python3 -c "print(max(1, round($2 / $per_lookup)))")
  taskset -c "$load_cpu" "$dnsload" -s 127.0.0.11 -p "${port[$1]}" --pods 110 --rate "$lookups" \
    -l "$3" -t 2 --quiet --no-pin --json "$4" > /dev/null
}
# Warm both caches with the working set once.
for engine in io_uring epoll; do load "$engine" 2000 5 "$work/warm.json"; done
echo "# $(uname -r); $(nproc) CPUs; $(uptime)" > "$out/load.txt"
printf 'engine\tqps_target\tqps\tanswered\tlost\tcpu_us_per_answer\tp50_us\tp99_us\n' > "$out/engines.tsv"
for qps in $rates; do
  for engine in io_uring epoll; do
    json="$work/$engine-$qps.json"
    before=$(cpu_ticks "${pid[$engine]}")
    load "$engine" "$qps" "$secs" "$json"
    after=$(cpu_ticks "${pid[$engine]}")
    python3 - "$json" "$engine" "$qps" "$((after - before))" "$hz" "$secs" "$out" >> "$out/engines.tsv" <<'PY'
import json, sys
path, engine, qps, ticks, hz, secs, out = sys.argv[1:]
r = json.load(open(path))
c = r["counters"]
answered = c["answered"]
cpu_us = int(ticks) * 1e6 / int(hz)
# The raw record without the histograms and the per-second series (kept small).
small = {k: v for k, v in r.items() if k not in ("histogram", "histograms", "series")}
small["server_cpu_ticks"] = int(ticks)
json.dump(small, open(f"{out}/{engine}-{qps}.json", "w"), indent=1)
lat = r["latency"]
print(f"{engine}\t{qps}\t{answered / int(secs):.0f}\t{answered}\t{c['lost']}\t"
      f"{cpu_us / max(answered, 1):.1f}\t{lat['p50_us']:.0f}\t{lat['p99_us']:.0f}")
PY
    tail -1 "$out/engines.tsv"
  done
done
echo "# after: $(uptime)" >> "$out/load.txt"
for engine in io_uring epoll; do cp "$work/$engine.log" "$out/$engine.log"; done
column -t "$out/engines.tsv"
