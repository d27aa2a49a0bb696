#!/usr/bin/env bash
# Runs the cache-compact measurements in sequence (under one bench lock).
set -x
cd .
export CARGO_TARGET_DIR=target
R=bench/runs/2026-11-22-cache-compact
base=target/baseline-ce96daf/nodelocaldns
FILLS="100000 1000000" OUT=$R/baseline-ce96daf OURS_BIN=$base ROUNDS=0 bench/cache-zipf.sh 0
FILLS="100000 1000000" FILL_WARM=20000 OUT=$R/fills-warm bench/cache-zipf.sh 0
FILLS="100000 1000000" FILL_WARM=20000 OUT=$R/baseline-ce96daf-warm OURS_BIN=$base bench/cache-zipf.sh 0
FILLS="" OUT=$R/zipf bench/cache-zipf.sh 3 15 5 4 1000000 1.0
