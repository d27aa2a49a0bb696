#!/usr/bin/env bash
# Runs the cargo-fuzz targets, each for SECS seconds (default 600), two at a time,
# niced, keeping what they find in fuzz/corpus/<target> and crashes in
# fuzz/artifacts/<target>. Stable Rust: cargo-fuzz's nightly flags (-Zsanitizer,
# sancov) are allowed with RUSTC_BOOTSTRAP=1. Logs: fuzz/logs/<target>.log.
#   ci/fuzz.sh [SECS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire_query cache_answer corefile configmap)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p logs
nice cargo fuzz build -O
run() {
    nice cargo fuzz run -O "$1" "corpus/$1" -- -max_total_time="$secs" -max_len=4096 \
        -print_final_stats=1 >"logs/$1.log" 2>&1
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[i]}" &
    [ -n "${targets[i+1]:-}" ] && run "${targets[i+1]}" &
    wait
done
grep -H -E "stat::number_of_executed_units|^==.*ERROR|panicked" logs/*.log || true
