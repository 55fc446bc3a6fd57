# rsvp — common tasks. `make test` is what CI runs (.ci/run).

CARGO ?= cargo

.PHONY: help run test lint fmt build bench bench-scale fuzz clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## Run rsvp-server on 127.0.0.1:50051 with the embedded store (nothing to install)
	$(CARGO) run --release --bin rsvp-server

test: lint ## Formatting, clippy, and every test (starts its own PostgreSQL)
	$(CARGO) test --workspace --all-features

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

bench: ## The performance baseline (docs/performance.md): throwaway PostgreSQL, pgbench, rsvp bench
	$(CARGO) build --release --bins
	$(CARGO) run --release --example bench -p rsvp-server
	$(CARGO) bench -p abi --bench edge

bench-scale: ## A Query streaming 100,000 rows of one resource out of 10M, with and without the keyset indexes
	$(CARGO) build --release --bins
	$(CARGO) run --release --example query_scale -p rsvp-server

FUZZ_SECONDS ?= 300

fuzz: ## Fuzz request decoding and validation for FUZZ_SECONDS (not part of CI)
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	# cargo-fuzz needs unstable compiler flags (sanitizers); RUSTC_BOOTSTRAP
	# allows them on a stable toolchain.
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run requests -- -max_total_time=$(FUZZ_SECONDS)

build: ## Build everything in release mode
	$(CARGO) build --workspace --release

clean: ## Remove build output
	$(CARGO) clean
