"""minGRU written by hand the way a researcher would: one matmul and a ``jax.lax.associative_scan``.

The yardstick for recurrax's parallel path (``benchmarks.run --suites linear``
times the two interleaved; ``tests/test_parallel_reference.py`` holds recurrax
to these same numbers). Same parameters as ``recurrax.min_gru``:
``input_kernel[D, 2H]`` with blocks ``[z | h̃]`` and ``bias[2H]``; inputs are
batch-major ``xs[B, T, D]``, the initial state is zero, the output is the state.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def _gates(params: Any, xs: Any) -> tuple[Any, Any]:
    k, pre = jnp.split(xs @ params["input_kernel"] + params["bias"], 2, axis=-1)
    return k, pre


def min_gru_linear(params: Any, xs: Any) -> Any:
    """``h_t = σ(-k) ⊙ h_{t-1} + σ(k) ⊙ h̃`` by associative scan over the time axis (``axis=1``)."""
    k, pre = _gates(params, xs)
    a, b = jax.nn.sigmoid(-k), jax.nn.sigmoid(k) * pre

    def combine(earlier: tuple[Any, Any], later: tuple[Any, Any]) -> tuple[Any, Any]:
        return later[0] * earlier[0], later[0] * earlier[1] + later[1]

    return jax.lax.associative_scan(combine, (a, b), axis=1)[1]


def log_g(x: Any) -> Any:
    """``log g(x)`` of minGRU's positive candidate ``g(x) = x + 0.5`` (x ≥ 0) else ``σ(x)``."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def min_gru_log(params: Any, xs: Any) -> Any:
    """The log-space form (Heinsen, 2023): ``log h_t = logaddexp(log a_t + log h_{t-1}, log b_t)``."""
    k, pre = _gates(params, xs)
    log_a, log_b = -jax.nn.softplus(k), -jax.nn.softplus(-k) + log_g(pre)

    def combine(earlier: tuple[Any, Any], later: tuple[Any, Any]) -> tuple[Any, Any]:
        return earlier[0] + later[0], jnp.logaddexp(later[0] + earlier[1], later[1])

    return jnp.exp(jax.lax.associative_scan(combine, (log_a, log_b), axis=1)[1])
