#!/usr/bin/env bash
# `make image`: builds the container image with the first engine that works (docker,
# podman, buildah), or says that there is none. IMAGE names the tag.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${IMAGE:-nodelocaldns:dev}"
for engine in docker podman; do
  if command -v "$engine" >/dev/null 2>&1 && "$engine" info >/dev/null 2>&1; then
    exec "$engine" build -t "$image" -f Dockerfile .
  fi
done
if command -v buildah >/dev/null 2>&1; then
  exec buildah bud -t "$image" -f Dockerfile .
fi
echo "make image: no container engine available (docker/podman need a running daemon or" >&2
echo "service; buildah is not installed). Nothing was built. The Dockerfile is checked" >&2
echo "statically by 'cargo test --test deploy'." >&2
exit 1
