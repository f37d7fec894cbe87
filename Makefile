# make test: bootstrap .venv from nothing, then ruff + import-linter + mypy + pytest.
# make demo: bootstrap .venv, then run the boot simulation of SPEC section 9.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all test lint typecheck pytest demo bench clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --config-settings editable_mode=compat -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	bash tests/ensure_rsyslog.sh
	$(BIN)/pytest -q -n 2 -p no:cacheprovider

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python -m demo

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache build *.egg-info
