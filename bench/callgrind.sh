#!/usr/bin/env bash
# Instructions per cache hit, repeatable on a busy machine: nodelocaldns (1 shard)
# runs under callgrind, its cache is warmed with 1,000 names from knotd, the counters
# are zeroed, then dnsload sends QUERIES hits (closed loop) and the user-space
# instructions (Ir) of the server are divided by the answers. Also writes the
# profile as an SVG call graph (gprof2dot + graphviz).
#
#   bench/callgrind.sh [OUT_DIR] [QUERIES]     env: LABEL (file name prefix),
#   OURS_BIN (profile this server binary, e.g. a baseline build, instead of this tree's),
#   KNOT_PORT, PORT (loopback ports of knotd and the server; 25453, 25454)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
out=${1:-"bench/runs/$(date -u +%Y-%m-%d)-callgrind"}
queries=${2:-200000}
label=${LABEL:-ours}
target=${CARGO_TARGET_DIR:-target}
command -v valgrind >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
command -v dot >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz
command -v gprof2dot >/dev/null || pip install -q gprof2dot
cargo build --release -q -p nodelocaldns -p dnsload
ours=${OURS_BIN:-"$target/release/nodelocaldns"}
mkdir -p "$out"
bench_work
knot_port=${KNOT_PORT:-25453}; port=${PORT:-25454}
bench_zone bench. "$work/bench.zone"
bench_knot_conf "$work" "$knot_port" bench.
knotd -c "$work/knot.conf" 2>/dev/null & pids+=($!)
cat > "$work/Corefile" <<CF
.:$port {
    bind 127.0.0.1
    cache 3600
    forward . 127.0.0.1:$knot_port {
        force_tcp
    }
}
CF
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" --dump-instr=no \
  "$ours" -conf "$work/Corefile" --shards 1 2>"$work/vg.log" & pids+=($!)
# Zero and dump this valgrind only: without a pid, callgrind_control acts on every
# callgrind process of the machine, another bench run's too.
vg=$!
for _ in $(seq 1 60); do
  grep -q "Listening\|listening\|serving" "$work/vg.log" 2>/dev/null && break
  sleep 1
done
sleep 3
for i in $(seq 0 999); do echo "w$i.bench A"; done > "$work/hit.txt"
# Warm until a whole pass is answered NOERROR, so every measured query is a hit.
for _ in 1 2 3 4 5; do
  "$target/release/dnsload" -s 127.0.0.1 -p $port -d "$work/hit.txt" -n 1 -c 4 -q 50 -t 5 --quiet --no-pin \
    --json "$work/warm.json" > /dev/null
  python3 -c "import json,sys; j=json.load(open('$work/warm.json')); sys.exit(j['rcodes'].get('NOERROR',0) != 1000)" && break
done
callgrind_control -z "$vg" > /dev/null
"$target/release/dnsload" -s 127.0.0.1 -p $port -d "$work/hit.txt" -n $((queries / 1000)) -c 4 -q 64 -t 5 \
  --quiet --no-pin --json "$work/load.json" > /dev/null
callgrind_control -d "$vg" > /dev/null
sleep 1
answered=$(python3 -c "import json; print(json.load(open('$work/load.json'))['rcodes'].get('NOERROR', 0))")
# The shard thread's dump is the one with the most instructions.
file=$(for f in "$work"/cg.*; do echo "$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}') $f"; done | sort -n | tail -1 | cut -d' ' -f2)
total=$(callgrind_annotate "$file" | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
cp "$file" "$out/$label.callgrind"
callgrind_annotate --inclusive=yes "$file" > "$work/incl.txt" || true
callgrind_annotate "$file" > "$work/self.txt" || true
sed -n 1,80p "$work/incl.txt" > "$out/$label-inclusive.txt"
sed -n 1,80p "$work/self.txt" > "$out/$label-self.txt"
gprof2dot -f callgrind -n 1 -e 0.5 "$file" 2>/dev/null | dot -Tsvg -o "$out/$label-callgraph.svg" || true
per=$(python3 -c "print(f'{$total / max($answered, 1):.0f}')")
echo "$label	$(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty)	$answered	$total	$per" >> "$out/instructions.tsv"
echo "$label: $answered answers, $total instructions, $per instructions/query"
