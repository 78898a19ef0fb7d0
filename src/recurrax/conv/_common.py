"""Helpers shared by the sequence blocks (convolutions, attention): checks, dropout, activations, masks.

Each check names the argument, what it got and what it expected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from recurrax._validation import check_lengths, check_sequence

Array = jax.Array
# jax.nn.initializers' signature (the same alias as recurrax.cells'; defined here so conv does not import cells).
Initializer = Callable[[Array, tuple[int, ...], DTypeLike], Array]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # the erf form, as PyTorch's default
    "gelu_tanh": jax.nn.gelu,  # the tanh approximation (GPT-2)
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "identity": lambda x: x,
}


def check_positive_int(value: Any, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_optional_positive_int(value: Any, name: str) -> int | None:
    return None if value is None else check_positive_int(value, name)


def check_rate(value: Any, name: str) -> float:
    """A dropout rate in ``[0, 1)``."""
    if not isinstance(value, (int, float, np.floating)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)


def check_activation(value: Any, name: str = "activation") -> None:
    if value not in ACTIVATIONS:
        raise ValueError(f"{name} must be one of {sorted(ACTIVATIONS)}, got {value!r}")


def compute_dtype(dtype: DTypeLike | None, *arrays: Any) -> jnp.dtype:
    """``dtype`` if given, else the promotion of the arrays' dtypes (strict-promotion safe)."""
    if dtype is not None:
        return jnp.dtype(dtype)
    return jnp.result_type(*arrays)


def stats_dtype(dtype: DTypeLike) -> jnp.dtype:
    """At least float32, for softmax and normalisation statistics."""
    return jnp.dtype(jnp.float64) if jnp.dtype(dtype) == jnp.float64 else jnp.dtype(jnp.float32)


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


def to_batch_major(xs: Array, time_major: bool) -> Array:
    """``[T, *B, D]`` → ``[*B, T, D]`` (identity when already batch-major)."""
    return jnp.moveaxis(xs, 0, xs.ndim - 2) if time_major else xs


def from_batch_major(ys: Array, time_major: bool) -> Array:
    return jnp.moveaxis(ys, ys.ndim - 2, 0) if time_major else ys


def check_block_inputs(
    xs: Any, lengths: Any, *, features: int | None, time_major: bool, name: str = "xs"
) -> tuple[Array, Array | None]:
    """Checks ``xs[*B, T, D]`` (or ``[T, *B, D]``) and ``lengths[*B]``; returns them batch-major."""
    xs = check_sequence(xs, name, time_major=time_major, features=features)
    xs = to_batch_major(xs, time_major)
    if lengths is not None:
        lengths = check_lengths(lengths, xs.shape[:-2], xs.shape[-2])
    return xs, lengths


def valid_mask(lengths: Array | None, batch_shape: tuple[int, ...], num_steps: int) -> Array | None:
    """``[*B, T]`` booleans, True on each example's first ``lengths[b]`` steps (None: all valid)."""
    if lengths is None:
        return None
    steps = jnp.arange(num_steps, dtype=lengths.dtype)
    return steps < lengths[..., None]


def zero_padding(ys: Array, valid: Array | None) -> Array:
    """Zeros ``ys[*B, T, F]`` past each example's length."""
    if valid is None:
        return ys
    return jnp.where(valid[..., None], ys, jnp.zeros_like(ys))


def dense(x: Array, kernel: Array, bias: Array | None, dtype: jnp.dtype) -> Array:
    """``x @ kernel + bias`` in ``dtype``."""
    y = jnp.matmul(x.astype(dtype), kernel.astype(dtype))
    return y if bias is None else y + bias.astype(dtype)
