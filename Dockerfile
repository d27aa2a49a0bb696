# syntax=docker/dockerfile:1
# nodelocaldns image: the binary, iptables (nf_tables and legacy backends), conntrack
# (for `nodelocaldns doctor`) and nothing else. Build with `make image`.

# --- build: the release binary -------------------------------------------------
FROM rust:1-slim-bookworm AS build
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

# --- run: debian-slim with the node tools ---------------------------------------
FROM debian:bookworm-slim AS run
# iptables brings iptables-nft and iptables-legacy; the entrypoint picks the one the
# node already uses (as kube-proxy's iptables-wrapper does).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables conntrack \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/nodelocaldns /usr/local/bin/nodelocaldns
COPY deploy/image/iptables-mode.sh /usr/local/bin/iptables-mode.sh
# node-cache's ports: DNS, CoreDNS metrics, health, ready, setup metrics.
EXPOSE 53/udp 53/tcp 9253 8080 8181 9353
ENTRYPOINT ["/usr/local/bin/iptables-mode.sh", "/usr/local/bin/nodelocaldns"]
