"""Why the fit loop adds each batch's (total, count) on the host instead of using flax.nnx.metrics:
nnx.metrics.Average accumulates in float32, so the exact epoch means of the history would drift, and its
compute() fails under strict dtype promotion; the
benchmark that measures speed and drift runs (at a tiny size: no timing is asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import metric_aggregation  # noqa: E402


def test_nnx_average_accumulates_in_float32_where_the_host_sums_do_not():
    average = nnx.metrics.Average()
    average.update(values=jnp.float32(2.0**24))
    average.update(values=jnp.float32(1.0))  # 2**24 + 1 is not a float32: the 1 is lost
    with pytest.raises(jax.dtypes.TypePromotionError):  # float32 total / int32 count, under strict promotion
        average.compute()
    with jax.numpy_dtype_promotion("standard"):
        assert float(average.compute()) == 2.0**23
    totals = np.float32([[2.0**24, 0.0], [1.0, 0.0]])
    assert metric_aggregation.host_sums(totals, np.float32([1, 1]))["loss"] == (2.0**24 + 1) / 2


def test_benchmark_runs_and_agrees_with_the_host_sums():
    with jax.numpy_dtype_promotion("standard"):  # nnx.metrics.Average.compute needs it
        out = metric_aggregation.main(batches=3, drift_batches=50, batch_size=4)  # asserts the means agree inside
    assert set(out) == {"host_sums_us", "nnx_eager_us", "nnx_jit_us", "float32_relative_error"}
    assert all(np.isfinite(v) and v >= 0 for v in out.values())
