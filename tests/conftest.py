"""Test setup that makes silent bugs loud.

Strict dtype promotion (a float64 constant silently widening a float32
computation, or an int meeting a float, is usually a bug), warnings are errors
(pyproject), and float64 is switched on only inside the tests that ask for it.
Rank promotion stays allowed: adding a ``[H]`` bias to ``[*B, H]`` activations
for any number of batch dims is the library's normal broadcasting.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("KERAS_BACKEND", "jax")
# The tests' tiny programs are dominated by XLA compile time, not run time:
# skip the expensive backend passes (numerics are unchanged; no fast-math).
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Runs the test with float64 enabled (for gradient checks and tight parity)."""
    with jax.enable_x64(True):
        yield
