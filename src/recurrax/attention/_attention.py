"""Scaled dot-product attention with grouped heads, causal and padding masks, on ``jax.nn.dot_product_attention``."""

from __future__ import annotations

import math
from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
import numpy as np

from recurrax._ops import dropout, padding_mask, stats_dtype
from recurrax._types import Array
from recurrax._validation import as_array, check_choice, check_lengths, check_rate
from recurrax.attention._masks import make_attention_mask

Implementation = Literal["xla", "cudnn"] | None
IMPLEMENTATIONS: tuple[Any, ...] = (None, "xla", "cudnn")


def _check_qkv(query: Any, key: Any, value: Any) -> tuple[Array, Array, Array]:
    query, key, value = (jnp.asarray(as_array(a, n)) for a, n in ((query, "query"), (key, "key"), (value, "value")))
    for name, a in (("query", query), ("key", key), ("value", value)):
        if a.ndim < 3:
            raise ValueError(f"{name} must have shape [*B, T, heads, head_dim], got shape {tuple(a.shape)}")
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"{name} must have a floating dtype, got {a.dtype}")
    if key.shape != value.shape:
        raise ValueError(f"key and value must have the same shape, got {tuple(key.shape)} and {tuple(value.shape)}")
    if not query.dtype == key.dtype == value.dtype:
        raise TypeError(f"query, key and value must share a dtype, got {query.dtype}, {key.dtype}, {value.dtype}")
    if query.shape[:-3] != key.shape[:-3]:
        raise ValueError(
            f"query and key must have the same batch dims, got {query.shape[:-3]} and {key.shape[:-3]} "
            f"(shapes {tuple(query.shape)} and {tuple(key.shape)})"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key must have the same head_dim, got {query.shape[-1]} and {key.shape[-1]}")
    num_heads, num_kv_heads = query.shape[-2], key.shape[-2]
    if num_heads % num_kv_heads:
        raise ValueError(
            f"the query heads ({num_heads}) must be a multiple of the key/value heads ({num_kv_heads}) "
            "for grouped-query attention"
        )
    return query, key, value


def _check_broadcast(array: Any, name: str, full: tuple[int, ...], boolean: bool) -> Array | None:
    if array is None:
        return None
    checked = jnp.asarray(as_array(array, name))
    if boolean and checked.dtype != jnp.bool_:
        raise TypeError(f"{name} must be boolean (True = may attend), got dtype {checked.dtype}")
    if not boolean and not jnp.issubdtype(checked.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype, got {checked.dtype}")
    try:
        ok = np.broadcast_shapes(checked.shape, full) == full
    except ValueError:
        ok = False
    if not ok or checked.ndim > len(full):
        raise ValueError(
            f"{name} of shape {tuple(checked.shape)} does not broadcast to [*B, heads, T, S] = {full}; "
            "use a head axis of 1 or heads, and query/key axes of 1, T or S"
        )
    return checked


def _as_4d(array: Array | None, full: tuple[int, ...]) -> Array | None:
    """``[..., h, T, S]`` broadcastable to ``(*B, N, T, S)`` → ``[B' , h', T, S]`` with ``B' ∈ {1, prod(B)}``."""
    if array is None:
        return None
    batch_ndim = len(full) - 3
    array = array.reshape((1,) * (len(full) - array.ndim) + array.shape)
    heads = array.shape[-3]
    if all(d == 1 for d in array.shape[:batch_ndim]):
        array = jnp.broadcast_to(array, (*array.shape[:batch_ndim], heads, *full[-2:]))
        return array.reshape((1, heads, *full[-2:]))
    array = jnp.broadcast_to(array, (*full[:batch_ndim], heads, *full[-2:]))
    return array.reshape((-1, heads, *full[-2:]))


def _zero_padded_steps(x: Array, lengths: Array | None) -> Array:
    """Zeros the steps of ``x[*B, T, heads, H]`` past each example's length."""
    if lengths is None:
        return x
    valid = padding_mask(lengths, x.shape[-3])[..., None, None]
    return jnp.where(valid, x, jnp.zeros_like(x))


def _fused_attention(
    query: Array,
    key: Array,
    value: Array,
    bias: Array | None,
    mask: Array | None,
    full: tuple[int, ...],
    flat: int,
    scale: float,
    causal: bool,
    query_lengths: Array | None,
    key_lengths: Array | None,
    implementation: Implementation,
) -> Array:
    T, N, H = query.shape[-3:]
    S, K = key.shape[-3], key.shape[-2]
    return jax.nn.dot_product_attention(
        query.reshape(flat, T, N, H),
        key.reshape(flat, S, K, H),
        value.reshape(flat, S, K, H),
        bias=_as_4d(bias, full),
        mask=_as_4d(mask, full),
        scale=scale,
        is_causal=causal,
        query_seq_lengths=None if query_lengths is None else query_lengths.reshape(flat).astype(jnp.int32),
        key_value_seq_lengths=None if key_lengths is None else key_lengths.reshape(flat).astype(jnp.int32),
        implementation=implementation,
    )


@overload
def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    *,
    mask: Array | None = None,
    bias: Array | None = None,
    causal: bool = False,
    query_lengths: Array | None = None,
    key_lengths: Array | None = None,
    scale: float | None = None,
    return_weights: Literal[False] = False,
    dropout_rate: float = 0.0,
    dropout_key: Array | None = None,
    implementation: Implementation = None,
) -> Array: ...


@overload
def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    *,
    mask: Array | None = None,
    bias: Array | None = None,
    causal: bool = False,
    query_lengths: Array | None = None,
    key_lengths: Array | None = None,
    scale: float | None = None,
    return_weights: Literal[True],
    dropout_rate: float = 0.0,
    dropout_key: Array | None = None,
    implementation: Implementation = None,
) -> tuple[Array, Array]: ...


@overload
def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    *,
    mask: Array | None = None,
    bias: Array | None = None,
    causal: bool = False,
    query_lengths: Array | None = None,
    key_lengths: Array | None = None,
    scale: float | None = None,
    return_weights: bool = False,
    dropout_rate: float = 0.0,
    dropout_key: Array | None = None,
    implementation: Implementation = None,
) -> Array | tuple[Array, Array]: ...


def dot_product_attention(
    query: Array,
    key: Array,
    value: Array,
    *,
    mask: Array | None = None,
    bias: Array | None = None,
    causal: bool = False,
    query_lengths: Array | None = None,
    key_lengths: Array | None = None,
    scale: float | None = None,
    return_weights: bool = False,
    dropout_rate: float = 0.0,
    dropout_key: Array | None = None,
    implementation: Implementation = None,
) -> Array | tuple[Array, Array]:
    """Multi-head scaled dot-product attention, ``softmax(q kᵀ · scale + bias) v`` per head.

    Grouped-query attention comes from the shapes: ``N`` query heads share
    ``K`` key/value heads (``N % K == 0``; ``K == 1`` is multi-query
    attention), query head ``n`` reading key head ``n // (N // K)``.

    Masks combine (True = may attend): ``mask``; ``causal`` (query ``t`` sees
    keys ``s ≤ t``, aligned at the first step); ``key_lengths`` hides each
    example's padded keys; ``query_lengths`` zeroes the outputs of padded
    queries, the same convention as :func:`recurrax.scan`. A query that can
    see no key at all gets a zero output (and zero weights). Padded steps
    (past ``query_lengths`` or ``key_lengths``) may hold anything, NaN
    included: they are zeroed first and reach no output and no gradient.

    Without ``return_weights`` and dropout this calls
    :func:`jax.nn.dot_product_attention` (cuDNN's fused kernel on GPUs with
    ``implementation="cudnn"``); otherwise (and for float64 inputs, whose
    softmax jax would take in float32) it computes the same thing with
    explicit einsums, so that the weights can be returned (e.g. for plots)
    or dropped out. Logits and softmax are computed in at least float32.

    Shapes:
      query: ``[*B, T, N, H]``; key, value: ``[*B, S, K, H]``.
      mask, bias: broadcastable to ``[*B, N, T, S]``.
      query_lengths: ``[*B]`` in ``[1, T]``; key_lengths: ``[*B]`` in ``[1, S]``.
      returns: ``[*B, T, N, H]`` (and weights ``[*B, N, T, S]``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.attention import dot_product_attention
      >>> q = jax.random.normal(jax.random.key(0), (2, 5, 4, 8))       # 4 query heads
      >>> kv = jax.random.normal(jax.random.key(1), (2, 5, 2, 8))      # 2 key/value heads
      >>> out, w = dot_product_attention(q, kv, kv, causal=True, key_lengths=jnp.array([5, 3]),
      ...                                return_weights=True)
      >>> out.shape, w.shape, bool(w[1, :, :, 3:].sum() == 0)           # padded keys get no weight
      ((2, 5, 4, 8), (2, 4, 5, 5), True)
    """
    query, key, value = _check_qkv(query, key, value)
    check_choice(implementation, "implementation", IMPLEMENTATIONS)
    check_rate(dropout_rate, "dropout_rate")
    batch_shape = query.shape[:-3]
    T, N, H = query.shape[-3:]
    S, K = key.shape[-3], key.shape[-2]
    full = (*batch_shape, N, T, S)
    mask = _check_broadcast(mask, "mask", full, boolean=True)
    bias = _check_broadcast(bias, "bias", full, boolean=False)
    if query_lengths is not None:
        query_lengths = check_lengths(query_lengths, batch_shape, T)
    if key_lengths is not None:
        key_lengths = check_lengths(key_lengths, batch_shape, S)
    scale = 1.0 / math.sqrt(H) if scale is None else float(scale)
    # Padding may hold anything (NaN, Inf): zero it before any arithmetic, or a masked
    # weight of 0 times a NaN value, and every gradient through it, would still be NaN.
    query = _zero_padded_steps(query, query_lengths)
    key = _zero_padded_steps(key, key_lengths)
    value = _zero_padded_steps(value, key_lengths)

    # Every mask in one place: where a query may look, and which queries exist at all.
    visible = make_attention_mask(T, S, query_lengths=query_lengths, key_lengths=key_lengths, causal=causal)
    if mask is not None:
        visible = visible & mask

    use_weights = return_weights or (dropout_key is not None and dropout_rate > 0.0)
    # jax's kernel takes its softmax in float32 even for float64 inputs; keep float64 exact here.
    if not use_weights and query.dtype != jnp.float64:
        flat = int(np.prod(batch_shape, dtype=np.int64))
        # jax's implementation promotes bf16 logits to float32 implicitly, which strict promotion rejects.
        with jax.numpy_dtype_promotion("standard"):
            out = _fused_attention(
                query, key, value, bias, mask, full, flat, scale, causal, query_lengths, key_lengths, implementation
            )
        out = out.reshape(query.shape)
        if mask is not None or query_lengths is not None:
            # Queries that see nothing (padding, or fully masked rows) output zeros, not a uniform average.
            sees_something = jnp.broadcast_to(jnp.any(visible, axis=-1), (*batch_shape, N, T))
            out = jnp.where(jnp.swapaxes(sees_something, -1, -2)[..., None], out, jnp.zeros_like(out))
        return out

    acc = stats_dtype(query.dtype)
    G = N // K
    grouped = query.reshape((*batch_shape, T, K, G, H))
    logits = jnp.einsum("...tkgh,...skh->...kgts", grouped, key, preferred_element_type=acc)
    logits = logits.reshape(full) * jnp.asarray(scale, acc)
    if bias is not None:
        logits = logits + bias.astype(acc)
    # The large negative jax uses: masked entries underflow to exactly 0 after the softmax.
    large_negative = jnp.asarray(-0.7 * float(np.finfo(np.float32).max), acc)
    probs = jax.nn.softmax(jnp.where(visible, logits, large_negative), axis=-1)
    weights = jnp.where(visible, probs, jnp.zeros_like(probs))
    attended = dropout(weights, dropout_rate, dropout_key).astype(value.dtype)
    out = jnp.einsum("...kgts,...skh->...tkgh", attended.reshape((*batch_shape, K, G, T, S)), value)
    out = out.reshape(query.shape)
    return (out, weights) if return_weights else out
