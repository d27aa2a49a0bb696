#!/usr/bin/env bash
# The whole suite: install what is missing, build, then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast
