"""Full-precision float32 matmuls in the recurrax.train tests.

The tests compare jitted against eager computations and hand-written
references to float32 round-off; on GPUs JAX's default matmul precision
(TF32) would blur that by about 1e-3. On CPUs this changes nothing.
"""

from __future__ import annotations

import jax
import pytest


@pytest.fixture(autouse=True)
def _highest_matmul_precision():
    with jax.default_matmul_precision("highest"):
        yield
