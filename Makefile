# Two entry points do all the set-up on a fresh machine with Python 3.11 and make:
#   make run   - create .venv, install Hotwire, start the daemon on conf/hotwire.toml
#   make test  - the same set-up, then the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hotwire run --config conf/hotwire.toml

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check daemon tests bench services
	$(BIN)/mypy

check: $(STAMP)
	$(BIN)/hotwire check --config conf/hotwire.toml

clean:
	rm -rf $(VENV) var .pytest_cache
