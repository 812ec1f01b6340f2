# Two entry points from a fresh clone: `make demo` and `make test`.
# Everything installs into .venv from this project's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/replicator: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/replicator

.PHONY: install demo test lint unit bench
install: $(BIN)/replicator

demo: install
	$(BIN)/replicator demo

lint: install
	$(BIN)/ruff check replicator connectors tests bench
	$(BIN)/ruff format --check replicator connectors tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench
