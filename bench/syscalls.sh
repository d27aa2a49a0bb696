#!/bin/bash
# System calls of a nodelocaldns build during 6 s of a 2k point on the node's shape.
#   sysc.sh LABEL BINARY   -> strace -c output in ./sysc-LABEL.txt
set -euo pipefail
label=$1 bin=$(realpath "$2") here=$PWD
cd "$(git rev-parse --show-toplevel)"
tmp=$(mktemp -d)
(OUT=$tmp/run OURS_BASE=$bin SECS=20 ROUNDS=1 RATES="2000" CHURN_RATES= DUAL_RATES= CLOSED=0 \
  SERVERS="nodelocaldns-base" timeout 600 bench/node.sh > "$tmp/log" 2>&1 &)
sleep 14
pid=$(pgrep -f "Corefile.base" | head -1)
timeout 6 strace -c -f -p "$pid" -o "$here/sysc-$label.txt" > /dev/null 2>&1 || true
sleep 15
rm -rf "$tmp"
