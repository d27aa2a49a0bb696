#!/usr/bin/env bash
# Is dnsload's tail honest at any socket count? Open loop against bench/echo (one
# core), at RATES x SOCKETS, each run captured on loopback with tcpdump: the capture's
# query-to-answer times (kernel packet stamps, read out with tshark, matched by client
# port and ID) are the reference for the same traffic. dnsload's p99 counts from the
# intended send time, so it is only near the reference when dnsload itself sends on
# time; its own schedule lag is reported beside it. The echo runs on core 0, dnsload
# on core 1, both SCHED_FIFO (RT=0 for plain CFS): the machine is shared, and the
# point is the tool, not whoever else runs.
#
# The capture holds every query: dnsload may send several due queries as one UDP
# GSO super-datagram, which the tap sees before it is split, so query datagrams are
# cut into their equal-length segments here (each with its own ID). Each run waits
# for tcpdump to listen before it starts, and for it to write out its ring after
# (its last, unfinished block is handed over only when the block's 1 s timeout
# has run out).
#
#   bench/dnsload-tails.sh [SECONDS_PER_RUN] [ROUNDS]
#   env: RATES ("10000 50000"), SOCKETS ("16 256 1024"), OUT (record directory,
#        default bench/runs/<date>-dnsload-tails), RT (1), DNSLOAD (a dnsload
#        binary to measure instead of this tree's, e.g. an older build), APPEND
#        (1: add this call's rounds to OUT's runs.tsv and table, numbered on, so
#        rounds of two builds can alternate, one call per round and build)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs=${1:-3}
rounds=${2:-3}
rates=${RATES:-"10000 50000"}
sockets=${SOCKETS:-"16 256 1024"}
target=${CARGO_TARGET_DIR:-target}
out=${OUT:-bench/runs/$(date -u +%Y-%m-%d)-dnsload-tails}
port=25471
prio=()
[ "${RT:-1}" = 1 ] && prio=(chrt -f 50)

bench_install tcpdump:tcpdump tshark:tshark
cargo build --release -q -p dnsload
cargo build --release -q --manifest-path bench/echo/Cargo.toml --target-dir "$target"
dnsload=${DNSLOAD:-$target/release/dnsload}
mkdir -p "$out/raw"
bench_work

for i in $(seq 0 999); do echo "w$i.example. A"; done >"$work/names.txt"
"${prio[@]}" taskset -c 0 "$target/release/bench-echo" "127.0.0.1:$port" & pids+=($!)
sleep 0.5

# Query-to-answer times from a capture: each answer is matched to the latest
# query with the same client port and ID (kernel packet stamps, so this is what
# the wire saw); dnsload reuses an ID only once its query is answered or timed
# out, so a query whose answer the capture missed is not matched to a later
# answer. A query datagram is cut into segments of its first
# query's length (a GSO super-datagram's segments are of one length; the tap
# stamps them all with the time the super-datagram left). Prints: queries seen,
# answers matched, p50 p99 p99.9 max (ms).
capture_quantiles() {
  tshark -r "$1" -T fields -E separator=' ' \
    -e frame.time_epoch -e udp.srcport -e udp.dstport -e udp.payload 2>/dev/null |
    python3 -c '
import sys
port = int(sys.argv[1])
def queries(payload):
    i = 12
    while i < len(payload) and payload[i] != 0:
        i += payload[i] + 1
    seg = i + 5
    if seg > len(payload):
        return [payload]
    return [payload[k:k + seg] for k in range(0, len(payload), seg)]
asked = {}
lat, seen = [], 0
for line in sys.stdin:
    f = line.split()
    if len(f) < 4:
        continue
    t, src, dst, payload = float(f[0]), int(f[1]), int(f[2]), bytes.fromhex(f[3])
    if dst == port:
        for q in queries(payload):
            asked[(src, q[:2])] = t
            seen += 1
    elif src == port and (dst, payload[:2]) in asked:
        lat.append(t - asked.pop((dst, payload[:2])))
lat.sort()
if not lat:
    lat.append(0.0)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(seen, len(lat), *("%.3f" % q(p) for p in (0.5, 0.99, 0.999)), "%.3f" % (lat[-1] * 1000))' "$port"
}
# Waits until FILE has stopped growing (tcpdump has written out its ring), at
# most 20 s.
settled() {
  local size=-1 now
  for _ in $(seq 40); do
    now=$(stat -c %s "$1" 2>/dev/null || echo 0)
    [ "$now" = "$size" ] && return
    size=$now
    sleep 0.5
  done
}
# Time the hypervisor ran something else on either CPU (steal, /proc/stat),
# in clock ticks: a run's own stalls that neither tool nor server caused.
steal_ticks() { awk '$1 == "cpu" { print $9 }' /proc/stat; }
# field of dnsload's JSON report, in ms.
json_ms() { python3 -c "import json,sys; print('%.3f' % (json.load(open('$1'))$2 / 1000))"; }

runs="$out/runs.tsv"
first=1
if [ "${APPEND:-0}" = 1 ] && [ -s "$runs" ]; then
  first=$(($(awk -F'\t' 'NR > 1 && $3 > m { m = $3 } END { print m + 0 }' "$runs") + 1))
else
printf 'rate\tsockets\tround\tload1\tdnsload_sent\tcapture_q\tcapture_n\tcap_p50_ms\tcap_p99_ms\tcap_p99_9_ms\tcap_max_ms\tdnsload_p50_ms\tdnsload_p99_ms\tdnsload_p99_9_ms\tdnsload_max_ms\tlag_p50_ms\tlag_p99_ms\tlag_max_ms\tsteal_ms\n' >"$runs"
fi
for round in $(seq "$first" $((first + rounds - 1))); do
  for rate in $rates; do
    for c in $sockets; do
      name="r$rate-c$c-$round"
      tcpdump -i lo -B 131072 -s 65535 -w "$work/$name.pcap" -U "udp port $port" 2>"$work/$name.err" &
      dump=$!
      for _ in $(seq 100); do grep -q 'listening on' "$work/$name.err" && break; sleep 0.1; done
      sleep 0.3
      load=$(cut -d' ' -f1 /proc/loadavg)
      steal0=$(steal_ticks)
      "${prio[@]}" taskset -c 1 "$dnsload" -s 127.0.0.1 -p "$port" -d "$work/names.txt" \
        --rate "$rate" -c "$c" -l "$secs" -t 2 --cores 1 --quiet \
        --json "$work/$name.json" >"$out/raw/$name.txt"
      steal=$((($(steal_ticks) - steal0) * 1000 / $(getconf CLK_TCK)))
      sleep 1.5
      settled "$work/$name.pcap"
      kill -INT "$dump"; wait "$dump" 2>/dev/null || true
      read -r seen n c50 c99 c999 cmax < <(capture_quantiles "$work/$name.pcap")
      j="$work/$name.json"
      sent=$(python3 -c "import json; print(json.load(open('$j'))['counters']['sent'])")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rate" "$c" "$round" "$load" \
        "$sent" "$seen" "$n" "$c50" "$c99" "$c999" "$cmax" \
        "$(json_ms "$j" "['latency']['p50_us']")" "$(json_ms "$j" "['latency']['p99_us']")" \
        "$(json_ms "$j" "['latency']['p99_9_us']")" "$(json_ms "$j" "['latency']['max_us']")" \
        "$(json_ms "$j" "['send_lag']['p50_us']")" "$(json_ms "$j" "['send_lag']['p99_us']")" \
        "$(json_ms "$j" "['send_lag']['max_us']")" "$steal" | tee -a "$runs"
      rm -f "$work/$name.pcap"
    done
  done
done

# Table: per (rate, sockets), medians over rounds of the capture's and dnsload's p99.
python3 - "$runs" >"$out/table.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
cells = {}
for r in rows:
    cells.setdefault((int(r['rate']), int(r['sockets'])), []).append(r)
print('| rate QPS | sockets | capture p50 ms | dnsload p50 ms | capture p99 ms | dnsload p99 ms | ratio p99 | dnsload lag p99 ms | runs within 1.5x | steal ms |')
print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
for (rate, c), rs in sorted(cells.items()):
    med = lambda k: statistics.median(float(r[k]) for r in rs)
    ok = sum(float(r['dnsload_p99_ms']) <= 1.5 * float(r['cap_p99_ms']) for r in rs)
    print(f"| {rate} | {c} | {med('cap_p50_ms'):.3f} | {med('dnsload_p50_ms'):.3f} | {med('cap_p99_ms'):.3f} | "
          f"{med('dnsload_p99_ms'):.3f} | {med('dnsload_p99_ms') / max(med('cap_p99_ms'), 1e-9):.2f} | "
          f"{med('lag_p99_ms'):.3f} | {ok}/{len(rs)} | {med('steal_ms'):.0f} |")
PY
{
  echo "bench/dnsload-tails.sh $secs $rounds  (RATES=\"$rates\" SOCKETS=\"$sockets\" RT=${RT:-1})"
  echo "echo:    ${prio[*]} taskset -c 0 bench-echo 127.0.0.1:$port"
  echo "capture: tcpdump -i lo -B 131072 -s 65535 -w RUN.pcap -U 'udp port $port'"
  echo "         tshark -r RUN.pcap -T fields -e frame.time_epoch -e udp.srcport -e udp.dstport -e udp.payload"
  echo "         (query datagrams cut into GSO segments; each answer matched to the latest query with the same client port and ID)"
  echo "dnsload: ${prio[*]} taskset -c 1 dnsload -s 127.0.0.1 -p $port -d names.txt --rate RATE -c SOCKETS -l $secs -t 2 --cores 1 --quiet --json RUN.json"
  echo "dnsload $("$dnsload" --version | awk '{print $2}') ${DNSLOAD:+($DNSLOAD) }at $(git rev-parse --short HEAD)"
  tcpdump --version 2>&1 | head -1
  tshark --version | head -1
  echo "kernel $(uname -r), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/commands.txt"
cat "$out/table.md"
