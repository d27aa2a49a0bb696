#!/usr/bin/env bash
# System calls of one nodelocaldns build on the node's shape: `strace -c -f` attached
# for 6 s to the server of a 2k QPS point of bench/node.sh (the build runs as
# `nodelocaldns-base`, alone, 20 s point, attached 14 s after the server starts). For counts per answer
# before and after a change; CPU figures of a traced run mean nothing.
#
#   bench/syscalls.sh BINARY OUT_FILE
set -euo pipefail
[ $# -eq 2 ] || { sed -n 2,7p "$0"; exit 2; }
bin=$(realpath "$1")
out=$(realpath -m "$2")
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_install strace:strace
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OUT=$tmp/run OURS_BASE=$bin SECS=20 ROUNDS=1 RATES="2000" CHURN_RATES= DUAL_RATES= CLOSED=0 \
  SERVERS="nodelocaldns-base" timeout 600 bench/node.sh > "$tmp/log" 2>&1 &
run=$!
# 14 s after the server starts (its 5 s warm-up, then 9 s into the point); setting
# up the namespace and the zones takes a varying time before that.
pid=
for _ in $(seq 120); do
  pid=$(pgrep -f -- "Corefile.base" | head -1 || true)
  [ -n "$pid" ] && break
  sleep 0.5
done
[ -n "$pid" ] || { echo "bench/syscalls.sh: the server did not start (log: $out.node.log)" >&2; cp "$tmp/log" "$out.node.log"; exit 1; }
sleep 14
timeout 6 strace -c -f -p "$pid" -o "$out" > /dev/null 2>&1 || true
wait "$run" || echo "bench/node.sh: exit $? (log: kept as $out.node.log)" >&2
cp "$tmp/log" "$out.node.log" 2>/dev/null || true
