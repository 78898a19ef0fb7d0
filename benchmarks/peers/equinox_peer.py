"""Equinox: ``eqx.nn.LSTMCell`` / ``GRUCell`` under ``lax.scan`` over time and ``vmap`` over the batch."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import Config, Impl, jax_impl


def build(cell: str, mode: str, cfg: Config, xs: np.ndarray, **options: Any) -> list[Impl]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    module = (eqx.nn.LSTMCell if cell == "lstm" else eqx.nn.GRUCell)(cfg.D, cfg.H, key=jax.random.key(0))
    params, static = eqx.partition(module, eqx.is_array)

    def forward(p: Any, x: Any) -> Any:
        step_fn = eqx.combine(p, static)

        def one_sequence(seq: Any) -> Any:
            zeros = jnp.zeros((cfg.H,), seq.dtype)
            init = (zeros, zeros) if cell == "lstm" else zeros

            def step(carry: Any, x_t: Any) -> Any:
                carry = step_fn(x_t, carry)
                return carry, (carry[0] if cell == "lstm" else carry)

            return jax.lax.scan(step, init, seq)[1]

        return jax.vmap(one_sequence)(x)

    path = "vmap(lax.scan(cell)); two matmuls per step ([D,GH] and [H,GH])"
    return [jax_impl(f"equinox {type(module).__name__}", "equinox", path, forward, params, jnp.asarray(xs), mode)]
