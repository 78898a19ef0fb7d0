"""Flax NNX: ``nnx.RNN`` over ``OptimizedLSTMCell``, ``LSTMCell`` or ``GRUCell``.

NNX's functional idiom for speed: ``nnx.split`` once, then ``jax.jit`` over the
parameter state and ``nnx.merge`` inside (what ``nnx.jit`` does, without its
per-call graph traversal in Python).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import Config, Impl, jax_impl

CELLS = {"lstm": ("OptimizedLSTMCell", "LSTMCell"), "gru": ("GRUCell",)}
PATHS = {
    "OptimizedLSTMCell": "nnx.RNN -> lax.scan; one fused [D,4H] and one [H,4H] matmul per step",
    "LSTMCell": "nnx.RNN -> lax.scan; eight per-gate matmuls per step",
    "GRUCell": "nnx.RNN -> lax.scan; per-gate matmuls per step",
}


def build(cell: str, mode: str, cfg: Config, xs: np.ndarray, **options: Any) -> list[Impl]:
    import jax.numpy as jnp
    from flax import nnx

    impls = []
    x = jnp.asarray(xs)
    for cell_name in CELLS[cell]:
        rnn = nnx.RNN(getattr(nnx, cell_name)(cfg.D, cfg.H, rngs=nnx.Rngs(0)))
        graphdef, params, rest = nnx.split(rnn, nnx.Param, ...)

        def forward(p: Any, x: Any, graphdef: Any = graphdef, rest: Any = rest) -> Any:
            model = nnx.merge(graphdef, p, rest)
            carry = model.cell.initialize_carry((x.shape[0], x.shape[-1]), rngs=nnx.Rngs(0))
            return model(x, initial_carry=carry)

        impls.append(jax_impl(f"flax.nnx {cell_name}", "flax.nnx", PATHS[cell_name], forward, params, x, mode))
    return impls
