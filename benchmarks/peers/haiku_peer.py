"""Haiku: ``hk.LSTM`` / ``hk.GRU`` driven by ``hk.dynamic_unroll`` (time-major), in ``hk.transform``."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import Config, Impl, jax_impl


def build(cell: str, mode: str, cfg: Config, xs: np.ndarray, **options: Any) -> list[Impl]:
    import haiku as hk
    import jax
    import jax.numpy as jnp

    def net(x: Any) -> Any:
        core = hk.LSTM(cfg.H) if cell == "lstm" else hk.GRU(cfg.H)
        ys, _ = hk.dynamic_unroll(core, jnp.swapaxes(x, 0, 1), core.initial_state(x.shape[0]))
        return jnp.swapaxes(ys, 0, 1)

    transformed = hk.without_apply_rng(hk.transform(net))
    x = jnp.asarray(xs)
    params = transformed.init(jax.random.key(0), x)
    name = "hk.LSTM" if cell == "lstm" else "hk.GRU"
    path = "hk.dynamic_unroll -> lax.scan; " + (
        "one [D+H,4H] matmul per step (concat)" if cell == "lstm" else "per-gate matmuls per step"
    )
    return [jax_impl(f"haiku {name}", "haiku", path, transformed.apply, params, x, mode)]
