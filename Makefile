# Template repository tasks. `make test` is the command README.md and .ci/run use.
PYTHON ?= python3
VENV ?= .venv

.PHONY: test
test: $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -r tests/requirements.txt
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Re-resolve the generated project's uv.lock of every variant after a change to its
# pyproject.toml (UPGRADE=1: newest releases); tests/test_locks.py fails while one is stale.
.PHONY: lock
lock: $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -r tests/requirements.txt
	$(VENV)/bin/python tests/locks.py $(if $(UPGRADE),--upgrade)
