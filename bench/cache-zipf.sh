#!/usr/bin/env bash
# Cache efficiency side by side: nodelocaldns (1 shard), unbound and dnsdist, each a
# caching forwarder in front of the same knotd wildcard zone, pinned to core 0;
# dnsload on core 1, knotd on core 1.
#
# Part 1 (Zipf): a fresh server per run, a Zipf(S) workload over a universe of
# UNIVERSE names, at an equal memory budget BUDGET_MIB (ours: max_bytes; unbound:
# msg-cache-size + rrset-cache-size, half each; dnsdist: packet cache entries =
# budget / 300 B, roughly its per-entry cost for these answers). A warm-up of WARM
# seconds, then MEASURE seconds measured: answered QPS (dnsload), upstream queries
# (knotd's mod-stats A counter delta) per second, hit ratio = 1 - upstream/answered,
# RSS at the end. Rounds alternate servers; medians of ROUNDS.
#
# Part 2 (RSS per entry, ours): a fresh server with room for everything, filled with
# N unique names (100k, 1M) one pass in order; VmRSS before/after, entries from
# /metrics; overhead per entry = ΔRSS / entries - answer bytes (the record bytes the
# entry stores, 16 B + 2 B of TTL offset for one A record). Each fill also records
# where its answers went (upstream A queries, cache misses, entries, evictions,
# drops, SERVFAIL/overload counters), a progress line every 5 s and the server log.
#
# FILL_WARM=W first fills W other names and measures from there, so the miss path's
# own memory (tasks, buffers, upstream state) is not charged to the entries.
#
# ROUNDS=0 skips part 1; FILLS="" skips part 2; OUT sets the record's directory;
# OURS_BIN measures another nodelocaldns binary (a baseline build).
#
#   [FILLS="100000 1000000"] [FILL_WARM=0] [OUT=dir] [OURS_BIN=path] bench/cache-zipf.sh [ROUNDS] [MEASURE_SECS] [WARM_SECS] [BUDGET_MIB] [UNIVERSE] [ZIPF_S]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
measure=${2:-15}
warm=${3:-5}
budget_mib=${4:-4}
universe=${5:-1000000}
zipf=${6:-1.0}
server_core=0
load_core=1

for pkg in knot:knotd knot:knotc dnsdist:dnsdist unbound:unbound; do
  command -v "${pkg#*:}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkg%%:*}"
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p nodelocaldns -p dnsload
bin=$CARGO_TARGET_DIR/release
ours_bin=${OURS_BIN:-$bin/nodelocaldns}
fill_warm=${FILL_WARM:-0}

out=${OUT:-"bench/runs/$(date -u +%Y-%m-%d)-cache-zipf"}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

knot_port=25453; port=25454; metrics_port=25455
# Nothing else may hold our ports: our UDP sockets use SO_REUSEPORT, so a second
# server on the same port (another benchmark, a leftover) silently takes the
# queries of some client sockets (the 1M fill of the first record kept 2/3 of its
# names for that reason; see runs/2026-11-22-cache-compact).
for p in $knot_port $port $metrics_port; do
  if ss -Hlntu "sport = :$p" | grep -q .; then
    echo "port $p is in use (ss -lntup 'sport = :$p'); stop what holds it first" >&2
    exit 1
  fi
done

# Upstream: knotd answering every *.z.test. name with one A record.
cat > "$work/z.zone" <<'ZONE'
$ORIGIN z.test.
$TTL 3600
@ SOA ns.z.test. admin.z.test. 1 3600 600 86400 3600
@ NS ns
ns A 192.0.2.53
* A 192.0.2.1
ZONE
cat > "$work/knot.conf" <<KNOT
server:
    rundir: "$work"
    listen: 127.0.0.1@$knot_port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$work/knot.sock"
database:
    storage: "$work"
mod-stats:
  - id: all
    query-type: on
template:
  - id: default
    storage: "$work"
    global-module: mod-stats/all
zone:
  - domain: z.test.
    file: "$work/z.zone"
log:
  - target: stderr
    any: warning
KNOT
taskset -c $load_core knotd -c "$work/knot.conf" 2>"$work/knot.log" & pids+=($!)
sleep 1
upstream_a() { knotc -c "$work/knot.conf" -t 3 stats 2>/dev/null | awk -F' = ' '/query-type\[A\]/ {print $2}' | head -1 | sed 's/^$/0/'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
metric() { # name: sum over labels
  curl -s "http://127.0.0.1:$metrics_port/metrics" | awk -v m="$1" '$1 == m || index($1, m "{") == 1 {s += $NF} END {printf "%.0f\n", s}'
}

budget_bytes=$((budget_mib * 1024 * 1024))
dnsdist_entries=$((budget_bytes / 300))

start_server() { # name [max_bytes] [capacity]
  case $1 in
    nodelocaldns)
      cat > "$work/Corefile" <<CF
.:$port {
    bind 127.0.0.1
    prometheus 127.0.0.1:$metrics_port
    cache 3600 {
        success ${3:-10000000}
        max_bytes ${2:-$budget_bytes}
    }
    forward . 127.0.0.1:$knot_port
}
CF
      taskset -c $server_core "$ours_bin" -conf "$work/Corefile" --shards 1 2>"$work/ours.log" &
      ;;
    unbound)
      cat > "$work/unbound.conf" <<UB
server:
    interface: 127.0.0.1
    port: $port
    num-threads: 1
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$work"
    pidfile: ""
    use-syslog: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "test." nodefault
    domain-insecure: "test."
    msg-cache-size: $((budget_bytes / 2))
    rrset-cache-size: $((budget_bytes / 2))
    msg-cache-slabs: 1
    rrset-cache-slabs: 1
    infra-cache-slabs: 1
    key-cache-slabs: 1
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$knot_port
UB
      taskset -c $server_core unbound -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 &
      ;;
    dnsdist)
      cat > "$work/dnsdist.conf" <<DD
setLocal("127.0.0.1:$port")
newServer({address="127.0.0.1:$knot_port"})
getPool(""):setCache(newPacketCache($dnsdist_entries, {maxTTL=3600}))
DD
      taskset -c $server_core dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >"$work/dnsdist.log" 2>&1 &
      ;;
  esac
  server_pid=$!
  for _ in $(seq 50); do
    "$bin/dnsload" -p $port --names 'ready.invalid.' -n 1 -t 0.2 --quiet 2>/dev/null | grep -q 'Queries answered: *1 ' && break
    sleep 0.1
  done
}
stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; }

load() { # secs seed outfile
  taskset -c $load_core "$bin/dnsload" -p $port --names "n{0..$((universe - 1))}.z.test." --zipf "$zipf" \
    --seed "$2" -l "$1" -q 200 -c 16 --cores $load_core --quiet > "$3" 2>&1 || true
}
field() { awk -F: -v k="$1" '$1 ~ k {gsub(/^ +/, "", $2); split($2, a, " "); print a[1]; exit}' "$2"; }

declare -A qps hit upq rss
for r in $(seq 1 "$rounds"); do
  for s in nodelocaldns unbound dnsdist; do
    start_server "$s"
    load "$warm" "$r" "$work/warm.txt"
    before=$(upstream_a)
    load "$measure" "$((r + 1000))" "$out/$s-round$r.txt"
    after=$(upstream_a)
    answered=$(field 'Queries answered' "$out/$s-round$r.txt")
    q=$(field 'Queries per second' "$out/$s-round$r.txt")
    up=$((after - before))
    h=$(awk -v u="$up" -v a="$answered" 'BEGIN {if (a > 0) printf "%.4f", 1 - u / a; else print 0}')
    ups=$(awk -v u="$up" -v t="$measure" 'BEGIN {printf "%.0f", u / t}')
    m=$(rss_kib "$server_pid")
    extra=""
    if [ "$s" = nodelocaldns ]; then
      extra=" entries=$(metric coredns_cache_entries) bytes=$(metric nodelocaldns_shard_cache_bytes) hits=$(metric coredns_cache_hits_total) misses=$(metric coredns_cache_misses_total)"
    fi
    stop_server
    qps[$s]+="$q "; hit[$s]+="$h "; upq[$s]+="$ups "; rss[$s]+="$m "
    echo "round $r $s: answered $answered, $q QPS, upstream $up ($ups/s), hit ratio $h, RSS $m KiB$extra" | tee -a "$out/rounds.txt"
  done
done

# Part 2: RSS per entry, ours.
fill() { # n
  start_server nodelocaldns $((4 * 1024 * 1024 * 1024)) $((2 * ($1 + fill_warm)))
  sleep 0.5
  local r0 r1 e0 e b u0 u1 load_pid
  if [ "$fill_warm" -gt 0 ]; then
    taskset -c $load_core "$bin/dnsload" -p $port --names "w{0..$((fill_warm - 1))}.z.test." -n 1 -q 200 -c 16 \
      --cores $load_core --quiet > "$out/fill-$1-warm.txt" 2>&1 || true
    sleep 0.5
  fi
  r0=$(rss_kib "$server_pid")
  e0=$(metric coredns_cache_entries)
  u0=$(upstream_a)
  taskset -c $load_core "$bin/dnsload" -p $port --names "f{0..$(($1 - 1))}.z.test." -n 1 -q 200 -c 16 \
    --cores $load_core --quiet > "$out/fill-$1.txt" 2>&1 & load_pid=$!
  while kill -0 "$load_pid" 2>/dev/null; do
    echo "t=$(date +%s) rss_kib=$(rss_kib "$server_pid") entries=$(metric coredns_cache_entries) misses=$(metric coredns_cache_misses_total) evictions=$(metric coredns_cache_evictions_total)"
    sleep 5
  done > "$out/fill-$1-progress.txt"
  wait "$load_pid" || true
  sleep 0.5
  r1=$(rss_kib "$server_pid")
  u1=$(upstream_a)
  e=$(($(metric coredns_cache_entries) - e0))
  b=$(metric nodelocaldns_shard_cache_bytes)
  echo "n=$1 warm=$fill_warm upstream_a=$((u1 - u0)) misses=$(metric coredns_cache_misses_total) hits=$(metric coredns_cache_hits_total)" \
    "entries=$e (+$e0 warm) evictions=$(metric coredns_cache_evictions_total) drops=$(metric coredns_cache_drops_total)" \
    "bytes=$b rss_kib=$r0..$r1" > "$out/fill-$1-accounting.txt"
  curl -s "http://127.0.0.1:$metrics_port/metrics" > "$out/fill-$1-metrics.txt"
  stop_server
  cp "$work/ours.log" "$out/fill-$1-server.log"
  awk -v n="$1" -v r0="$r0" -v r1="$r1" -v e="$e" -v e0="$e0" -v b="$b" 'BEGIN {
    per = (r1 - r0) * 1024 / e
    printf "| %d | %d | %d | %d | %.0f | %.0f | %.0f |\n", n, e, r0, r1, per, b / (e + e0), per - 18 }'
}
fills=$(for n in ${FILLS-100000 1000000}; do fill "$n"; done)

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else print a[int((NR+1)/2)]}'; }
{
  echo "# Cache efficiency under a Zipf workload, and RSS per entry ($(date -u +%FT%TZ))"
  echo
  echo "Command: \`bench/cache-zipf.sh $rounds $measure $warm $budget_mib $universe $zipf\`"
  echo
  if [ "$rounds" -gt 0 ]; then
  echo "## Zipf(s=$zipf) over $universe names, equal memory budget $budget_mib MiB"
  echo
  echo "Servers pinned to core $server_core, one thread/shard each, fresh per run; dnsload (-q 200 -c 16, closed loop)"
  echo "and knotd on core $load_core. ${warm} s warm-up, then ${measure} s measured. Budget: ours \`max_bytes $budget_bytes\`;"
  echo "unbound \`msg-cache-size\` + \`rrset-cache-size\` $((budget_bytes / 2)) each; dnsdist \`newPacketCache($dnsdist_entries)\`"
  echo "(budget / 300 B). Upstream queries = knotd's A-query counter delta; hit ratio = 1 − upstream / answered."
  echo "Medians of $rounds rounds (servers alternate within a round); per-round lines in rounds.txt."
  echo
  echo "| server | version | answered QPS | hit ratio | upstream q/s | RSS at end (KiB) |"
  echo "|---|---|---|---|---|---|"
  for s in nodelocaldns unbound dnsdist; do
    case $s in
      nodelocaldns) v="${OURS_BIN:-$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo +dirty)}";;
      dnsdist) v=$(dnsdist --version 2>/dev/null | head -1 | awk '{print $2}');;
      unbound) v=$(unbound -V 2>/dev/null | awk '/Version/ {print $2}');;
    esac
    echo "| $s | $v | $(echo "${qps[$s]}" | median) | $(echo "${hit[$s]}" | median) | $(echo "${upq[$s]}" | median) | $(echo "${rss[$s]}" | median) |"
  done
  echo
  fi
  echo "## RSS per cached entry (nodelocaldns, 1 shard)"
  echo
  echo "Binary: \`${OURS_BIN:-$bin/nodelocaldns}\` ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo +dirty) unless a baseline was given)."
  echo
  echo "Fresh server, \`max_bytes 4GiB\`, success capacity 2×(N + W); W = $fill_warm warm-up names \`w{i}.z.test.\` first (RSS before"
  echo "and entries counted after them), then N unique names \`f{0..N-1}.z.test. A\` asked once each"
  echo "(all misses). Overhead = ΔVmRSS / entries − 18 B (the answer's record bytes + TTL offset). Target ≤ 150 B."
  echo
  echo "| N | entries | RSS before (KiB) | RSS after (KiB) | ΔRSS per entry (B) | accounted per entry (B) | overhead beyond answer (B) |"
  echo "|---|---|---|---|---|---|---|"
  echo "$fills"
  echo
  echo "dnsload $("$bin/dnsload" --version 2>/dev/null | awk '{print $2}'); knotd $(knotd -V 2>/dev/null | awk '{print $NF}'); kernel $(uname -r); $(nproc) cores; shared, noisy machine."
} > "$out/README.md"
cat "$out/README.md"
