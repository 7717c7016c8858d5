# One command to set up a fresh machine, one to run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup dev test test-slow lint wheel serve docs docs-build
HOST ?= 127.0.0.1
PORT ?= 8000
MODEL ?= default
# What a user needs for the main job: the core (predict, video, batch on onnxruntime, no torch)
# and the service. Training, evaluation and export: pip install -e ".[train]" (torch==2.13.0 first).
setup:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[serve]"
	$(BIN)/fervid --version

# The test and lint tools, with every extra the suite exercises (torch, Ray, Playwright...):
# the CPU build of torch first, pinned (an unpinned torch pulls a multi-GB CUDA build).
# test, test-slow, lint and wheel run it when the venv lacks those tools (a venv that has them,
# shared by several checkouts, is left as it is).
dev:
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/python -c "import torch; assert torch.version.cuda is None, 'a CUDA build of torch'; print('torch', torch.__version__)"
DEV_READY = $(BIN)/python -c "import torch, pytest, xdist, filelock, pytest_cov, ruff, mypy, build, mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null

# The suite but the tests marked slow, on every core (pytest-xdist; a test file stays on one
# worker, so its module fixtures train once, and the session checkpoints are trained once for
# all workers: tests/conftest.py), with line coverage of src/fervid. Chromium for the browser
# test: Debian's package where apt-get may install it, else that test says why it skips.
test:
	@$(DEV_READY) || $(MAKE) dev
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: tests/test_serve_browser.py will skip" >&2; fi
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m "not slow" --cov=fervid --cov-report=term:skip-covered

# The tests marked slow (they train): CI runs them after `make test`.
test-slow:
	@$(DEV_READY) || $(MAKE) dev
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m slow

# The wheel and sdist, installed into a clean venv outside the repository and run (.ci/wheel_check).
wheel:
	@$(DEV_READY) || $(MAKE) dev
	.ci/wheel_check

# What keeps the layers layered: lint and format (ruff), types (mypy), no import cycle or
# cross-module private import (the shared import-graph tool, where ../shared is present).
lint:
	@$(DEV_READY) || $(MAKE) dev
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
