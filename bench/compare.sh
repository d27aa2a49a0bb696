#!/usr/bin/env bash
# nodelocaldns against the caching DNS servers of Debian and a recvmmsg/sendmmsg
# echo floor, one core each, in one run. Every server is a caching forwarder for the
# same knotd zone; servers are pinned to core 0, dnsload (and knotd) to core 1.
#
# Per server and round (rounds alternate the order of the servers):
#   hit   cache-hit max QPS: closed loop over 1,000 warm names (-c 16 -q 500)
#   rate  open loop at RATE QPS over the warm names: p50/p99/p99.9 (dnsload --rate,
#         latency from the intended send time) and server CPU µs per answer, from
#         /proc/PID/task/*/schedstat (ns of CPU of every thread) before and after
#   miss  all-miss QPS: closed loop over unique random names (new seed every run);
#         ours forwards over TCP (force_tcp), the peers as they default (UDP)
# dnsdist and unbound get the 4 MiB receive buffer ours has by default; kresd,
# pdns-recursor and dnsmasq have no setting for it and keep the kernel's default.
# Besides ours as it ships, "nodelocaldns-nogso" is the same binary with --udp-gso=false:
# dnsload sends bursts from each of its 16 sockets, so most answers of a batch go to
# one client and leave as one GSO send; a node's pods (one or two queries per socket)
# get what the nogso row shows.
# Once per server, on a fresh cache: RSS growth (VmRSS) over 100,000 unique names.
#
#   bench/compare.sh [SECONDS_PER_RUN] [ROUNDS]      (make bench-compare)
#   env: RATE (50000), SERVERS (subset, space separated), OUT (record directory; the
#        default bench/runs/<date>-compare is never overwritten: -2, -3... are used),
#        PROFILE=1 (perf flame graphs of ours under the hit, rate and miss loads, into
#        the record; installs inferno with cargo if missing),
#        OURS_ARGS (extra flags for nodelocaldns, e.g. --udp-coalesce-usecs=100),
#        BASE_BIN (another build of nodelocaldns, e.g. of an earlier commit: adds the
#        server "nodelocaldns-base", configured as ours, for a before/after in one run),
#        QUIET_WAIT_SECS (5: how long each run waits for both cores to be 85 % idle),
#        IDLE_POLL=1 (hold /dev/cpu_dma_latency at 0 for the run, so idle cores poll
#        instead of halting; a diagnosis, not a comparison: see bench/wake-cost.sh)
#
# The record (README.md table, results.json, raw dnsload JSON, configs, versions,
# commands) goes under bench/runs/<date>-compare/.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${1:-5}
rounds=${2:-3}
rate=${RATE:-50000}
server_core=0
load_core=1
servers=${SERVERS:-"nodelocaldns nodelocaldns-nogso echo dnsdist unbound kresd pdns-recursor dnsmasq"}
target=${CARGO_TARGET_DIR:-target}

bench_install knot:knotd dnsdist:dnsdist unbound:unbound knot-resolver:kresd \
  pdns-recursor:pdns_recursor dnsmasq:dnsmasq
cargo build --release -q -p nodelocaldns -p dnsload
cargo build --release -q --manifest-path bench/echo/Cargo.toml --target-dir "$target"
dnsload="$target/release/dnsload"

if [ -z "${OUT:-}" ]; then
  out="bench/runs/$(date -u +%Y-%m-%d)-compare"
  n=2
  while [ -e "$out" ]; do out="bench/runs/$(date -u +%Y-%m-%d)-compare-$n"; n=$((n + 1)); done
else
  out=$OUT
fi
mkdir -p "$out/raw" "$out/conf"
work=$(mktemp -d)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

knot_port=25353
declare -A port=([nodelocaldns]=25360 [echo]=25361 [dnsdist]=25362 [unbound]=25363
  [kresd]=25364 [pdns-recursor]=25365 [dnsmasq]=25366 [nodelocaldns-nogso]=25367
  [nodelocaldns-base]=25368)

# Upstream: knotd (zone bench.: unbound and others refuse the special-use test.), 1,000 names for hits and a wildcard for unique (miss, RSS) names.
bench_zone bench. "$work/bench.zone" '*.miss A 192.0.2.7' '*.rss A 192.0.2.8'
cat > "$work/knot.conf" <<KNOT
server:
    rundir: "$work"
    listen: 127.0.0.1@$knot_port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$work"
zone:
  - domain: bench.
    file: "$work/bench.zone"
log:
  - target: stderr
    any: warning
KNOT
taskset -c $load_core knotd -c "$work/knot.conf" 2>"$work/knot.log" & pid[knotd]=$!

# --- server configurations -------------------------------------------------------
for s in nodelocaldns nodelocaldns-nogso nodelocaldns-base; do
  cat > "$work/$s.Corefile" <<CF
.:${port[$s]} {
    bind 127.0.0.1
    cache 3600 {
        success 200000
        denial 10000
    }
    forward . 127.0.0.1:$knot_port {
        force_tcp
    }
}
CF
done
bench_dnsdist_conf "$work/dnsdist.conf" "${port[dnsdist]}" "$knot_port"
bench_unbound_conf "$work/unbound.conf" "${port[unbound]}" "$knot_port" "$work"
mkdir -p "$work/kresd"
cat > "$work/kresd.conf" <<KR
net.ipv6 = false
net.listen('127.0.0.1', ${port[kresd]}, { kind = 'dns' })
cache.open(256 * MB, 'lmdb://$work/kresd/cache')
trust_anchors.remove('.')
policy.add(policy.all(policy.FORWARD('127.0.0.1@$knot_port')))
KR
cat > "$work/recursor.conf" <<PR
local-address=127.0.0.1
local-port=${port[pdns-recursor]}
forward-zones=bench=127.0.0.1:$knot_port
threads=1
pdns-distributes-queries=no
reuseport=no
daemon=no
socket-dir=$work
dnssec=off
dont-query=
allow-from=127.0.0.0/8
security-poll-suffix=
max-cache-entries=1000000
max-packetcache-entries=1000000
quiet=yes
PR
dnsmasq_args=(-k --conf-file=/dev/null --no-resolv --no-hosts --server=127.0.0.1#$knot_port
  --listen-address=127.0.0.1 --bind-interfaces --port=${port[dnsmasq]} --cache-size=200000
  --dns-forward-max=10000 --pid-file= --user=root)
cp "$work"/{nodelocaldns.Corefile,dnsdist.conf,unbound.conf,kresd.conf,recursor.conf,knot.conf,bench.zone} "$out/conf/"

declare -A cmd=(
  [nodelocaldns]="$target/release/nodelocaldns -conf $work/nodelocaldns.Corefile --shards 1${OURS_ARGS:+ $OURS_ARGS}"
  [nodelocaldns-nogso]="$target/release/nodelocaldns -conf $work/nodelocaldns-nogso.Corefile --shards 1 --udp-gso=false${OURS_ARGS:+ $OURS_ARGS}"
  [nodelocaldns-base]="${BASE_BIN:-missing-BASE_BIN} -conf $work/nodelocaldns-base.Corefile --shards 1"
  [echo]="$target/release/bench-echo 127.0.0.1:${port[echo]}"
  [dnsdist]="dnsdist --supervised --disable-syslog -C $work/dnsdist.conf"
  [unbound]="unbound -d -c $work/unbound.conf"
  [kresd]="kresd -n -c $work/kresd.conf $work/kresd"
  [pdns-recursor]="pdns_recursor --config-dir=$work"
  [dnsmasq]="dnsmasq ${dnsmasq_args[*]}"
)
version() {
  case $1 in
    nodelocaldns|nodelocaldns-nogso) echo "$(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)";;
    nodelocaldns-base) echo "$("${BASE_BIN:-false}" -version 2>/dev/null | awk '{print $2}') ($BASE_BIN)";;
    echo) echo "bench/echo $(git rev-parse --short HEAD)";;
    dnsdist) dnsdist --version 2>/dev/null | head -1 | awk '{print $2}';;
    unbound) unbound -V 2>/dev/null | awk '/Version/ {print $2}';;
    kresd) kresd --version 2>/dev/null | awk '{print $NF}';;
    pdns-recursor) dpkg-query -W -f '${Version}' pdns-recursor 2>/dev/null;;
    dnsmasq) dnsmasq --version 2>/dev/null | head -1 | awk '{print $3}';;
  esac
}

started=()
for s in $servers; do
  # shellcheck disable=SC2086
  taskset -c $server_core ${cmd[$s]} >"$out/raw/$s.log" 2>&1 & pid[$s]=$!
done
sleep 3
for s in $servers; do
  if kill -0 "${pid[$s]}" 2>/dev/null; then started+=("$s"); else
    echo "$s did not start (see raw/$s.log)" >&2; fi
done

for i in $(seq 0 999); do echo "w$i.bench A"; done > "$work/hit.txt"
load() { taskset -c $load_core nice -n -5 "$dnsload" -s 127.0.0.1 --cores $load_core -T 1 --quiet -t 2 "$@"; }
idle_pct() {
  local a b total=0 i
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  echo $(( (b[4] - a[4] + b[5] - a[5]) * 100 / (total > 0 ? total : 1) ))
}
# core_times CORE: the busy and total jiffies of one core so far.
core_times() {
  awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t}' /proc/stat
}
# busy_pct "BUSY0 TOTAL0" "BUSY1 TOTAL1": the core's busy % between two core_times.
busy_pct() {
  local a=($1) b=($2)
  echo $(( (b[0] - a[0]) * 100 / ((b[1] - a[1]) > 0 ? b[1] - a[1] : 1) ))
}
# Waits up to QUIET_WAIT_SECS for both cores to be ≥ 85 % idle; prints the idle %.
wait_quiet() {
  local waited=0 idle
  idle=$(idle_pct)
  while [ "$idle" -lt 85 ] && [ "$waited" -lt "${QUIET_WAIT_SECS:-5}" ]; do
    idle=$(idle_pct); waited=$((waited + 1))
  done
  echo "$idle"
}
cpu_ns() { # total CPU of every thread of a process, ns
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'
}
# The echo and ours without GSO only answer hits: no miss or RSS runs.
hit_and_rate_only() { [ "$1" = echo ] || [ "$1" = nodelocaldns-nogso ]; }
rss_kb() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }
meta() { echo "$1" >> "$out/runs.tsv"; }
: > "$out/runs.tsv"
bench_idle_poll
echo "$(date -u +%FT%TZ) load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" > "$out/load.txt"

# Warm every cache with the hit names; RSS growth over 100k new names.
for s in "${started[@]}"; do
  load -p "${port[$s]}" -d "$work/hit.txt" -n 3 -c 4 -q 100 > /dev/null 2>&1 || true
  hit_and_rate_only "$s" && continue
  before=$(rss_kb "${pid[$s]}")
  load -p "${port[$s]}" --random-names 100000 --random-suffix rss.bench. --seed 7 -n 1 -c 8 -q 200 \
    --json "$out/raw/$s-rss.json" > /dev/null 2>&1 || true
  sleep 1
  after=$(rss_kb "${pid[$s]}")
  meta "$s	rss	0	$before	$after	-"
  echo "$s: RSS $before kB -> $after kB over 100k names" >&2
done

rotate() { local first=$1; shift; echo "$@" "$first"; }
order="${started[*]}"
for r in $(seq 1 "$rounds"); do
  for s in $order; do
    p=${port[$s]}
    idle=$(wait_quiet)
    l0=$(core_times $load_core); s0=$(core_times $server_core); c0=$(cpu_ns "${pid[$s]}")
    load -p "$p" -d "$work/hit.txt" -l "$secs" -c 16 -q 500 --json "$out/raw/$s-hit-$r.json" > /dev/null 2>&1 || true
    c1=$(cpu_ns "${pid[$s]}")
    # Both cores' busy % and the server's CPU over the run: a server core below 100 %
    # while the load core is at 100 % means dnsload was the limit, not the server.
    meta "$s	hit	$r	$(busy_pct "$l0" "$(core_times $load_core)")	-	$idle	$(busy_pct "$s0" "$(core_times $server_core)")	$((c1 - c0))"
    idle=$(wait_quiet)
    c0=$(cpu_ns "${pid[$s]}")
    load -p "$p" -d "$work/hit.txt" -l "$secs" -c 16 --rate "$rate" --json "$out/raw/$s-rate-$r.json" > /dev/null 2>&1 || true
    c1=$(cpu_ns "${pid[$s]}")
    meta "$s	rate	$r	$c0	$c1	$idle"
    if ! hit_and_rate_only "$s"; then
      idle=$(wait_quiet)
      load -p "$p" --random-names 1000000 --random-suffix "r$r.miss.bench." --seed "$((r * 100 + ${#s}))" \
        -l "$secs" -c 16 -q 500 --json "$out/raw/$s-miss-$r.json" > /dev/null 2>&1 || true
      meta "$s	miss	$r	-	-	$idle"
    fi
    echo "round $r $s done" >&2
  done
  # shellcheck disable=SC2086
  order=$(rotate $order)
done
echo "$(date -u +%FT%TZ) load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/load.txt"

if [ "${PROFILE:-0}" = 1 ] && [[ " ${started[*]} " == *" nodelocaldns "* ]]; then
  command -v inferno-flamegraph >/dev/null || cargo install -q --locked inferno ||
    echo "could not install inferno: no flame graph" >&2
  # flame NAME TITLE LOAD_ARGS...: 4 s perf profile of ours under that load, as
  # ours-NAME-flame.svg (and the folded stacks).
  flame() {
    local name=$1 title=$2 lp; shift 2
    load -p "${port[nodelocaldns]}" -l 6 "$@" > /dev/null 2>&1 & lp=$!
    sleep 1
    perf record -F 2999 -g --call-graph dwarf,16384 -e cpu-clock -p "${pid[nodelocaldns]}" \
      -o "$work/perf.data" -- sleep 4 > /dev/null 2>&1 || true
    wait $lp || true
    command -v inferno-collapse-perf >/dev/null || return 0
    perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$out/ours-$name.folded" &&
      inferno-flamegraph --title "$title" < "$out/ours-$name.folded" > "$out/ours-$name-flame.svg"
  }
  flame hit "nodelocaldns cache hits, closed loop, 1 shard" -d "$work/hit.txt" -c 16 -q 500
  flame rate "nodelocaldns cache hits at $rate QPS, 1 shard" -d "$work/hit.txt" -c 16 --rate "$rate"
  flame miss "nodelocaldns all-miss over TCP to knotd, 1 shard" --random-names 1000000 \
    --random-suffix prof.miss.bench. --seed 5 -c 16 -q 500
fi

{
  for s in "${started[@]}"; do echo "$s	$(version "$s")	${cmd[$s]}"; done
} > "$out/versions.tsv"
for s in $servers; do
  [[ " ${started[*]} " == *" $s "* ]] || echo "$s	not started	${cmd[$s]}" >> "$out/versions.tsv"
done
{
  echo "bench/compare.sh $secs $rounds (RATE=$rate SERVERS=\"$servers\")"
  echo "dnsload: $("$dnsload" --version 2>/dev/null || echo '?'); kernel $(uname -r); $(nproc) cores"
  [ "${IDLE_POLL:-0}" = 1 ] && echo "IDLE_POLL=1: idle cores polled (/dev/cpu_dma_latency held at 0), not halted"
  echo "hit:  dnsload -s 127.0.0.1 -p PORT -d hit.txt -l $secs -c 16 -q 500 -T 1 --cores $load_core -t 2"
  echo "rate: dnsload -s 127.0.0.1 -p PORT -d hit.txt -l $secs -c 16 --rate $rate -T 1 --cores $load_core -t 2"
  echo "miss: dnsload -s 127.0.0.1 -p PORT --random-names 1000000 --random-suffix rROUND.miss.bench. --seed S -l $secs -c 16 -q 500 -T 1 --cores $load_core -t 2"
  echo "rss:  dnsload -s 127.0.0.1 -p PORT --random-names 100000 --random-suffix rss.bench. --seed 7 -n 1 -c 8 -q 200"
} > "$out/commands.txt"
python3 bench/compare-report.py "$out" "$rate" "$secs" "$rounds"
gzip -9f "$out"/raw/*.json "$out"/*.folded 2>/dev/null || true
cat "$out/README.md"
