# Two entry points from a fresh clone: `make demo` and `make test`.
# Everything installs into .venv from this project's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Test-only services from npm (dynalite), pinned by tests/services/package-lock.json.
SERVICES := tests/services
SERVICES_STAMP := $(SERVICES)/node_modules/.installed

$(BIN)/replicator: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/replicator

$(SERVICES_STAMP): $(SERVICES)/package.json $(SERVICES)/package-lock.json
	npm ci --prefix $(SERVICES) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(SERVICES_STAMP)

.PHONY: install test-services demo test lint unit bench
install: $(BIN)/replicator

test-services: $(SERVICES_STAMP)

demo: install
	$(BIN)/replicator demo

lint: install
	$(BIN)/ruff check replicator connectors tests bench
	$(BIN)/ruff format --check replicator connectors tests bench
	$(BIN)/mypy

test: lint test-services
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench
