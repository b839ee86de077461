# Quick start: `make run` (set up, then the quickstart job) and `make test` (set up, then the tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kswarm-installed

.PHONY: setup run test clean

setup: $(STAMP)

# torch first, and only when missing: a bare torch requirement would pull a CUDA build of several GB.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

run: setup
	RAY_AUTH_MODE=disabled $(BIN)/kswarm run experiments/campaigns/quickstart.toml

test: setup
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest -q --durations=30

clean:
	rm -rf $(VENV) tmp runs
