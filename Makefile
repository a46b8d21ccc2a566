# authban: `make run` for the demo, `make test` for the test suite.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: all deps build run test lint bench clean fuzz asan

all: build

deps:
	@scripts/deps.sh

build: deps
	@scripts/build.sh

run: build
	@scripts/demo.sh

# Unit, property and integration tests (real nginx, worker_processes >= 2).
test: build
	@scripts/deps.sh python3 python3-prometheus-client
	@scripts/fetch-fail2ban.sh
	timeout 1800 cargo test --release --workspace -- --test-threads=4

# Benchmarks (bench/README.md): prints a table, writes bench/results.md.
bench: build
	@scripts/deps.sh wrk valgrind util-linux
	timeout --kill-after=10 900 cargo bench --bench authban

# Fuzz targets in fuzz/ (cargo-fuzz, libFuzzer), FUZZ_SECONDS (default 60)
# each, one after another; fails if any crashes. scripts/fuzz.sh.
fuzz: deps
	@scripts/fuzz.sh

# nginx built with AddressSanitizer (target/asan/build/), the module
# against it, and the integration suite run on it. scripts/asan.sh.
asan: deps
	@scripts/deps.sh python3 python3-prometheus-client
	@scripts/fetch-fail2ban.sh
	@scripts/asan.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf build
