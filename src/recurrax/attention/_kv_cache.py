"""A key/value cache for incremental (token-by-token) decoding of causal attention."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from recurrax._types import Array
from recurrax._validation import is_concrete


class KVCache(NamedTuple):
    """The keys and values of the steps decoded so far, per example.

    Fields:
      key, value: ``[*B, max_length, K, H]`` (``K`` key/value heads of size ``H``).
      length: ``[*B]`` int32, how many steps each example has filled; new
        steps are written at ``length, length + 1, …`` and positions past
        ``length`` are never attended to.
    """

    key: Array
    value: Array
    length: Array

    @property
    def max_length(self) -> int:
        return int(self.key.shape[-3])


def init_kv_cache(
    batch_shape: tuple[int, ...], max_length: int, num_kv_heads: int, head_dim: int, dtype: DTypeLike
) -> KVCache:
    """An empty cache with room for ``max_length`` steps."""
    zeros = jnp.zeros((*batch_shape, max_length, num_kv_heads, head_dim), dtype)
    return KVCache(key=zeros, value=zeros, length=jnp.zeros(batch_shape, jnp.int32))


def append_to_cache(cache: KVCache, keys: Array, values: Array, num_new: int | Array) -> KVCache:
    """Writes ``keys, values[*B, T_new, K, H]`` at each example's ``length``; ``length += num_new``.

    Steps past ``num_new[b]`` are written too but stay beyond the new length,
    so they are never attended to and the next call overwrites them. Writes
    past ``max_length`` are dropped; when the lengths are concrete that is
    an error here (under ``jit`` it cannot be checked: size the cache for the
    longest sequence).
    """
    batch_shape = cache.length.shape
    num_steps = keys.shape[-3]
    if is_concrete(cache.length) and is_concrete(num_new) and cache.length.size:
        needed = int(np.max(np.asarray(cache.length) + np.asarray(num_new)))
        if needed > cache.max_length:
            raise ValueError(f"the cache holds max_length={cache.max_length} steps, but decoding needs {needed}")
    flat = int(np.prod(batch_shape, dtype=np.int64))
    positions = cache.length.reshape(flat, 1) + jnp.arange(num_steps, dtype=jnp.int32)[None, :]
    rows = jnp.broadcast_to(jnp.arange(flat, dtype=jnp.int32)[:, None], positions.shape)

    def write(store: Array, new: Array) -> Array:
        flat_store = store.reshape((flat, *store.shape[-3:]))
        flat_new = new.reshape((flat, *new.shape[-3:])).astype(store.dtype)
        return flat_store.at[rows, positions].set(flat_new, mode="drop").reshape(store.shape)

    return KVCache(
        key=write(cache.key, keys),
        value=write(cache.value, values),
        length=cache.length + jnp.asarray(num_new).astype(jnp.int32),
    )
