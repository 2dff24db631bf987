# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/pip
SHELL := /bin/bash

.PHONY: run test install install-test lint

# The virtualenv, a pip that reads today's package metadata, and the CPU build of torch first:
# a plain torch requirement would pull a multi-GB CUDA build.
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --progress-bar on torch==2.13.0

# pip's own lines plus the C++ build's progress ("[ 42%] Building ..."): llama.cpp's Python
# binding compiles from source once (about 4 minutes on 2 cores), then pip's cache serves it.
SHOW_PROGRESS := grep --line-buffered -E '^(Collecting|Building wheel|Created wheel|Successfully|Installing collected|ERROR)|\[ *[0-9]+%\]|error:'

# Each install runs again only when pyproject.toml changes (a stamp file per set of extras).
$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	@echo "== installing aicoderd with llama.cpp's Python binding (the export's parity check)"
	@echo "== the binding builds from source the first time: about 4 minutes on 2 cores"
	set -o pipefail; $(PIP) install -v -e '.[verify]' 2>&1 | $(SHOW_PROGRESS)
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	set -o pipefail; $(PIP) install -v -e '.[test]' 2>&1 | $(SHOW_PROGRESS)
	touch $@

install: $(VENV)/.installed-run

install-test: $(VENV)/.installed-test

run: install
	$(VENV)/bin/aicoderd

test: install-test lint
	$(VENV)/bin/python -m pytest -q

lint:
	$(VENV)/bin/ruff check aicoderd tests benchmarks
	$(VENV)/bin/ruff format --check aicoderd tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
