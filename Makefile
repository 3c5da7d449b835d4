# The two commands: `make run` (everything, on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: run test lint format bench install clean-data

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m config.devrun

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# pytest exits 5 when no test ran: that fails `make test` too. The suite runs in
# TEST_SHARDS (2) pytest processes side by side, on Redis databases 1 and 2
# (tests/run_shards.py); naming test files in PYTEST_ARGS runs one pytest.
test: lint
	$(PY) -m config.embedded --redis-db 1 -- $(PY) -m tests.run_shards $(PYTEST_ARGS)

# BENCH="outbound api_messages" runs only those benchmarks (names: bench/__main__.py).
bench: install
	$(PY) -m config.embedded -- $(PY) -m bench $(BENCH)

# Removes the embedded servers' data (the demo tenant, messages...): asks first.
clean-data:
	@read -p "Delete .local/ (all local data)? [y/N] " answer && [ "$$answer" = y ] && rm -rf .local || true
