# authban: `make run` for the demo, `make test` for the test suite.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: all deps build run test lint bench clean fuzz asan module install-module deb test-deploy test-docker

all: build

deps:
	@scripts/deps.sh

build: deps
	@scripts/build.sh

run: build
	@scripts/demo.sh

# Unit, property and integration tests (real nginx, worker_processes >= 2).
test: build
	@scripts/deps.sh python3 python3-venv python3-prometheus-client openssl nftables
	@scripts/deps-redis.sh
	@scripts/fetch-fail2ban.sh
	@scripts/fetch-crowdsec.sh
	@scripts/fetch-cs.sh
	timeout 1800 cargo test --release --workspace -- --test-threads=4
	@$(MAKE) --no-print-directory test-deploy
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory test-docker; else echo "test-docker: skipped (no Docker daemon answers: docker info failed)"; fi

# authban with the nginx users already have (tests/deploy.sh; root, Debian 12):
# Debian's nginx with `make module`, `make install-module`, the
# --add-dynamic-module build, and the .deb installed and purged.
test-deploy: build
	@scripts/deps.sh python3 python3-venv python3-prometheus-client openssl
	@scripts/deps-redis.sh
	@scripts/fetch-fail2ban.sh
	@scripts/fetch-crowdsec.sh
	@scripts/fetch-cs.sh
	timeout 1800 tests/deploy.sh

# The Dockerfile's images on private Docker networks (tests/docker/run.sh):
# makes the base images with debootstrap when no registry has them, builds
# the authban and mock-cloudstack targets, and runs the scenarios.
test-docker:
	timeout --kill-after=30 2400 tests/docker/run.sh

# Benchmarks (bench/README.md): prints a table, writes bench/results.md.
bench: build
	@scripts/deps.sh wrk valgrind util-linux
	@scripts/deps-redis.sh
	@scripts/fetch-crowdsec.sh
	timeout --kill-after=10 1500 cargo bench --bench authban

# Fuzz targets in fuzz/ (cargo-fuzz, libFuzzer), FUZZ_SECONDS (default 60)
# each, one after another; fails if any crashes. scripts/fuzz.sh.
fuzz: deps
	@scripts/fuzz.sh

# nginx built with AddressSanitizer (target/asan/build/), the module
# against it, and the integration suite run on it. scripts/asan.sh.
asan: deps
	@scripts/deps.sh python3 python3-venv python3-prometheus-client openssl
	@scripts/deps-redis.sh
	@scripts/fetch-fail2ban.sh
	@scripts/fetch-cs.sh
	@scripts/asan.sh

# Build authban for an nginx that is already installed (README: Install):
# `make module NGINX=/usr/sbin/nginx` -> build/nginx-VERSION/ngx_http_authban_module.so
module: deps
	@scripts/module.sh build "$(NGINX)"

install-module: deps
	@scripts/module.sh install "$(NGINX)"

# The Debian package libnginx-mod-http-authban for Debian's nginx
# (build/deb/*.deb; scripts/deb.sh).
deb: deps
	@scripts/deb.sh "$(NGINX)"

lint:
	cargo fmt --all -- --check
	cargo clippy --release --workspace --all-targets -- -D warnings

clean:
	cargo clean
	rm -rf build
