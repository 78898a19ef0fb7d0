"""Attention masks that agree with the scan engine's ``lengths``."""

from __future__ import annotations

import jax.numpy as jnp

from recurrax._types import Array


def make_attention_mask(
    num_queries: int,
    num_keys: int,
    *,
    query_lengths: Array | None = None,
    key_lengths: Array | None = None,
    causal: bool = False,
    query_offset: Array | int = 0,
) -> Array:
    """Boolean mask, True where query ``t`` may attend to key ``s``; shape ``[*B or nothing, 1, T, S]``.

    ``query_lengths[*B]`` and ``key_lengths[*B]`` mark the valid steps of each
    example, exactly as ``lengths`` does for :func:`recurrax.scan`: keys past
    an example's length are hidden and padded queries see nothing. With
    ``causal``, query ``t`` sits at position ``query_offset + t`` and sees the
    keys at positions ``≤`` its own (``query_offset`` is a scalar or ``[*B]``,
    e.g. the number of steps already in a key/value cache).

    Example:
      >>> import jax.numpy as jnp
      >>> from recurrax.attention import make_attention_mask
      >>> mask = make_attention_mask(3, 3, key_lengths=jnp.array([3, 2]), causal=True)
      >>> mask.shape, mask[1, 0].astype(int).tolist()
      ((2, 1, 3, 3), [[1, 0, 0], [1, 1, 0], [1, 1, 0]])
    """
    # int32 throughout: lengths may come in any integer dtype (strict promotion).
    queries = jnp.arange(num_queries, dtype=jnp.int32)[:, None]
    keys = jnp.arange(num_keys, dtype=jnp.int32)[None, :]
    mask = jnp.ones((num_queries, num_keys), bool)
    if causal:
        offset = jnp.asarray(query_offset).astype(jnp.int32)
        mask = keys <= offset[..., None, None] + queries
    if key_lengths is not None:
        mask = mask & (keys < jnp.asarray(key_lengths).astype(jnp.int32)[..., None, None])
    if query_lengths is not None:
        mask = mask & (queries < jnp.asarray(query_lengths).astype(jnp.int32)[..., None, None])
    return jnp.expand_dims(mask, -3)
