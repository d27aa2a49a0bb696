#!/usr/bin/env bash
# usage: rate-wakes.sh BIN|echo [unused] [RATE] [SECS]
# One server (nodelocaldns --shards 1, or bench-echo) on core 0, knotd and dnsload on
# core 1, 1,000 warm names, dnsload open loop at RATE; prints each server thread's CPU
# and context switches (voluntary = wake-ups after blocking) and CPU µs per answer.
# IDLE_POLL=1 holds /dev/cpu_dma_latency at 0 for the run.
set -u
if [ "${IDLE_POLL:-0}" = 1 ]; then exec {qos}>/dev/cpu_dma_latency; printf '\x00\x00\x00\x00' >&"$qos"; fi
bin=$1; mode=${2:-cpu}; rate=${3:-50000}; secs=${4:-5}
T=${CARGO_TARGET_DIR:-target}/release
w=$(mktemp -d)
kp=25453; p=25460
{
  echo '$ORIGIN bench.'; echo '$TTL 3600'
  echo '@ SOA ns.bench. admin.bench. 1 3600 600 86400 3600'
  echo '@ NS ns.bench.'; echo 'ns A 192.0.2.53'
  for i in $(seq 0 999); do echo "w$i A 192.0.2.$((i % 250 + 1))"; done
} > $w/bench.zone
cat > $w/knot.conf <<K
server:
    rundir: "$w"
    listen: 127.0.0.1@$kp
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$w"
zone:
  - domain: bench.
    file: "$w/bench.zone"
K
cat > $w/Corefile <<C
.:$p {
    bind 127.0.0.1
    cache 3600 {
        success 200000
    }
    forward . 127.0.0.1:$kp {
        force_tcp
    }
}
C
export PATH=$PATH:/usr/sbin
taskset -c 1 knotd -c $w/knot.conf >/dev/null 2>&1 & kpid=$!
if [ "$bin" = echo ]; then taskset -c 0 $T/bench-echo 127.0.0.1:$p & spid=$!
else taskset -c 0 $bin -conf $w/Corefile --shards 1 ${EXTRA:-} >$w/server.log 2>&1 & spid=$!; fi
sleep 1.5
for i in $(seq 0 999); do echo "w$i.bench A"; done > $w/hit.txt
load() { taskset -c 1 nice -n -5 $T/dnsload -s 127.0.0.1 -p $p --cores 1 -T 1 --quiet -t 2 "$@"; }
load -d $w/hit.txt -n 3 -c 4 -q 100 >/dev/null 2>&1
cpu() { cat /proc/$spid/task/*/schedstat | awk '{s+=$1} END {printf "%.0f", s}'; }
c0=$(cpu)
if [ "$rate" = max ]; then load -d $w/hit.txt -l $secs -c 16 -q 500 --json $w/r.json >/dev/null 2>&1
else load -d $w/hit.txt -l $secs -c 16 --rate $rate --json $w/r.json >/dev/null 2>&1; fi
c1=$(cpu)
for t in /proc/$spid/task/*; do echo "thread $(cat $t/comm) cpu_ms=$(awk '{printf "%.1f",$1/1e6}' $t/schedstat) $(grep -h ctxt $t/status | tr '\n' ' ')"; done
python3 - $w/r.json $c0 $c1 <<'PY'
import json,sys
j=json.load(open(sys.argv[1]))
a=j["counters"]["answered"]; cpu=(int(sys.argv[3])-int(sys.argv[2]))/1000
lat=j["latency"]
print(f"qps={j['qps']:.0f} answered={a} loss={j['loss_pct']} cpu_us/q={cpu/a:.2f} p50={lat['p50_us']} p99={lat['p99_us']} p999={lat['p99_9_us']}")
PY

kill $spid $kpid; wait 2>/dev/null; rm -rf $w
