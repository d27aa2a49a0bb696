#!/usr/bin/env bash
# UDP flood at 2x the measured capacity for 30 s against the release binary, with a
# knotd upstream on loopback: the process must stay up, RSS stay bounded, answered
# queries keep a bounded p99, and drops are counted (kernel per-socket drops).
# Record: bench/runs/<date>-flood/. Usage: flock /tmp/bench.lock bench/flood.sh [SECS]
# (the lock keeps it from overlapping another benchmark on a shared machine).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
out=bench/runs/$(date +%F)-flood
mkdir -p "$out"
bin=${CARGO_TARGET_DIR:-target}/release
cargo build --release --workspace >/dev/null
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
# Free ports (fixed ones could be taken by another engineer's run on a shared machine).
free_port() { python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
kport=$(free_port); port=$(free_port)
cat >"$dir/knot.conf" <<K
server:
    rundir: $dir
    listen: 127.0.0.1@$kport
control:
    listen: $dir/knot.sock
database:
    storage: $dir
template:
  - id: default
    storage: $dir
zone:
  - domain: example.test.
    file: z.zone
K
{ printf '$TTL 300\n@ SOA ns hostmaster 1 3600 600 86400 30\n@ NS ns\nns A 127.0.0.1\n'
  for i in $(seq 0 999); do echo "w$i A 10.0.$((i/256)).$((i%256))"; done; } >"$dir/z.zone"
knotd -c "$dir/knot.conf" >/dev/null 2>&1 &
printf '.:%s {\n bind 127.0.0.1\n cache 30\n forward . 127.0.0.1:%s\n}\n' $port $kport >"$dir/Corefile"
"$bin/nodelocaldns" -conf "$dir/Corefile" --shards 1 >"$dir/cache.log" 2>&1 &
pid=$!
# Ready: the server answers a name from knotd (cache.log kept in the record if not).
for _ in $(seq 50); do
    dig +short +time=1 +tries=1 @127.0.0.1 -p $port w1.example.test 2>/dev/null | grep -q . && break
    sleep 0.2
done
dig +short +time=1 +tries=1 @127.0.0.1 -p $port w1.example.test | grep -q . ||
    { cp "$dir/cache.log" "$out/cache.log"; echo "flood.sh: the server does not answer" >&2; exit 1; }
names='w{0..999}.example.test'
# Warm the cache first: a cold first ramp step (1,000 misses at once) can fail the
# ramp's 1 % loss limit on answers still in flight when the step ends.
"$bin/dnsload" -s 127.0.0.1 -p $port --names "$names" --rate 5000 -l 2 --quiet >/dev/null
# Capacity: the ramp's knee (loss <= 1 %).
"$bin/dnsload" -s 127.0.0.1 -p $port --names "$names" --ramp --ramp-start 20000 --ramp-step 20000 \
    --ramp-step-secs 2 --ramp-max-loss 1 --quiet --json "$out/ramp.json" >/dev/null
knee=$(python3 -c "import json;print(int(json.load(open('$out/ramp.json'))['ramp']['knee_qps'] or 0))")
if [ "$knee" -le 20000 ]; then
    echo "flood.sh: ramp knee ${knee} QPS, far below this server's capacity: the ramp was disturbed (a busy machine?)" >&2
    exit 1
fi
rate=$((knee * 2))
# Kernel drops of the server's sockets (/proc/net/udp, last column), before and after.
server_drops() { awk -v p=":$(printf %04X $port)" 'NR>1 && $2 ~ p"$" {s+=$NF} END{print s+0}' /proc/net/udp; }
rss0=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
drops0=$(server_drops)
# -t 3: an answer delayed by the full queue still counts as answered, so lost = dropped.
"$bin/dnsload" -s 127.0.0.1 -p $port --names "$names" --rate $rate -l "$secs" -t 3 --quiet \
    --json "$out/flood.json" >/dev/null
rss1=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
hwm=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
drops=$(( $(server_drops) - drops0 ))
kill -0 $pid  # still up
printf 'kernel %s, %s CPUs, commit %s\n' "$(uname -r)" "$(nproc)" "$(git rev-parse --short HEAD)" >"$out/machine.txt"
python3 - "$out" "$knee" "$rate" "$rss0" "$rss1" "$hwm" "$drops" "$secs" <<'P' | tee "$out/README.md"
import json, sys
out, knee, rate, rss0, rss1, hwm, drops, secs = sys.argv[1:]
r = json.load(open(f"{out}/flood.json")); c = r["counters"]; l = r["latency"]
machine = open(f"{out}/machine.txt").read().strip()
print(f"# UDP flood: 2x capacity for {secs} s\n")
print("Command: `flock /tmp/bench.lock bench/flood.sh " + secs + "` (release build, 1 shard,")
print("knotd upstream on loopback, names w{0..999}.example.test, cache warmed before the ramp;")
print(f"dnsload and the server share the machine: {machine}).\n")
print("Capacity is the knee of `dnsload --ramp` (ramp.json.gz: last rate with loss <= 1 %);")
print("the flood runs open loop at twice that (flood.json.gz), timeout 3 s, so lost = dropped.\n")
print(f"| capacity (knee) | offered | sent | answered | lost | server socket drops | p50 / p99 answered | RSS before → after (peak) |")
print(f"|---|---|---|---|---|---|---|---|")
print(f"| {float(knee):.0f} QPS | {rate} QPS | {c['sent']} | {c['answered']} | {c['lost']} | {drops} | {l['p50_us']/1000:.2f} / {l['p99_us']/1000:.1f} ms | {rss0} → {rss1} KiB ({hwm}) |")
print("\nThe process stayed up (`kill -0` after the flood). Losses beyond the server socket")
print("drops are drops at the load generator's own sockets (the two share 2 cores).")
P
gzip -9f "$out/flood.json" "$out/ramp.json"
