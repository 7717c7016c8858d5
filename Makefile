# One command to set up a fresh machine, one to run the tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test
setup:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/python -c "import torch; print('installed torch', torch.__version__, 'cuda' if torch.version.cuda else 'cpu-only')"

test:
	$(BIN)/python -m pytest -q
