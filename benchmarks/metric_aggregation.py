"""Epoch means: recurrax's host sums of each batch's ``(total, count)`` against ``flax.nnx.metrics``.

The fit loop's jitted step returns each batch's sums (``masked_total``: the
math of ``nnx.metrics.Average.update(values, mask)``); the host adds them in
Python floats (float64). This measures the two ways ``nnx.metrics`` could
replace that addition (eager updates per batch, or a jitted update), and the
float32 accumulator's drift over a long epoch:

    python -m benchmarks.metric_aggregation [--batches 2000]

No timing is asserted anywhere; tests/train/test_train_metric_aggregation.py
runs this at a tiny size and checks the float32 behaviour it relies on.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from flax import nnx

METRICS = ("loss", "accuracy")


def host_sums(totals: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """recurrax's way: Python-float sums of the per-batch ``(total, count)`` pairs (as ``Trainer._flush``)."""
    acc: dict[str, list[float]] = {}
    for i in range(len(totals)):
        for k, name in enumerate(METRICS):
            pair = acc.setdefault(name, [0.0, 0.0])
            pair[0] += float(totals[i, k])
            pair[1] += float(counts[i])
    return {name: t / c for name, (t, c) in acc.items()}


def _multi_metric() -> nnx.MultiMetric:
    return nnx.MultiMetric(**{name: nnx.metrics.Average(name) for name in METRICS})


def nnx_eager(values: np.ndarray) -> dict[str, float]:
    """``nnx.MultiMetric`` of ``Average``s updated per batch, eagerly (one device dispatch per update)."""
    metric = _multi_metric()
    for i in range(len(values)):
        metric.update(**{name: values[i, k] for k, name in enumerate(METRICS)})
    return {k: float(v) for k, v in metric.compute().items()}


@nnx.jit
def _update(metric: nnx.MultiMetric, batch: np.ndarray) -> None:
    metric.update(**{name: batch[k] for k, name in enumerate(METRICS)})


def nnx_jit(values: np.ndarray) -> dict[str, float]:
    """The same, with the update jitted (``nnx.jit``)."""
    metric = _multi_metric()
    for i in range(len(values)):
        _update(metric, values[i])
    return {k: float(v) for k, v in metric.compute().items()}


def _best_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    fn()  # compile / warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def float32_drift(batches: int, tokens: int, seed: int = 0) -> tuple[float, float]:
    """``(float32 mean, float64 mean)`` of ``batches`` per-batch loss totals of ``tokens`` tokens each."""
    totals = np.random.default_rng(seed).uniform(0.9, 1.1, size=batches).astype(np.float32) * tokens
    total32 = np.float32(0)
    for t in totals:
        total32 = np.float32(total32 + t)  # nnx.metrics.Average's total is float32
    return float(total32) / (batches * tokens), float(np.sum(totals, dtype=np.float64)) / (batches * tokens)


def main(batches: int = 2000, drift_batches: int = 20000, batch_size: int = 32) -> dict[str, float]:
    """Runs every measurement; returns microseconds per batch and the float32 relative error."""
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1.25, size=(batches, len(METRICS), batch_size)).astype(np.float32)
    totals, counts = values.sum(axis=2), np.full((batches,), batch_size, np.float32)
    exact = host_sums(totals, counts)
    for fn in (nnx_eager, nnx_jit):  # the same means, up to float32 accumulation
        np.testing.assert_allclose(list(fn(values).values()), list(exact.values()), rtol=1e-4)
    out = {
        "host_sums_us": _best_seconds(lambda: host_sums(totals, counts)) / batches * 1e6,
        "nnx_eager_us": _best_seconds(lambda: nnx_eager(values)) / batches * 1e6,
        "nnx_jit_us": _best_seconds(lambda: nnx_jit(values)) / batches * 1e6,
    }
    mean32, mean64 = float32_drift(drift_batches, 8192)
    out["float32_relative_error"] = abs(mean32 - mean64) / mean64
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    args = parser.parse_args()
    for key, value in main(args.batches).items():
        print(f"{key:24s} {value:.3g}")
