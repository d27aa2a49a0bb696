# syntax=docker/dockerfile:1
# nodelocaldns image: the binary, iptables (nf_tables and legacy backends), conntrack
# (for `nodelocaldns doctor`) and nothing else. Build with `make image`.
#
# Two ways to the same runtime layout (see deploy/image/README.md):
# - registry (the default for users): the build stage compiles the binary, the run
#   stage starts from debian:bookworm-slim and installs the node tools;
# - local (machines without a registry): `ci/image.sh` passes BINARY (an image holding
#   /out/nodelocaldns built on the host) and RUN_BASE (a Debian bookworm root file
#   system made by debootstrap with the node tools already in it).
ARG BINARY=build
ARG RUN_BASE=docker.io/library/debian:bookworm-slim

# --- build: the release binary -------------------------------------------------
FROM docker.io/library/rust:1-slim-bookworm AS build
WORKDIR /src
# glommio's build script compiles its bundled liburing with the C toolchain.
# Unpinned on purpose: bookworm's point releases carry the security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked --bin nodelocaldns \
 && install -D -m 0755 target/release/nodelocaldns /out/nodelocaldns \
 && strip /out/nodelocaldns

# --- binary: the build stage, or the host's build imported as an image ----------
# hadolint ignore=DL3006
FROM ${BINARY} AS binary

# --- run: debian-slim with the node tools ---------------------------------------
# hadolint ignore=DL3006
FROM ${RUN_BASE} AS run
# iptables brings iptables-nft and iptables-legacy; the entrypoint picks the one the
# node already uses (as kube-proxy's iptables-wrapper does). A base that has them
# already (the local path) installs nothing.
# hadolint ignore=DL3008
RUN if ! command -v iptables-legacy >/dev/null || ! command -v conntrack >/dev/null; then \
      apt-get update \
      && apt-get install -y --no-install-recommends iptables conntrack \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=binary /out/nodelocaldns /usr/local/bin/nodelocaldns
COPY deploy/image/iptables-mode.sh /usr/local/bin/iptables-mode.sh
# node-cache's ports: DNS, CoreDNS metrics, health, ready, setup metrics.
EXPOSE 53/udp 53/tcp 9253 8080 8181 9353
ENTRYPOINT ["/usr/local/bin/iptables-mode.sh", "/usr/local/bin/nodelocaldns"]
