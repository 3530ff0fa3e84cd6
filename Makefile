# The two set-up commands are `make demo` and `make test`; both bootstrap themselves.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap demo test test-fast check format clean-demo

bootstrap:
	@scripts/bootstrap.sh

## Run the sandbox on the embedded default (init --demo, synth, hub + proxy + gateway on :8000).
demo: bootstrap
	$(VENV)/bin/sandbox demo

## Every test category: unit, integration, e2e (hub, browser), docs; slow ones included.
test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

## Quick loop while developing: skip the slow, hub and browser tests.
test-fast: bootstrap
	$(PY) -m pytest -m "not slow and not hub and not browser" $(PYTEST_ARGS)

## Every non-mutating check: formatting, lint, types (strict on the core packages).
check: bootstrap
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: bootstrap
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean-demo:
	rm -rf .sandbox
