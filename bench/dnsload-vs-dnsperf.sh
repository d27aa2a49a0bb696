#!/usr/bin/env bash
# dnsload vs dnsperf, side by side, on one machine: the target pinned to core 0,
# the generator (one thread) pinned to core 1, alternating runs, medians reported.
#
# Targets: the GSO "reflector" example (echoes queries as answers, cheaper per
# query than any generator, so it measures the generator), knotd (a real
# authoritative server with one UDP worker) and bench/echo (plain recvmmsg/sendmmsg,
# no GSO).
#
# Usage: bench/dnsload-vs-dnsperf.sh [RUNS] [SECONDS]
#   env: TARGETS (default "reflector knot echo"), QUIET_WAIT_SECS, NICE, OUTSTANDING, CLIENTS
# Writes bench/runs/<date>-dnsload-vs-dnsperf/{README.md,raw/*}. Loopback only.
set -euo pipefail

RUNS=${1:-3}
SECS=${2:-5}
PORT_REFLECTOR=${PORT_REFLECTOR:-5400}
PORT_KNOT=${PORT_KNOT:-5401}
PORT_ECHO=${PORT_ECHO:-5402}
TARGETS=${TARGETS:-"reflector knot echo"}
OUTSTANDING=${OUTSTANDING:-500}
CLIENTS=${CLIENTS:-4}
# The machine is shared (other builds run at the same time); a higher CFS weight for
# the target and the generator, the same for both tools, keeps them from being
# time-sliced with unrelated work. 0 disables it.
NICE=${NICE:--10}
RUN="nice -n $NICE"

cd "$(git rev-parse --show-toplevel)"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p dnsload --bins --examples >/dev/null
cargo build --release -q --manifest-path bench/echo/Cargo.toml --target-dir "$TARGET_DIR"
DNSLOAD="$TARGET_DIR/release/dnsload"
ECHO="$TARGET_DIR/release/bench-echo"
REFLECTOR="$TARGET_DIR/release/examples/reflector"
. bench/lib.sh
bench_install dnsperf:dnsperf knot:knotd
command -v dnsperf >/dev/null || { echo "dnsperf missing: apt-get install dnsperf" >&2; exit 1; }
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)
[ -x "$KNOTD" ] || { echo "knotd missing: apt-get install knot" >&2; exit 1; }

OUT=${OUT:-"bench/runs/$(date -u +%Y-%m-%d)-dnsload-vs-dnsperf"}
RAW="$OUT/raw"
mkdir -p "$RAW"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Queries: names that exist in the knot zone (NOERROR) and some that do not.
QUERIES="$OUT/queries.txt"
{
  echo "; 100 existing A names, 20 AAAA, 20 missing"
  for i in $(seq 0 99); do echo "svc$i.example. A"; done
  for i in $(seq 0 19); do echo "www.example. AAAA"; done
  for i in $(seq 0 19); do echo "missing$i.example. A"; done
} >"$QUERIES"

# knotd config and zone in a scratch dir.
{
  printf '$ORIGIN example.\n$TTL 300\n@ SOA ns.example. admin.example. 1 3600 600 86400 300\n@ NS ns.example.\n'
  printf 'ns A 127.0.0.1\nwww A 192.0.2.1\nwww AAAA 2001:db8::1\n'
  for i in $(seq 0 99); do echo "svc$i A 192.0.2.$i"; done
} >"$WORK/example.zone"
cat >"$WORK/knot.conf" <<CONF
server:
  listen: 127.0.0.1@$PORT_KNOT
  rundir: $WORK
  udp-workers: 1
  tcp-workers: 1
database:
  storage: $WORK
zone:
  - domain: example.
    file: $WORK/example.zone
log:
  - target: stderr
    any: error
CONF

$RUN taskset -c 0 "$REFLECTOR" "127.0.0.1:$PORT_REFLECTOR" 2>/dev/null & PIDS+=($!)
$RUN taskset -c 0 "$KNOTD" -c "$WORK/knot.conf" 2>/dev/null & PIDS+=($!)
$RUN taskset -c 0 "$ECHO" "127.0.0.1:$PORT_ECHO" 2>/dev/null & PIDS+=($!)
sleep 1

DNSPERF_ARGS="-s 127.0.0.1 -d $QUERIES -l $SECS -c $CLIENTS -q $OUTSTANDING -T 1"
DNSLOAD_ARGS="-s 127.0.0.1 -d $QUERIES -l $SECS -c $CLIENTS -q $OUTSTANDING -T 1 --cores 1 --quiet"

# Percent of both cores idle over one second.
idle_pct() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  local total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  echo $(( (b[4] - a[4] + b[5] - a[5]) * 100 / (total > 0 ? total : 1) ))
}
# Waits (up to QUIET_WAIT_SECS) for the machine to be mostly idle before a run, so
# two runs compare the tools rather than whatever else was running; prints the idle %.
QUIET_WAIT_SECS=${QUIET_WAIT_SECS:-60}
wait_quiet() {
  local waited=0 idle
  idle=$(idle_pct)
  while [ "$idle" -lt 85 ] && [ "$waited" -lt "$QUIET_WAIT_SECS" ]; do
    idle=$(idle_pct); waited=$((waited + 1))
  done
  echo "$idle"
}

qps_of() { grep -m1 'Queries per second' "$1" | awk '{print $NF}'; }
lost_of() { grep -m1 'Queries lost' "$1" | sed 's/.*(\(.*\)%).*/\1/'; }
median() { sort -g | awk '{a[NR]=$1} END {printf "%.0f", (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
best() { sort -g | tail -1 | awk '{printf "%.0f", $1}'; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TABLE="$WORK/table.md"
: >"$TABLE"
declare -A QPS
for target in $TARGETS; do
  case $target in
    knot) port=$PORT_KNOT ;;
    echo) port=$PORT_ECHO ;;
    *) port=$PORT_REFLECTOR ;;
  esac
  for run in $(seq 1 "$RUNS"); do
    for tool in dnsperf dnsload; do
      f="$RAW/$target-$tool-$run.txt"
      idle=$(wait_quiet)
      if [ "$tool" = dnsperf ]; then
        $RUN taskset -c 1 dnsperf $DNSPERF_ARGS -p "$port" >"$f" 2>&1
      else
        $RUN taskset -c 1 "$DNSLOAD" $DNSLOAD_ARGS -p "$port" >"$f" 2>&1
      fi
      q=$(qps_of "$f"); l=$(lost_of "$f")
      QPS[$target-$tool]+="$q "
      echo "| $target | $tool | $run | $q | $l | $idle |" >>"$TABLE"
      echo "$target $tool run $run: $q qps, lost $l%, idle before $idle%" >&2
    done
  done
done

runs_of() { echo "${QPS[$1]}" | tr ' ' '\n' | grep .; }
summary() {
  local t=$1 p l bp bl
  p=$(runs_of "$t-dnsperf" | median); l=$(runs_of "$t-dnsload" | median)
  bp=$(runs_of "$t-dnsperf" | best); bl=$(runs_of "$t-dnsload" | best)
  echo "| $t | $p | $l | $(awk -v a="$l" -v b="$p" 'BEGIN {printf "%.2f", a/b}') | $bp | $bl | $(awk -v a="$bl" -v b="$bp" 'BEGIN {printf "%.2f", a/b}') |"
}

{
  echo "# dnsload vs dnsperf, $(date -u +%Y-%m-%d)"
  echo
  echo "Max answered QPS of one generator thread pinned to core 1 against a target pinned to"
  echo "core 0 on loopback; $RUNS alternating runs of $SECS s each, medians. Produced by"
  echo "\`bench/dnsload-vs-dnsperf.sh $RUNS $SECS\`; raw output of every run in \`raw/\`."
  echo
  echo "## Medians and best runs"
  echo
  echo "The machine is shared with other work (see the load averages below), which only ever"
  echo "lowers a run's number; the best run of each tool shows what it can do, the median"
  echo "what to expect on a busy box."
  echo
  echo "| target | dnsperf median QPS | dnsload median QPS | ratio | dnsperf best QPS | dnsload best QPS | ratio |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  for t in $TARGETS; do summary "$t"; done
  echo
  echo "## Commands"
  echo
  echo '```'
  echo "# every process below runs under: $RUN"
  echo "taskset -c 0 reflector 127.0.0.1:$PORT_REFLECTOR     # cargo build --release -p dnsload --examples"
  echo "taskset -c 0 knotd -c knot.conf                  # udp-workers: 1, zone example. (svc0..svc99, www)"
  echo "taskset -c 0 bench-echo 127.0.0.1:$PORT_ECHO        # bench/echo: recvmmsg/sendmmsg, no GSO"
  echo "taskset -c 1 dnsperf $DNSPERF_ARGS -p PORT" | sed "s|$QUERIES|queries.txt|"
  echo "taskset -c 1 dnsload $DNSLOAD_ARGS -p PORT" | sed "s|$QUERIES|queries.txt|"
  echo '```'
  echo
  echo "## Every run"
  echo
  echo "Idle % is both cores' idle share in the second before the run (the script waits up"
  echo "to ${QUIET_WAIT_SECS} s for it to reach 85 %)."
  echo
  echo "| target | tool | run | QPS | lost % | idle % before |"
  echo "| --- | --- | --- | --- | --- | --- |"
  cat "$TABLE"
  echo
  echo "## Versions and machine"
  echo
  echo '```'
  echo "dnsload $("$DNSLOAD" --version | awk '{print $2}') at commit $(git rev-parse --short HEAD)"
  dnsperf -h 2>&1 | grep -i '^version' | sed 's/^/dnsperf /'
  "$KNOTD" --version
  rustc --version
  echo "kernel $(uname -r), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "load average at start: $LOAD_START"
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo '```'
  echo
  echo "Notes: dnsload sends with sendmmsg and UDP GSO (equal-length queries of a batch cross the"
  echo "IP stack once); dnsperf sends one datagram per sendto. The reflector answers with"
  echo "recvmmsg/sendmmsg+GSO so that it is cheaper per query than either generator; knotd with"
  echo "one UDP worker is the slower, real target, where the server's core is the limit."
} >"$OUT/README.md"
sed -i "s|$QUERIES|queries.txt|g" "$RAW"/*.txt
echo "wrote $OUT/README.md" >&2
cat "$OUT/README.md"
