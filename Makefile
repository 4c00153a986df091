# ferrogate: one entry point for every task. `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080

.DEFAULT_GOAL := help
.PHONY: help install serve test lint test-rust test-python services fuzz bench wheel clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Dependencies are installed once per change of pyproject.toml; the Rust core is rebuilt
# (incrementally) on every install, so an edit to rust_core/ is always picked up.
$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet 'maturin>=1.7,<2'
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --extras dev,load
	touch $@

install: $(VENV)/.deps ## venv, dependencies, and the Rust core built from source (release)
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release --skip-install

serve: install ## install, then start the gateway on its embedded default (port $(PORT); --dev unless FERROGATE_MASTER_KEY is set)
	$(BIN)/ferrogate serve --port $(PORT) $(if $(FERROGATE_MASTER_KEY),,--dev)

services: ## start PostgreSQL and Redis if they are not running (installs them if absent)
	bash scripts/services.sh

lint: install ## ruff, mypy --strict, stubtest, the import-linter layer contracts, cargo fmt and clippy
	$(BIN)/ruff check python tests load benches
	$(BIN)/ruff format --check python tests load benches
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m mypy.stubtest ferrogate._core
	cargo fmt --all --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings

test-rust: ## Rust unit and integration tests (no Python needed)
	cargo test --quiet

test-python: install services ## the pytest suite (unit, integration, end to end)
	$(BIN)/pytest -q

test: install services lint test-rust test-python ## everything CI runs

# The suite runs the fuzz tests with few cases (seconds); this runs them long. PROPTEST_CASES and
# FERROGATE_FUZZ_EXAMPLES are per test; the results of a run are recorded in docs/fuzzing.md.
FUZZ_CASES ?= 20000
FUZZ_EXAMPLES ?= 5000
fuzz: install services ## long fuzz run: proptest (PROPTEST_CASES=$(FUZZ_CASES)) and hypothesis (FERROGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES))
	time PROPTEST_CASES=$(FUZZ_CASES) cargo test --quiet --test 'fuzz_*'
	time FERROGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider -o timeout=1800 \
		tests/e2e/test_fuzz_http.py tests/e2e/test_fuzz_admin.py tests/e2e/test_fuzz_mcp.py

bench: install ## the throughput/latency benchmark (see BENCHMARKS.md)
	$(BIN)/python load/bench.py

wheel: ## build a release wheel into dist/
	$(BIN)/maturin build --release --out dist

clean: ## remove build output and the venv
	rm -rf target dist $(VENV) python/ferrogate/*.so
