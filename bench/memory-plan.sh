#!/usr/bin/env bash
# The miss flood of issue #24 against the image in a container with a 64 MiB memory
# limit (no swap), planning within it: the cache (`cache 30`, `forward` with
# force_tcp to one knotd worker pinned to core 1, two shards, defaults) takes
# dnsload's random names (A and TXT, every query a miss) at RATE for SECS while a
# second dnsload asks one cached name 200 times a second (the hit latency during
# the flood). Then, the flood over, a fresh miss and the hit again (recovery).
# Everything runs in a network namespace of its own (loopback only); the cache under
# the shipped seccomp profile (deploy/seccomp).
#
# Reports the kernel's OOM kills in the container's cgroup, its peak (memory.max_usage_in_bytes, v1, or
# memory.peak, v2) and the process's peak VmRSS (sampled every 0.25 s), answers,
# SERVFAIL, the misses refused by the plan, the hit latency, OOM kills.
#
#   bench/memory-plan.sh [OUT_DIR] [SECS] [RATE] [MEMORY]
#
# CACHE_ARGS adds flags to the cache (`--memory-limit 8589934592`: a plan that does
# not know the container's limit, the budgets of a process without one).
# Needs root, podman, runc, knotd and the image (`make image`; IMAGE names it).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
out=${1:-"bench/runs/$(date -u +%Y-%m-%d)-memory-plan"}
secs=${2:-20}
rate=${3:-40000}
memory=${4:-64m}
image=${IMAGE:-nodelocaldns:dev}
bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release -q -p dnsload
mkdir -p "$out"
out=$(cd "$out" && pwd)
bench_work
ns="nldmp$$"
name="nldmp$$"
ip netns add "$ns"
trap 'podman rm -f -t 0 "$name" >/dev/null 2>&1 || true; ip netns del "$ns" 2>/dev/null || true; bench_cleanup' EXIT
ip netns exec "$ns" ip link set lo up
kport=25831
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
  echo 'hit A 192.0.2.7'; echo '* TXT "x"'; echo '* A 192.0.2.1'; } >"$work/z.zone"
ip netns exec "$ns" taskset -c 1 knotd -c "$work/knot.conf" >/dev/null 2>&1 & pids+=($!)
mkdir -p "$work/conf"
printf '.:53 {\n bind 127.0.0.1\n cache 30\n forward . 127.0.0.1:%s {\n  force_tcp\n }\n prometheus 127.0.0.1:9253\n}\n' \
  "$kport" >"$work/conf/Corefile"
podman run -d --name "$name" --runtime runc --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 \
  --network "ns:/run/netns/$ns" --memory "$memory" --memory-swap "$memory" \
  --security-opt "seccomp=$PWD/deploy/seccomp/nodelocaldns.json" \
  -v "$work/conf:/etc/coredns:ro" "$image" -conf /etc/coredns/Corefile --shards 2 \
  ${CACHE_ARGS:-} >/dev/null
pid=$(podman inspect --format '{{.State.Pid}}' "$name")
cg=$(awk -F: '$2 == "memory" {print $3}' "/proc/$pid/cgroup")
if [ -n "$cg" ]; then
  cgdir="/sys/fs/cgroup/memory$cg"; peak_file="$cgdir/memory.max_usage_in_bytes"
else
  cg=$(awk -F: '$1 == "0" {print $3}' "/proc/$pid/cgroup")
  cgdir="/sys/fs/cgroup$cg"; peak_file="$cgdir/memory.peak"
fi
dig1() { ip netns exec "$ns" kdig +short +timeout=2 +retry=0 @127.0.0.1 "$@"; }
for _ in $(seq 50); do [ -n "$(dig1 hit.example.test A 2>/dev/null)" ] && break; sleep 0.2; done
idle_kib=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
echo "hit.example.test A" >"$work/hit.txt"
ip netns exec "$ns" "$bin/dnsload" -s 127.0.0.1 -p 53 -d "$work/hit.txt" --rate 200 \
  -l "$secs" -c 4 -t 1 --no-pin --quiet --json "$out/hits.json" >/dev/null 2>&1 & hits=$!
ip netns exec "$ns" "$bin/dnsload" -s 127.0.0.1 -p 53 --random-names 3000000 \
  --random-suffix example.test --qtype A=50,TXT=50 --rate "$rate" -l "$secs" -t 2 --no-pin \
  --quiet --json "$out/flood.json" >/dev/null 2>&1 & flood=$!
peak=0
: >"$out/rss.csv"
start=$(date +%s.%N)
while kill -0 "$flood" 2>/dev/null; do
  rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$peak" ] && peak=$rss
  awk -v now="$(date +%s.%N)" -v t0="$start" -v rss="$rss" 'BEGIN {printf "%.2f,%s\n", now - t0, rss}' >>"$out/rss.csv"
  sleep 0.25
done
wait "$flood" || true
cat "/proc/$pid/smaps_rollup" >"$out/smaps-rollup-flood-end.txt" 2>/dev/null || true
cat "$cgdir/memory.stat" >"$out/cgroup-memory-stat-flood-end.txt" 2>/dev/null || true
wait "$hits" || true
cg_peak=$(cat "$peak_file" 2>/dev/null || echo 0)
id=$(podman inspect --format '{{.Id}}' "$name")
running=$(podman inspect --format '{{.State.Running}}' "$name")
# The kernel's word on OOM kills in the container's cgroup (podman's OOMKilled flag
# stays false under cgroup v1 with runc).
oom=$(dmesg | grep -c "oom_memcg=.*$id" || true)
ip netns exec "$ns" curl -s http://127.0.0.1:9253/metrics >"$work/metrics.txt" || true
refused=$(awk '/^nodelocaldns_dropped_packets_total\{reason="miss_overload"\}/{print $2}' "$work/metrics.txt")
# Recovery: the flood's misses time out within 5 s; then a fresh miss and the hit.
sleep 6
after_kib=$(awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
t0=$(date +%s%N); fresh=$(dig1 "fresh$$.example.test" A || true); t1=$(date +%s%N)
hit=$(dig1 hit.example.test A || true)
recovered=no
[ "$fresh" = 192.0.2.1 ] && [ "$hit" = 192.0.2.7 ] && recovered=yes
podman logs "$name" >"$out/cache.log" 2>&1 || true
grep -E 'memory plan|cache capped' "$out/cache.log" | head -5 >"$out/plan.log" || true
cp "$work/metrics.txt" "$out/metrics-after-flood.txt"
uptime >"$out/uptime.txt"
python3 - "$out" "$idle_kib" "$peak" "$cg_peak" "$oom" "$running" "${refused:-0}" "$after_kib" \
  "$recovered" "$(( (t1 - t0) / 1000000 ))" <<'PY'
import json, sys
out, idle, peak, cg_peak, oom, running, refused, after, recovered, fresh_ms = sys.argv[1:]
def slim(name):
    r = json.load(open(f"{out}/{name}.json"))
    s = {k: v for k, v in r.items() if k not in ("histogram", "histograms", "series")}
    json.dump(s, open(f"{out}/{name}.json", "w"), indent=1)
    return s
flood, hits = slim("flood"), slim("hits")
fc, hc = flood["counters"], hits["counters"]
rows = {
    "idle_rss_kib": idle, "peak_rss_kib": peak, "cgroup_peak_bytes": cg_peak,
    "kernel_oom_kills": oom, "running_after": running,
    "flood_sent": fc["sent"], "flood_answered": fc["answered"],
    "flood_noerror": flood["rcodes"].get("NOERROR", 0),
    "flood_servfail": flood["rcodes"].get("SERVFAIL", 0),
    "misses_refused_by_plan": refused,
    "hits_sent": hc["sent"], "hits_answered": hc["answered"],
    "hits_noerror": hits["rcodes"].get("NOERROR", 0),
    "hit_p50_us": hits["latency"]["p50_us"], "hit_p99_us": hits["latency"]["p99_us"],
    "hit_max_us": hits["latency"]["max_us"],
    "rss_after_kib": after, "recovered": recovered, "fresh_miss_ms": fresh_ms,
}
with open(f"{out}/results.csv", "w") as f:
    for k, v in rows.items():
        f.write(f"{k},{v}\n")
for k, v in rows.items():
    print(f"{k:24} {v}")
PY
