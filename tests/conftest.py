"""Test setup that makes silent bugs loud.

Strict dtype promotion (a float64 constant silently widening a float32
computation, or an int meeting a float, is usually a bug), warnings are errors
(pyproject), and float64 is switched on only inside the tests that ask for it.
Rank promotion stays allowed: adding a ``[H]`` bias to ``[*B, H]`` activations
for any number of batch dims is the library's normal broadcasting.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import cheap_compile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_FLAGS", cheap_compile.xla_flags())  # why: tests/cheap_compile.py
# shap's permutation explainer masks through numba functions whose first call compiles them: 11 CPU-s
# per process, for the tests' few hundred coalitions (explain(method="shap") took 11.2 s with the
# compile, 0.25 s with the same functions run as Python). Values are unchanged: numba runs that Python.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")

_own_cache_dir: str | None = None


def pytest_configure(config):
    """One persistent compilation cache per test run, fresh and empty at the start.

    Shared by the xdist workers, the subprocesses the tests start (`recurrax
    train ...`, notebook kernels) and tests that rebuild a program from fresh
    closures, which jit's in-memory cache misses. A hit needs the same HLO, XLA
    flags, jax/jaxlib version and backend, so it returns what compiling would.
    The first process of the run makes the directory (workers and subprocesses
    inherit the variable) and removes it at the end: no run reads another's.
    """
    global _own_cache_dir
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        _own_cache_dir = tempfile.mkdtemp(prefix="recurrax-tests-jax-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _own_cache_dir
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # the tests' programs take < 1 s
    # jax is imported already: its config read the environment before this ran.
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    min_seconds = float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_seconds)
    # Entries are written without a lock: a read racing another process's write sees a
    # truncated file, which the decompressor refuses, and jax compiles instead (after this warning).
    config.addinivalue_line("filterwarnings", "ignore:Error reading persistent compilation cache entry:UserWarning")


# The files whose tests take longest (each a minute or more of one worker: a notebook kernel, the
# 8-device subprocess, every docs page and docstring example). `pytest -n 2 --dist loadfile` hands
# files out in collection order, so these start first and the small files fill in around them;
# collected last, one of them ran alone at the end while the other core idled.
LONGEST_FIRST = ("test_notebooks.py", "test_multidevice.py", "test_docs.py", "test_public_api.py", "test_cli.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.path.name if item.path.parent.name == "tests" else ""
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its place


def pytest_unconfigure(config):
    if _own_cache_dir is not None:
        shutil.rmtree(_own_cache_dir, ignore_errors=True)


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (for gradient checks and tight parity)."""
    with jax.enable_x64(True):
        yield
