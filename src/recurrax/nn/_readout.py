"""Reading one vector per sequence out of per-step features, respecting each example's length."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

from recurrax._ops import padding_mask
from recurrax._types import Array

Readout = Literal["last", "mean", "sequence"]
READOUTS: tuple[str, ...] = ("last", "mean", "sequence")


def read_out(ys: Array, lengths: Array | None, readout: Readout) -> Array:
    """Per-step features ``ys[B, T, F]`` → ``[B, F]`` (``"last"``, ``"mean"``) or ``[B, T, F]`` (``"sequence"``).

    ``"last"`` takes each example's last valid step ``ys[b, lengths[b] - 1]``
    (``ys[:, -1]`` without ``lengths``); ``"mean"`` averages the valid steps;
    ``"sequence"`` keeps every step, for per-step targets.

    Example:
      >>> import jax.numpy as jnp
      >>> ys = jnp.arange(6.0).reshape(1, 3, 2)
      >>> read_out(ys, jnp.array([2]), "last").tolist(), read_out(ys, jnp.array([2]), "mean").tolist()
      ([[2.0, 3.0]], [[1.0, 2.0]])
    """
    if readout == "sequence":
        return ys
    num_steps = ys.shape[-2]
    if readout == "last":
        if lengths is None:
            return ys[..., -1, :]
        index = (lengths - 1).astype(jnp.int32)[:, None, None]
        return jnp.take_along_axis(ys, index, axis=-2)[:, 0, :]
    if readout == "mean":
        if lengths is None:
            return jnp.mean(ys, axis=-2)
        valid = padding_mask(lengths, num_steps)
        total = jnp.sum(jnp.where(valid[..., None], ys, jnp.zeros((), ys.dtype)), axis=-2)
        return total / lengths.astype(ys.dtype)[:, None]
    raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
