# Two set-up commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The package alone (make install / make run): reinstalled only when pyproject.toml changes.
RUN_STAMP := $(VENV)/.installed-run

.PHONY: help install dev run test lint typecheck unit bench clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

install: $(RUN_STAMP) ## Create .venv and install the package (once per pyproject.toml change)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

dev: $(STAMP) ## Install the package with the dev extras

run: $(RUN_STAMP) ## Run the nightly pipeline once on the embedded default (./mlops-data)
	$(BIN)/mlops run

lint: $(STAMP) ## Ruff, and the import layers of docs/architecture.md
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP) ## mypy
	$(BIN)/mypy

unit: $(STAMP) ## The pytest suite
	$(BIN)/pytest -q

test: lint typecheck unit ## Lint, type check and the whole test suite

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## Benchmarks with targets (~25 min; the anchors build their venvs once): writes benchmarks/results/
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.bench_controller
	$(BIN)/python -m benchmarks.bench_listing
	$(BIN)/python -m benchmarks.bench_dask
	$(BIN)/python -m benchmarks.drift_defaults
	$(BIN)/python -m benchmarks.bench_anchors

clean: ## Remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Container image, kind, Helm and plain-manifest targets.
include mk/deploy.mk
