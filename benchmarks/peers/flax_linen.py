"""Flax Linen: ``nn.RNN`` over ``OptimizedLSTMCell``, ``LSTMCell`` or ``GRUCell`` (init, then jit(apply))."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import Config, Impl, jax_impl

CELLS = {"lstm": ("OptimizedLSTMCell", "LSTMCell"), "gru": ("GRUCell",)}
PATHS = {
    "OptimizedLSTMCell": "nn.RNN -> nn.scan; one fused [D,4H] and one [H,4H] matmul per step",
    "LSTMCell": "nn.RNN -> nn.scan; eight per-gate matmuls per step",
    "GRUCell": "nn.RNN -> nn.scan; per-gate matmuls per step",
}


def build(cell: str, mode: str, cfg: Config, xs: np.ndarray, **options: Any) -> list[Impl]:
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    impls = []
    x = jnp.asarray(xs)
    for cell_name in CELLS[cell]:
        model = nn.RNN(getattr(nn, cell_name)(cfg.H))
        params = model.init(jax.random.key(0), x)
        impls.append(jax_impl(f"flax.linen {cell_name}", "flax.linen", PATHS[cell_name], model.apply, params, x, mode))
    return impls
