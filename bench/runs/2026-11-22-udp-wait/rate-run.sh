#!/usr/bin/env bash
# usage: run.sh BIN [mode: cpu|strace|perf] [rate] [secs]
set -u
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
case $mode in
  strace) strace -c -f -p $spid -o $w/strace.txt & st=$!; sleep 0.5;;
  perf) perf record -F 4999 -g -e cpu-clock -p $spid -o perf.data -- sleep $((secs-1)) >/dev/null 2>&1 & st=$!;;
  perfstat) perf stat -e 'syscalls:sys_enter_*' -p $spid -o $w/pstat.txt -- sleep $((secs-1)) >/dev/null 2>&1 & st=$!;;
esac
if [ "$rate" = max ]; then load -d $w/hit.txt -l $secs -c 16 -q 500 --json $w/r.json >/dev/null 2>&1
else load -d $w/hit.txt -l $secs -c 16 --rate $rate --json $w/r.json >/dev/null 2>&1; fi
c1=$(cpu)
case $mode in strace) kill -INT $st; wait $st; sort -k4 -n -r $w/strace.txt | head -25;; perf|perfstat) wait $st;; esac
[ -f $w/pstat.txt ] && grep syscalls $w/pstat.txt | grep -v "  0  " | sort -n -r | head -12
python3 - $w/r.json $c0 $c1 <<'PY'
import json,sys
j=json.load(open(sys.argv[1]))
a=j["counters"]["answered"]; cpu=(int(sys.argv[3])-int(sys.argv[2]))/1000
lat=j["latency"]
print(f"qps={j['qps']:.0f} answered={a} loss={j['loss_pct']} cpu_us/q={cpu/a:.2f} p50={lat['p50_us']} p99={lat['p99_us']} p999={lat['p99_9_us']}")
PY

kill $spid $kpid; wait 2>/dev/null; rm -rf $w
