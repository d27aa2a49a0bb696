#!/usr/bin/env bash
# The whole suite: install what is missing, build, then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
cargo build --workspace --all-targets
# The image the simnode tests run (podman, local path: host binary, debootstrap base).
ci/image.sh
cargo nextest run --workspace --no-fail-fast
