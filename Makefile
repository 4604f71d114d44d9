# Nekzus developer loop. `make run` starts Nekzus; `make test` installs everything and runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config.yaml
PYTEST_ARGS ?=
# Coverage floor (percent of src/nekzus lines run by the suite, server subprocesses included).
COVERAGE_FLOOR ?= 60

.PHONY: install install-test system-deps run lint typecheck test bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# pip compiles the dependencies' bytecode; the editable source tree is compiled here, so the first start
# (and a read-only checkout) does not pay for compiling ~200 modules.
install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/python -m compileall -q -j 0 src

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m compileall -q -j 0 src

system-deps:
	bash scripts/install-system-deps.sh

run: install
	$(BIN)/nekzus --config $(CONFIG)

lint: install-test
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

typecheck: install-test
	$(BIN)/mypy

test: system-deps install-test lint typecheck
	$(BIN)/pytest -n 2 --dist loadgroup --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR) $(PYTEST_ARGS)

# Every benchmark (proxy vs Caddy/nginx, WebSocket fan-out, scale, start-up) and one summary table;
# `make bench BENCH_ARGS=--quick` for a smoke run.
BENCH_ARGS ?=
bench: install-test
	bash scripts/install-system-deps.sh bench
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
