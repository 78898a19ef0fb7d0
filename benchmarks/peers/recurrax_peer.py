"""recurrax itself: the default path (fused LSTM/GRU where supported) and the plain step loop."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import Config, Impl, jax_impl

# name -> recurrax.scan keyword arguments; "levers" adds the variants the README's before/after table compares.
DEFAULT_VARIANTS = {
    "recurrax": {},
    "recurrax (plain scan)": {"fused": False, "hoist_input_projection": True},
    "recurrax (plain, matmul in step)": {"fused": False, "hoist_input_projection": False},
}
LEVER_VARIANTS = {
    "plain, no hoisting": {"fused": False, "hoist_input_projection": False},
    "plain, hoisted": {"fused": False, "hoist_input_projection": True},
    "plain, hoisted, unroll=8": {"fused": False, "hoist_input_projection": True, "unroll": 8},
    "plain, no hoisting, unroll=8": {"fused": False, "hoist_input_projection": False, "unroll": 8},
    "plain, hoisted, remat": {"fused": False, "hoist_input_projection": True, "remat": True},
    "fused, hoisted": {"fused": True, "hoist_input_projection": True},
    "fused": {"fused": True},
    "fused, unroll=2": {"fused": True, "unroll": 2},
    "fused, unroll=4": {"fused": True, "unroll": 4},
    "fused, unroll=8": {"fused": True, "unroll": 8},
    "fused, remat": {"fused": True, "remat": True},
}


def describe(cell_obj: Any, params: Any, xs: Any, kwargs: dict) -> str:
    """The path the engine takes for this cell and these options (time-major ``xs``), in words."""
    import recurrax
    from recurrax._scan import _use_sequence
    from recurrax.cells import _fused

    options = recurrax.ScanOptions(**kwargs)
    carry = cell_obj.initial_carry(xs.shape[1:-1])
    if _use_sequence(cell_obj, params, carry, xs, options, None, False):
        hoisted = cell_obj.hoists(options)
        gates = 4 if isinstance(cell_obj, recurrax.LSTMCell) else 3
        batched = _fused.batched_weight_gradients(xs.shape[1], gates, cell_obj.hidden_size)
        path = "fused loop, " + ("custom_jvp: weight gradients as one matmul" if batched else "differentiated directly")
        path += ", input matmul " + ("hoisted (per-gate arrays)" if hoisted else "in the loop")
    elif kwargs.get("hoist_input_projection") is False:
        path = "plain lax.scan, input matmul inside the step"
    else:
        path = "plain lax.scan, input projection hoisted"
    extras = [f"{k}={v}" for k, v in kwargs.items() if k in ("unroll", "remat")]
    return path + (f" ({', '.join(extras)})" if extras else "")


def build(
    cell: str, mode: str, cfg: Config, xs: np.ndarray, *, variants: dict[str, dict] | None = None, **options: Any
) -> list[Impl]:
    import jax
    import jax.numpy as jnp

    import recurrax

    cell_obj = recurrax.lstm(cfg.H) if cell == "lstm" else recurrax.gru(cfg.H)
    params = cell_obj.init(jax.random.key(0), cfg.D)
    x = jnp.asarray(xs)
    impls = []
    for name, kwargs in (variants or DEFAULT_VARIANTS).items():

        def forward(p: Any, x: Any, kwargs: dict = kwargs) -> Any:
            ys, _ = recurrax.scan(cell_obj, p, x, **kwargs)
            return ys

        path = describe(cell_obj, params, jnp.swapaxes(x, 0, 1), kwargs)
        impls.append(jax_impl(name, "recurrax", path, forward, params, x, mode, extra={"scan_kwargs": kwargs}))
    return impls
