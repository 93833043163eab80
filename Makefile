# tierstream — `make help` lists the targets. Every target installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DURATION ?= 60
PYTEST_ARGS ?=

.PHONY: help
help: ## Show this help
	@awk 'BEGIN{FS=":.*## "; printf "Usage: make <target> [VAR=value]\n\n"} /^[a-zA-Z_-]+:.*## /{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "\nVariables: DURATION=$(DURATION) (demo seconds), PYTEST_ARGS, PYTHON=$(PYTHON)\n"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tierstream needs Python >= 3.11 (found " + sys.version.split()[0] + "); set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $@

.PHONY: install
install: $(STAMP) ## Create .venv and install tierstream with its dev tools

.PHONY: redis
redis: ## Check that redis-server is available (install it with apt-get when root and missing)
	@bash deploy/scripts/ensure-redis.sh

.PHONY: prometheus
prometheus: ## Install Prometheus (promtool) from the Debian package when missing
	@bash deploy/scripts/ensure-prometheus.sh

.PHONY: lint
lint: $(STAMP) ## ruff over the whole tree
	$(BIN)/ruff check .

.PHONY: native
native: $(STAMP) ## Compile the hot path with mypyc into .native/ (a no-op when current; without a C compiler the source runs)
	-@$(BIN)/python -m tierstream.native build

.PHONY: typecheck
typecheck: $(STAMP) ## mypy over the compiled hot-path modules (mypyc turns their annotations into runtime checks)
	$(BIN)/mypy $$($(BIN)/python -c 'from scoring.accel import COMPILED; print(*COMPILED)')

.PHONY: test
test: $(STAMP) native redis prometheus ## Unit, integration (real broker + Redis) and deploy-config tests
	$(BIN)/pytest -q $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) native ## Only the unit tests (no broker, no Redis)
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

.PHONY: demo
demo: $(STAMP) native redis ## Run the product on the embedded stack with a synthetic stream (DURATION=seconds)
	$(BIN)/tierstream demo --duration $(DURATION)

.PHONY: schemas
schemas: $(STAMP) ## Export every contract document (JSON Schema, AsyncAPI, OpenAPI) to docs/
	$(BIN)/tierstream schemas --out docs/schemas

.PHONY: bench
bench: $(STAMP) native redis ## Benchmarks (scoring, state, stream throughput, API); results in bench/results/
	$(BIN)/python bench/bench_scoring.py
	$(BIN)/python bench/bench_state.py
	$(BIN)/python bench/bench_hotpath.py
	$(BIN)/python bench/bench_decision_ipc.py
	$(BIN)/python bench/bench_redis_write.py
	$(BIN)/python bench/bench_throughput.py --recovery
	$(BIN)/python bench/bench_recovery.py
	$(BIN)/python bench/bench_api.py

.PHONY: clean
clean: ## Remove the virtual environment and local state
	rm -rf $(VENV) var .native .pytest_cache .ruff_cache .mypy_cache *.egg-info
