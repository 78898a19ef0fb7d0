"""Positional encodings: sinusoidal (Vaswani et al., 2017), learned tables, and rotary (RoPE, Su et al., 2021)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from recurrax._ops import stats_dtype
from recurrax._types import Array
from recurrax._validation import as_array, check_positive_int, is_concrete


def _check_positions(positions: Any) -> Array:
    positions = as_array(positions, "positions")
    if not jnp.issubdtype(positions.dtype, jnp.integer):
        raise TypeError(f"positions must be integers, got dtype {positions.dtype}")
    if is_concrete(positions) and positions.size and int(np.min(np.asarray(positions))) < 0:
        raise ValueError(f"positions must be >= 0, got min {int(np.min(np.asarray(positions)))}")
    return jnp.asarray(positions)


def sinusoidal_positions(
    positions: Array, features: int, *, max_timescale: float = 10_000.0, dtype: DTypeLike = jnp.float32
) -> Array:
    """The fixed sinusoidal encoding of Vaswani et al. (2017), interleaved as in the paper.

    ``PE[p, 2i] = sin(p / max_timescale^(2i/F))``, ``PE[p, 2i+1] = cos(p / max_timescale^(2i/F))``.

    Args:
      positions: integer positions ``[...]`` (e.g. ``jnp.arange(T)``).
      features: ``F``, the encoding width (odd widths drop the last cosine).
      max_timescale: the longest wavelength, over ``2π``.
      dtype: dtype of the result (computed in at least float32).

    Returns:
      ``[..., F]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from recurrax.attention import sinusoidal_positions
      >>> pe = sinusoidal_positions(jnp.arange(3), 4)
      >>> pe.shape, pe[0].tolist()
      ((3, 4), [0.0, 1.0, 0.0, 1.0])
    """
    check_positive_int(features, "features")
    positions = _check_positions(positions)
    acc = stats_dtype(dtype)
    pairs = (features + 1) // 2
    inverse_frequency = jnp.asarray(max_timescale, acc) ** (-jnp.arange(pairs, dtype=acc) * 2 / features)
    angles = positions.astype(acc)[..., None] * inverse_frequency
    encoding = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape((*positions.shape, 2 * pairs))
    return encoding[..., :features].astype(dtype)


def learned_positions(table: Array, positions: Array) -> Array:
    """Looks up a learned position table ``[max_length, F]`` at ``positions[...]`` → ``[..., F]``."""
    positions = _check_positions(positions)
    if is_concrete(positions) and positions.size and int(np.max(np.asarray(positions))) >= table.shape[0]:
        raise ValueError(
            f"position {int(np.max(np.asarray(positions)))} is past the learned table's max_length={table.shape[0]}"
        )
    return jnp.take(table, positions, axis=0)


def rope(x: Array, positions: Array, *, max_timescale: float = 10_000.0) -> Array:
    """Rotary position embedding (Su et al., 2021): rotates feature pairs by position-dependent angles.

    The ``H`` features of each head are split into halves ``(x1, x2)`` (the
    GPT-NeoX/LLaMA layout); pair ``i`` turns by ``p · θ_i`` with
    ``θ_i = max_timescale^(-2i/H)``::

        rope(x, p) = [x1 cos(pθ) - x2 sin(pθ),  x2 cos(pθ) + x1 sin(pθ)]

    so that ``⟨rope(q, m), rope(k, n)⟩`` depends on ``m - n`` only.

    Args:
      x: queries or keys ``[..., T, N, H]`` with ``H`` even.
      positions: integer positions broadcastable to ``x.shape[:-2]`` (e.g. ``[T]`` or ``[*B, T]``).
      max_timescale: the base of the angle frequencies.

    Returns:
      ``x`` rotated, same shape and dtype (angles computed in at least float32).

    Example:
      >>> import jax.numpy as jnp
      >>> from recurrax.attention import rope
      >>> q = jnp.ones((4, 1, 2))                       # T=4, one head, H=2
      >>> [round(float(v), 3) for v in rope(q, jnp.arange(4))[:, 0, 0]]   # cos(p) - sin(p)
      [1.0, -0.301, -1.325, -1.131]
    """
    x = jnp.asarray(as_array(x, "x"))
    if x.ndim < 3 or x.shape[-1] % 2:
        raise ValueError(f"rope needs x of shape [..., T, N, H] with an even head size H, got {tuple(x.shape)}")
    positions = _check_positions(positions)
    try:
        np.broadcast_shapes(positions.shape, x.shape[:-2])
    except ValueError as err:
        raise ValueError(
            f"positions of shape {tuple(positions.shape)} do not broadcast to x's leading dims {x.shape[:-2]}"
        ) from err
    acc = stats_dtype(x.dtype)
    half = x.shape[-1] // 2
    inverse_frequency = jnp.asarray(max_timescale, acc) ** (-jnp.arange(half, dtype=acc) * 2 / x.shape[-1])
    angles = positions.astype(acc)[..., None, None] * inverse_frequency  # [..., T, 1, H/2]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = x[..., :half].astype(acc), x[..., half:].astype(acc)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)
