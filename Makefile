# Two commands do all set-up on a fresh machine:
#   make drill   - the runbook drill on the embedded Temporal dev server (creates .venv first)
#   make test    - the test suite (creates .venv first)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: drill test lint install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,drill]'
	touch $@

install: $(BIN)/.installed

drill: $(BIN)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/codeblue drill

# ruff, mypy, import-linter (no cycles, layers) and the private-name check: the first failure stops
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_private_imports.py

# Bytecode caches (gitignored) on, even where the environment turns them off: the suite starts
# a few hundred Python processes (CLI, workers, drills, the helm stand-in), and each would
# otherwise compile the project's modules again (~0.3 s of CPU each).
unexport PYTHONDONTWRITEBYTECODE

# the suite on six workers (pyproject addopts), then the few tests marked `alone` (load-sensitive) on an idle machine
test: lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -m "not alone"
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -m alone -n 0

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
