# The two set-up commands of the README.
PYTHON ?= python3
VENV ?= .venv

.PHONY: run test install install-test lint

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	# The CPU build first: a plain torch requirement would pull a multi-GB CUDA build.
	$(VENV)/bin/pip install -q torch==2.13.0

install: $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e .

install-test: $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[test]'

run: install
	$(VENV)/bin/aicoderd

test: install-test lint
	$(VENV)/bin/python -m pytest -q

lint:
	$(VENV)/bin/ruff check aicoderd tests benchmarks
	$(VENV)/bin/ruff format --check aicoderd tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
