# The course in two commands (see the README):
#   make lab     open the course in JupyterLab
#   make test    run the whole test suite
# Each sets up .venv/ first when it is missing or older than pyproject.toml (the same pinned install and kernel
# registration as the explicit commands in the README), and installs nothing when it is up to date.
# Without make (e.g. on Windows), use the explicit commands in the README.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.course-installed
BROWSER_READY := $(VENV)/.course-browser-installed

.PHONY: lab test browser-test check bench

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install -e . && $(BIN)/python -m ipykernel install --sys-prefix --name python3
	touch $@

$(BROWSER_READY): $(READY)
	$(BIN)/pip install -e ".[browser]"
	touch $@

# extra options for JupyterLab, e.g. `make lab LAB_ARGS="--no-browser --port 8899"`
LAB_ARGS ?=

lab: $(READY)
	$(BIN)/jupyter lab $(LAB_ARGS)

test: $(READY)
	$(BIN)/python -m pytest

# JupyterLab in headless Chromium (needs the system's Chromium; see the README); one JupyterLab, so not in parallel
browser-test: $(BROWSER_READY)
	$(BIN)/python -m pytest -n 0 -m browser tests/browser

check: $(READY)
	$(BIN)/course build && $(BIN)/course check

bench: $(READY)
	$(BIN)/course bench notebooks
