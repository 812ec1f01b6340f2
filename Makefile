# Two entry points from a fresh clone: `make demo` and `make test`.
# Everything installs into .venv from this project's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Test-only services from npm (dynalite), pinned by tests/services/package-lock.json.
SERVICES := tests/services
SERVICES_STAMP := $(SERVICES)/node_modules/.installed

# Python dependencies come from the hash-pinned lock (requirements/README.md), pip and the build
# backend (setuptools) included; then the project itself, without dependencies or a build env.
LOCKS := requirements/dev.lock requirements/runtime.lock
# pip-compile flags (requirements/README.md says why each): hashes, no extras syntax, the build
# backend pinned, no machine-local index/find-links lines; the project's own self-reference (its
# dev extra names langgraph-replicator[embedded,cosmos]) is the one "unsafe" package left out.
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --all-build-deps --no-emit-index-url \
	--no-emit-find-links --no-allow-unsafe --unsafe-package langgraph-replicator
LOCK_ARGS ?=

$(BIN)/replicator: pyproject.toml $(LOCKS)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(BIN)/replicator

$(SERVICES_STAMP): $(SERVICES)/package.json $(SERVICES)/package-lock.json
	npm ci --prefix $(SERVICES) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(SERVICES_STAMP)

.PHONY: install test-services demo test lint unit bench lock audit
install: $(BIN)/replicator

# Regenerate the locks from pyproject.toml, keeping every pin that still fits (pip-compile
# prefers the existing lock). Upgrade on purpose: make lock LOCK_ARGS="--upgrade-package NAME".
# The runtime lock is constrained by the dev lock, so a package has one version in both.
lock: install
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) \
		--extra dev -o requirements/dev.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) $(LOCK_ARGS) \
		--extra cosmos -c requirements/dev.lock -o requirements/runtime.lock pyproject.toml

# Known vulnerabilities in the locked dependencies (pip-audit, PyPI's data): exits non-zero on one.
# AUDIT_ARGS="--strict" also fails on a pin that could not be audited; "--ignore-vuln ID" to waive.
AUDIT_ARGS ?=
audit: install
	$(BIN)/python requirements/audit.py $(AUDIT_ARGS) $(LOCKS)

test-services: $(SERVICES_STAMP)

demo: install
	$(BIN)/replicator demo

lint: install
	$(BIN)/ruff check replicator connectors tests bench
	$(BIN)/ruff format --check replicator connectors tests bench
	$(BIN)/mypy

test: lint test-services
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=12

unit: install
	$(BIN)/python -m pytest -q tests/unit

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench
