# Template repository tasks. `make test` is the command README.md and .ci/run use.
PYTHON ?= python3
VENV ?= .venv

.PHONY: test
test: $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -r tests/requirements.txt
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
