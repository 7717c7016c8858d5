# One command to set up a fresh machine, one to run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint serve docs docs-build
HOST ?= 127.0.0.1
PORT ?= 8000
MODEL ?= default
setup:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/python -c "import torch; print('installed torch', torch.__version__, 'cuda' if torch.version.cuda else 'cpu-only')"

# The test suite with line coverage of src/fervid (the report is printed; figures live nowhere else).
test:
	$(BIN)/python -m pytest -q --cov=fervid --cov-report=term:skip-covered

# What keeps the layers layered: lint and format (ruff), types (mypy), no import cycle or
# cross-module private import (the shared import-graph tool, where ../shared is present).
lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	@if [ -f ../shared/tools/import_graph.py ]; then $(BIN)/python ../shared/tools/import_graph.py src fervid; \
	else echo "import graph: ../shared/tools/import_graph.py not found (tests/test_architecture.py checks the layers)"; fi

# The REST API and the web page (live camera, inference in the browser) with the bundled model.
serve:
	@test -x $(BIN)/fervid || $(MAKE) setup
	@$(BIN)/python -c "import fastapi, uvicorn, multipart" 2>/dev/null || $(BIN)/pip install -q -e ".[serve]"
	@echo "fervid: open http://$(HOST):$(PORT)/ (API docs: http://$(HOST):$(PORT)/docs; Ctrl-C stops)"
	$(BIN)/fervid serve --host $(HOST) --port $(PORT) --model $(MODEL)

# The documentation site (docs/, mkdocs.yml): served with live reload on http://127.0.0.1:8001/;
# docs-build writes the static site to site/ (the tests build it with --strict too).
DOCS_PORT ?= 8001
docs:
	@$(BIN)/python -c "import mkdocs, material, mkdocstrings" 2>/dev/null || $(BIN)/pip install -q -e ".[docs]"
	PYTHONPATH=src $(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-build:
	@$(BIN)/python -c "import mkdocs, material, mkdocstrings" 2>/dev/null || $(BIN)/pip install -q -e ".[docs]"
	PYTHONPATH=src $(BIN)/mkdocs build --strict --site-dir site
