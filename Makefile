# rsvp — common tasks. `make test` is what CI runs (.ci/run).

CARGO ?= cargo

.PHONY: help run test test-deps ha-test lint fmt build bench bench-scale fuzz clean

# Tools the tests use beyond Rust, installed when missing: schemathesis
# from PyPI into .tools/venv; Chromium and ChromeDriver, and pg_auto_failover
# for the failover test, from Debian's packages (GitHub's runners already
# have Chrome and ChromeDriver).
TOOLS := .tools
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## Run rsvp-server on 127.0.0.1:50051 with the embedded store (nothing to install)
	$(CARGO) run --release --bin rsvp-server

test: lint test-deps ## Formatting, clippy, and every test (starts its own PostgreSQL and browsers)
	$(CARGO) test --workspace --all-features

test-deps: ## Install what the tests need beyond Rust, when missing
	@test -x $(TOOLS)/venv/bin/st || { python3 -m venv $(TOOLS)/venv && $(TOOLS)/venv/bin/pip install --quiet 'schemathesis==4.32.5' 'hypothesis==6.170.27'; }
	@{ command -v chromedriver && { command -v chromium || command -v google-chrome; }; } >/dev/null || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }
	@{ command -v pg_autoctl && ls /usr/lib/postgresql/*/lib/pgautofailover.so; } >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			postgresql-$$(ls /usr/lib/postgresql | sort -n | tail -1)-auto-failover pg-auto-failover-cli; }

HA_FAILOVERS ?= 5

ha-test: test-deps ## Failover figures (docs/operations.md): HA_FAILOVERS primary kills in a row, with fast and with default failure detection
	@for timings in fast default; do \
		log=target/ha-test-$$timings.log; echo "== $$timings failure detection (full output: $$log)"; \
		RSVP_FAILOVERS=$(HA_FAILOVERS) RSVP_HA_TIMINGS=$$timings $(CARGO) test -p rsvp-server --test failover -- --nocapture > $$log 2>&1; \
		rc=$$?; grep -E '^(formation|failover|[0-9]+ failover|test result)|panicked' $$log; \
		[ $$rc -eq 0 ] || exit $$rc; \
	done

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
