#!/usr/bin/env bash
# `make image`: builds the container image from the Dockerfile, by one of two paths
# to the same runtime layout (deploy/image/README.md):
#
#   IMAGE_FROM=registry  the Dockerfile's own stages: rust:1-slim-bookworm builds the
#                        binary, debian:bookworm-slim runs it (needs a registry);
#   IMAGE_FROM=local     no registry: the release binary is built on this host and
#                        imported as an image, the base is Debian bookworm made by
#                        debootstrap (with iptables and conntrack) and imported; the
#                        Dockerfile's run stage then assembles the same layout.
#
# Default: registry when a Docker daemon answers, local otherwise. IMAGE names the tag
# (default nodelocaldns:dev); ENGINE forces docker or podman; DEBIAN_MIRROR the mirror
# debootstrap uses; IMAGE_REBASE=1 makes the debootstrap base again.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${IMAGE:-nodelocaldns:dev}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm
base_tag="localhost/nodelocaldns-base:$suite"
binary_tag="localhost/nodelocaldns-binary:dev"
work="${CARGO_TARGET_DIR:-target}/image"

engine="${ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null 2>&1; then
    engine=podman
  else
    echo "make image: no container engine: install podman (apt-get install podman runc)" >&2
    echo "or start a Docker daemon. Nothing was built." >&2
    exit 1
  fi
fi
from="${IMAGE_FROM:-}"
if [ -z "$from" ]; then
  if [ "$engine" = docker ]; then from=registry; else from=local; fi
fi

# podman: runc, since crun refuses hybrid cgroup hierarchies on some hosts.
run_opts=()
[ "$engine" = podman ] && command -v runc >/dev/null 2>&1 && run_opts=(--runtime runc)

case "$from" in
  registry)
    echo "make image: $engine, registry path (Dockerfile stages)" >&2
    exec "$engine" build "${run_opts[@]}" -t "$image" -f Dockerfile . ;;
  local) ;;
  *) echo "make image: IMAGE_FROM must be registry or local, not '$from'" >&2; exit 2 ;;
esac

echo "make image: $engine, local path (host binary, debootstrap base)" >&2
mkdir -p "$work"
# The base: Debian with the node tools, trimmed like debian:bookworm-slim.
if [ "${IMAGE_REBASE:-0}" = 1 ] || ! "$engine" image exists "$base_tag" 2>/dev/null; then
  command -v debootstrap >/dev/null || {
    echo "make image: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  [ "$(id -u)" -eq 0 ] || { echo "make image: debootstrap needs root" >&2; exit 1; }
  rootfs="$work/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=iptables,conntrack "$suite" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    echo "make image: debootstrap failed, see $work/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
  tar -C "$rootfs" --numeric-owner -c . | "$engine" import - "$base_tag" >/dev/null
  rm -rf "$rootfs"
fi
# The binary, built here for the same Debian release as the base.
cargo build --release --locked --bin nodelocaldns
stage="$work/binary"
rm -rf "$stage"
install -D -m 0755 "${CARGO_TARGET_DIR:-target}/release/nodelocaldns" "$stage/out/nodelocaldns"
strip "$stage/out/nodelocaldns"
# Nothing changed since the image there was made: keep it (tests call this often).
inputs=$(cat "$stage/out/nodelocaldns" Dockerfile deploy/image/iptables-mode.sh | sha256sum | cut -c1-64)
label=org.nodelocaldns.inputs
if [ "$("$engine" image inspect --format "{{index .Labels \"$label\"}}" "$image" 2>/dev/null)" = "$inputs" ]; then
  echo "make image: $image is up to date" >&2
  exit 0
fi
tar -C "$stage" --numeric-owner -c out | "$engine" import - "$binary_tag" >/dev/null
"$engine" build "${run_opts[@]}" --build-arg "BINARY=$binary_tag" \
  --build-arg "RUN_BASE=$base_tag" --label "$label=$inputs" -t "$image" -f Dockerfile .
"$engine" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$image" >&2
