# Two commands do everything on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_SILENT ?= true

.PHONY: train test lint clean help

help:
	@echo "make train  - create $(VENV), install, train the default experiment (synthetic CT, seg + cls)"
	@echo "make test   - create $(VENV), install with dev extras, run the test suite"
	@echo "make lint   - ruff check"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade -q pip
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -e ".[dev]"
	touch $@

train: $(VENV)/.installed
	$(PY) train.py experiment=ct_default $(ARGS)

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(ARGS)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) logs .pytest_cache
