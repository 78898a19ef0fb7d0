"""recurrax itself: the default path (fused LSTM/GRU where supported), the plain step loop, its kernels on request."""

from __future__ import annotations

from collections.abc import Iterable
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
    "fused, unroll=1": {"fused": True, "unroll": 1},
    "fused, unroll=2": {"fused": True, "unroll": 2},
    "fused, unroll=4": {"fused": True, "unroll": 4},
    "fused, unroll=8": {"fused": True, "unroll": 8},
    "fused, unroll=16": {"fused": True, "unroll": 16},
    "fused, remat": {"fused": True, "remat": True},
}

# --kernels: recurrax's other whole-sequence implementations (ScanOptions.kernel), run with fused=True so that
# a kernel that cannot run here is an error row with its reason, never the XLA loop under the kernel's name.
KERNEL_VARIANTS = {
    "pallas": ("recurrax (kernel=pallas)", {"kernel": "pallas", "fused": True}),
    "cudnn": ("recurrax (kernel=cudnn)", {"kernel": "cudnn", "fused": True}),
}
# jax.experimental.rnn runs only the LSTM on cuDNN.
KERNEL_CELLS = {"pallas": ("lstm", "gru"), "cudnn": ("lstm",)}
KERNEL_PATHS = {
    "pallas": (
        "Pallas kernels (Triton on a GPU, Mosaic on a TPU, interpreted elsewhere): all T steps per kernel, "
        "backward kernel"
    ),
    "cudnn": "cuDNN LSTM via jax.experimental.rnn.lstm, weights packed per call",
}


def kernel_variants(cell: str, kernels: Iterable[str]) -> dict[str, dict]:
    """The variants ``--kernels`` asks for that ``cell`` has (name -> scan keywords)."""
    unknown = sorted(set(kernels) - set(KERNEL_VARIANTS))
    if unknown:
        raise ValueError(f"kernels: unknown {unknown}; choose from {sorted(KERNEL_VARIANTS)}")
    return dict(KERNEL_VARIANTS[k] for k in kernels if cell in KERNEL_CELLS[k])


def describe(cell_obj: Any, params: Any, xs: Any, kwargs: dict) -> str:
    """The path the engine takes for this cell and these options (time-major ``xs``), in words."""
    import recurrax
    from recurrax._scan import _use_sequence
    from recurrax.cells import _fused

    options = recurrax.ScanOptions(**kwargs)
    carry = cell_obj.initial_carry(xs.shape[1:-1])
    if options.kernel in KERNEL_PATHS:
        reason = cell_obj.sequence_unsupported(params, carry, xs, options)
        return KERNEL_PATHS[options.kernel] + (f" (cannot run here: {reason})" if reason else "")
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
    cell: str,
    mode: str,
    cfg: Config,
    xs: np.ndarray,
    *,
    variants: dict[str, dict] | None = None,
    kernels: Iterable[str] = (),
    **options: Any,
) -> list[Impl]:
    import jax
    import jax.numpy as jnp

    import recurrax

    cell_obj = recurrax.lstm(cfg.H) if cell == "lstm" else recurrax.gru(cfg.H)
    params = cell_obj.init(jax.random.key(0), cfg.D)
    x = jnp.asarray(xs)
    impls = []
    chosen = dict(variants or DEFAULT_VARIANTS)
    if variants is None and recurrax.ScanOptions().steps_per_iteration() != 1:
        # Where the default unrolls (a GPU), one step per iteration beside it: the default's evidence per shape.
        chosen["recurrax (unroll=1)"] = {"unroll": 1}
    for name, kwargs in {**chosen, **kernel_variants(cell, kernels)}.items():

        def forward(p: Any, x: Any, kwargs: dict = kwargs) -> Any:
            ys, _ = recurrax.scan(cell_obj, p, x, **kwargs)
            return ys

        path = describe(cell_obj, params, jnp.swapaxes(x, 0, 1), kwargs)
        impls.append(jax_impl(name, "recurrax", path, forward, params, x, mode, extra={"scan_kwargs": kwargs}))
    return impls
