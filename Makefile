# The two quick-start commands: `make demo` (set up + main job) and `make test`.
# Each creates the virtual environment it needs in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch is only a parity-test/benchmark reference. This exact pin takes the
# CPU build; an unpinned torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
DEMO_OUT ?= runs/quickstart

.PHONY: demo test lint typecheck bench bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[tasks]'
	touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet '$(TORCH)'
	$(BIN)/python -m pip install --quiet -e '.[tasks,test,dev,bench]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/recurrax train --task mnist1d --cell gru --hidden 128 --epochs 20 --batch-size 32 --lr 3e-3 --clip 1.0 --out $(DEMO_OUT)

test: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks notebooks
	$(BIN)/ruff format --check src tests benchmarks notebooks
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks notebooks
	$(BIN)/ruff format --check src tests benchmarks notebooks

# mypy, strict, on src/recurrax and tests/typecheck (the documented calls); settings in pyproject.
typecheck: $(VENV)/.test-installed
	$(BIN)/python -m mypy

bench: $(VENV)/.test-installed
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# The docs site (docs/conf.py) into build/site: Sphinx + MyST-NB in strict mode, every guide
# page's Python run at build time (a fresh environment each time, so every warning is seen),
# then checked in headless Chromium by tests/test_site.py (needs `apt-get install chromium`).
.PHONY: docs
DOCS_OUT ?= build/site

$(VENV)/.docs-installed: $(VENV)/.test-installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-installed
	rm -rf $(DOCS_OUT)
	$(BIN)/sphinx-build -b html -W --keep-going -E -j 2 -q -d build/doctrees -c docs . $(DOCS_OUT)
	RECURRAX_SITE=$(DOCS_OUT) $(BIN)/python -m pytest -q -p no:randomly tests/test_site.py
