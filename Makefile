# Two commands on a fresh machine: `make demo` and `make test`. Each does its own setup.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: all setup system node test lint typecheck pytest demo bench wheel clean

all: test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,hsm]'
	touch $(STAMP)

setup: $(STAMP)

# Debian packages the real-component tests use (nginx, chromium, softhsm2, node). Installs when root,
# otherwise says what to install; tests then skip locally and fail under CI=true.
system:
	bash scripts/setup-system.sh

node: system
	bash scripts/setup-node.sh

lint: setup
	$(BIN)/ruff check repo_tool client metadata_templates tests bench
	$(BIN)/ruff format --check repo_tool client metadata_templates tests bench
	$(BIN)/lint-imports --no-cache

typecheck: setup
	$(BIN)/mypy

pytest: setup system node
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=40 $(PYTEST_ARGS)

test: lint typecheck pytest

demo: setup
	$(BIN)/python scripts/demo.py

bench: setup
	$(BIN)/python -m bench

wheel: setup
	$(BIN)/python -m build --wheel --outdir dist .

clean:
	rm -rf $(VENV) dist build demo-out bench/out .pytest_cache .mypy_cache .ruff_cache
