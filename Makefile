# Relance — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The venv's own installers, before anything else: `python -m venv` seeds the pip bundled with
# the interpreter (3.11: pip 23.2.1, setuptools 65.5.0), both with published CVEs. Floors:
# pip 25.3 (CVE-2025-8869, CVE-2023-5752), setuptools 78.1.1 (CVE-2025-47273, CVE-2024-6345).
# tests/test_install.py checks the venv it runs in holds at least these.
BOOTSTRAP := 'pip>=25.3' 'setuptools>=78.1.1'

.PHONY: run test format install bench clean help

help:
	@echo "make run    install into $(VENV) and start Temporal, the worker, the API and the mail sink"
	@echo "make test   install into $(VENV) and run the test suite"
	@echo "make format rewrite the code with ruff (lint fixes and format)"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make clean  remove $(VENV) and local data (var/)"

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Relance needs Python 3.11 or newer; set PYTHON=python3.11")'
	@echo "==> creating $(VENV) and installing Relance with its test tools (first time takes a minute)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade $(BOOTSTRAP)
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@$(PY) -m relance.dev.devstack

test: $(STAMP)
	@echo "==> ruff: lint and format check (make format rewrites)"
	@$(VENV)/bin/ruff check --quiet . && $(VENV)/bin/ruff format --check --quiet .
	@$(PY) -m pytest

format: $(STAMP)
	@$(VENV)/bin/ruff check --fix --quiet . ; $(VENV)/bin/ruff format .

bench: $(STAMP)
	@$(PY) -m bench

clean:
	rm -rf $(VENV) var .pytest_cache
