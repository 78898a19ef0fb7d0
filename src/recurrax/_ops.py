"""Array helpers that every block shares: the padding mask, dropout, layer norm, activations, dtypes.

Part of the ground floor: cells, convolutions, attention and the scan engine
import it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from recurrax._types import Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # the erf form, as PyTorch's default
    "gelu_tanh": jax.nn.gelu,  # the tanh approximation (GPT-2)
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "identity": lambda x: x,
}

_LAYER_NORM_EPS = 1e-5


@overload
def padding_mask(lengths: Array, num_steps: int, *, time_major: bool = False) -> Array: ...


@overload
def padding_mask(lengths: None, num_steps: int, *, time_major: bool = False) -> None: ...


@overload
def padding_mask(lengths: Array | None, num_steps: int, *, time_major: bool = False) -> Array | None: ...


def padding_mask(lengths: Array | None, num_steps: int, *, time_major: bool = False) -> Array | None:
    """True on each example's first ``lengths[b]`` steps: ``[*B, T]`` (``[T, *B]`` time-major); None: all valid.

    The one place recurrax turns lengths into a mask (the engine, the blocks, losses, readouts).
    """
    if lengths is None:
        return None
    steps = jnp.arange(num_steps, dtype=lengths.dtype)
    if time_major:
        return steps.reshape((num_steps,) + (1,) * lengths.ndim) < lengths[None]
    return steps < lengths[..., None]


def zero_padding(ys: Array, valid: Array | None) -> Array:
    """Zeros ``ys[..., F]`` where ``valid`` (``ys``'s shape without ``F``) is False."""
    if valid is None:
        return ys
    return jnp.where(valid[..., None], ys, jnp.zeros_like(ys))


def tree_where(condition: Array, on_true: Any, on_false: Any) -> Any:
    """``jnp.where`` over matching pytrees, ``condition[*B]`` broadcast on the right."""

    def select(a: Array, b: Array) -> Array:
        cond = jnp.reshape(condition, condition.shape + (1,) * (jnp.ndim(a) - condition.ndim))
        return jnp.where(cond, a, b)

    return jax.tree.map(select, on_true, on_false)


def to_batch_major(xs: Array, time_major: bool) -> Array:
    """``[T, *B, D]`` → ``[*B, T, D]`` (identity when already batch-major)."""
    return jnp.moveaxis(xs, 0, xs.ndim - 2) if time_major else xs


def from_batch_major(ys: Array, time_major: bool) -> Array:
    """``[*B, T, F]`` → ``[T, *B, F]`` when ``time_major`` (else identity)."""
    return jnp.moveaxis(ys, ys.ndim - 2, 0) if time_major else ys


def layer_norm(x: Array, scale: Array, bias: Array | None = None, eps: float = _LAYER_NORM_EPS) -> Array:
    """Normalises the last axis of ``x`` (statistics in at least float32)."""
    xf = x.astype(stats_dtype(x.dtype))
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    y = ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype) * scale.astype(x.dtype)
    return y if bias is None else y + bias.astype(x.dtype)


def compute_dtype(dtype: DTypeLike | None, *arrays: Any) -> jnp.dtype:
    """``dtype`` if given, else the promotion of the arrays' dtypes (strict-promotion safe)."""
    if dtype is not None:
        return jnp.dtype(dtype)
    return jnp.result_type(*arrays)


def stats_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    """At least float32, for softmax and normalisation statistics."""
    return np.dtype(np.float64) if jnp.dtype(dtype) == np.float64 else np.dtype(np.float32)


def dense(x: Array, kernel: Array, bias: Array | None, dtype: jnp.dtype) -> Array:
    """``x @ kernel + bias`` in ``dtype``."""
    y = jnp.matmul(x.astype(dtype), kernel.astype(dtype))
    return y if bias is None else y + bias.astype(dtype)


def dropout(x: Array, rate: float, key: Array | None) -> Array:
    """Inverted dropout: zero each entry with probability ``rate``; identity when ``key`` is None."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros_like(x))


def split_key(key: Array | None, num: int) -> list[Array | None]:
    """``num`` independent keys, or ``num`` Nones when dropout is off."""
    if key is None:
        return [None] * num
    return list(jax.random.split(key, num))


def check_activation(value: Any, name: str = "activation") -> None:
    """Raises unless ``value`` names one of :data:`ACTIVATIONS`."""
    if value not in ACTIVATIONS:
        raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)}, got {value!r}")


def linear_combine(earlier: tuple[Array, ...], later: tuple[Array, ...]) -> tuple[Array, ...]:
    """Two steps ``h ↦ a ⊙ h + b`` as one, ``(a, b)`` each (``earlier`` applied first): a linear scan's operator."""
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2
