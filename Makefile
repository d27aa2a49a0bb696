# Thin entry points; the logic lives in ci/.
.PHONY: run test deps build lint bench bench-core bench-compare fuzz clean

CONF ?= ci/default.Corefile

run: build
	./target/release/nodelocaldns -conf $(CONF)

build:
	cargo build --release --workspace

test:
	ci/test.sh

deps:
	ci/deps.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench-core: build
	bench/core-vs-peers.sh

clean:
	cargo clean

# nodelocaldns vs dnsdist, unbound, kresd, pdns-recursor, dnsmasq and the echo floor,
# one core each; record under bench/runs/<date>-compare/. SECS per run, ROUNDS.
SECS ?= 5
ROUNDS ?= 3
bench-compare:
	bench/compare.sh $(SECS) $(ROUNDS)
