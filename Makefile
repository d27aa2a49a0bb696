# Thin entry points; the logic lives in ci/.
.PHONY: run test deps build lint bench-core bench-compare clean

# `make run` serves the embedded default Corefile (ci/default.Corefile, compiled in);
# `make run ARGS="-conf my.Corefile --shards 1"` passes flags through.
run: build
	./target/release/nodelocaldns $(ARGS)

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

.PHONY: image
image:
	ci/image.sh

# `make tune EXPERIMENT=tuning/experiments/shards-rcvbuf/experiment.toml` prints the
# plan and current values; add APPLY=--apply to run it (see tuning/README.md).
EXPERIMENT ?= tuning/experiments/shards-rcvbuf/experiment.toml
.PHONY: tune
tune: build
	./target/release/dnsload campaign $(EXPERIMENT) $(APPLY)

.PHONY: fuzz
# `make fuzz SECS=600`: every fuzz target for SECS seconds (cargo-fuzz, see fuzz/).
fuzz:
	ci/fuzz.sh $(SECS)

.PHONY: bench-compare
# nodelocaldns vs dnsdist, unbound, kresd, pdns-recursor, dnsmasq and the echo floor,
# one core each; record under bench/runs/<date>-compare/. BENCH_SECS per run, ROUNDS.
BENCH_SECS ?= 5
ROUNDS ?= 3
bench-compare:
	bench/compare.sh $(BENCH_SECS) $(ROUNDS)
