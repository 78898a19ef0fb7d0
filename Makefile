# The two quick-start commands: `make demo` (set up + main job) and `make test`
# (the whole CI). Each creates the virtual environments it needs on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The newest-stack leg of `make test`: Python 3.12 with the newest jax/flax, no torch.
# python3.12 on PATH, else pyenv's 3.12 (a pyenv shim answers only for the selected version).
PYTHON312 ?= $(shell python3.12 -c 'import sys; print(sys.executable)' 2>/dev/null \
	|| PYENV_VERSION=3.12 pyenv which python3.12 2>/dev/null || echo python3.12)
VENV312 ?= .venv312
BIN312 := $(VENV312)/bin
# PyTorch is only a parity-test/benchmark reference, for the python3 (3.11) venv only. On the CI
# machine this pin resolves to a local CPU wheel; elsewhere install the CPU build with
# `pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu` (plain PyPI gives a
# multi-GB CUDA build on Linux), e.g. make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu".
TORCH ?= torch==2.13.0
DEMO_OUT ?= runs/quickstart
# pip byte-compiles every installed module (torch and jax ship thousands) serially: 100 CPU-s of the
# test venv's install, measured on 2 cores, against 31 s without. --no-compile leaves it to the
# first import, which compiles only what is used, and writes the .pyc for every later process
# (PYTHONDONTWRITEBYTECODE, set on some machines, would make each process compile it again).
PIP_INSTALL := -m pip install --quiet --no-compile
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-full test-newest lint typecheck notebooks bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.demo-installed: $(BIN)/python pyproject.toml
	$(BIN)/python $(PIP_INSTALL) -e '.[tasks]'
	touch $@

$(VENV)/.test-installed: $(BIN)/python pyproject.toml
	$(BIN)/python $(PIP_INSTALL) $(TORCH) -e '.[tasks,test,dev,bench,interpret]'
	touch $@

$(BIN312)/python:
	$(PYTHON312) -m venv $(VENV312)
	$(BIN312)/python -m pip install --quiet --upgrade pip

# --upgrade-strategy eager: the newest release of every dependency, not the first that satisfies pyproject.
$(VENV312)/.installed: $(BIN312)/python pyproject.toml
	$(BIN312)/python $(PIP_INSTALL) --upgrade --upgrade-strategy eager -e '.[tasks,test]'
	$(BIN312)/python -c "$(WARM_IMPORTS)"
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/recurrax train --task mnist1d --cell gru --hidden 128 --epochs 20 --batch-size 32 --lr 3e-3 --clip 1.0 --out $(DEMO_OUT)

# The whole CI: lint, types, the full suite on $(PYTHON), and the fast subset on the newest stack.
# Both legs run at once, so the two cores stay busy (each leg alone left ~10 % idle: its start-up,
# its last files, its subprocesses): the newest-stack venv installs in the background from the start
# and its tests follow at once (their output is shown at the end, and the install's log only if it
# fails); meanwhile the python3 venv installs, then lint, then mypy beside a first import that
# byte-compiles what the tests import, then the full suite.
test:
	@{ $(MAKE) --no-print-directory $(VENV312)/.installed > $(VENV312).log 2>&1 || exit 3; \
	   $(MAKE) --no-print-directory test-newest > $(VENV312)-tests.log 2>&1; } & newest=$$!; \
	$(MAKE) --no-print-directory $(VENV)/.test-installed \
	&& $(MAKE) --no-print-directory lint \
	&& { $(BIN)/python -m mypy > $(VENV)/mypy.log 2>&1 & typecheck=$$!; \
	     KERAS_BACKEND=jax $(BIN)/python -c "$(WARM_IMPORTS), $(WARM_IMPORTS_FULL)"; wait $$typecheck; typed=$$?; \
	     cat $(VENV)/mypy.log; test $$typed = 0; } \
	&& $(MAKE) --no-print-directory test-full; status=$$?; \
	wait $$newest; newest=$$?; \
	if [ $$newest = 3 ]; then cat $(VENV312).log; echo "make: installing $(VENV312) failed"; exit 1; fi; \
	echo "--- make test-newest ($(VENV312)):"; cat $(VENV312)-tests.log; \
	if [ $$status != 0 ]; then exit $$status; fi; exit $$newest

# What the test processes import: imported once here, so their bytecode is compiled once (see PIP_INSTALL);
# otherwise both test workers compile the same files at once. The full leg's also: 20-30 CPU-s of compiling.
WARM_IMPORTS := import recurrax.train, recurrax.nn, recurrax.attention, recurrax.tasks, recurrax.interop, \
	matplotlib.pyplot, hypothesis, tensorboard.summary
WARM_IMPORTS_FULL := torch, keras, haiku, equinox, shap, sklearn.datasets, mnist1d, orbax.checkpoint

test-full: $(VENV)/.test-installed
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# The fast subset: tests marked slow and those needing torch (not installed there) are skipped.
test-newest: $(VENV312)/.installed
	$(BIN312)/python -m pytest -n 2 --dist loadfile -q -m "not slow"

lint: $(VENV)/.test-installed
	$(BIN)/ruff check src tests benchmarks notebooks
	$(BIN)/ruff format --check src tests benchmarks notebooks

# mypy, strict, on src/recurrax and tests/typecheck (the documented calls); settings in pyproject.
typecheck: $(VENV)/.test-installed
	$(BIN)/python -m mypy

# Writes every notebook from its .py pair, executed (CPU, small size), with its outputs; the suite
# re-executes them and compares (notebooks/execute.py --check).
notebooks: $(VENV)/.test-installed
	$(BIN)/python notebooks/execute.py

bench: $(VENV)/.test-installed
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(VENV312) $(VENV312).log $(VENV312)-tests.log runs .pytest_cache .ruff_cache

# The docs site (docs/conf.py) into build/site: Sphinx + MyST-NB in strict mode, every guide
# page's Python run at build time (a fresh environment each time, so every warning is seen),
# then checked in headless Chromium by tests/test_site.py (needs `apt-get install chromium`).
.PHONY: docs
DOCS_OUT ?= build/site

$(VENV)/.docs-installed: $(VENV)/.test-installed pyproject.toml
	$(BIN)/python $(PIP_INSTALL) -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-installed
	rm -rf $(DOCS_OUT)
	$(BIN)/sphinx-build -b html -W --keep-going -E -j 2 -q -d build/doctrees -c docs . $(DOCS_OUT)
	RECURRAX_SITE=$(DOCS_OUT) $(BIN)/python -m pytest -q -p no:randomly tests/test_site.py
