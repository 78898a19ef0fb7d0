"""Multi-head attention with grouped key/value heads, rotary positions and a key/value cache."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._ops import compute_dtype, from_batch_major, padding_mask, zero_padding
from recurrax._types import Array, Initializer
from recurrax._validation import (
    check_block_inputs,
    check_fields,
    check_float_dtype,
    check_lengths,
    check_positive_fields,
    check_positive_int,
    check_rate_fields,
)
from recurrax.attention._attention import Implementation, dot_product_attention
from recurrax.attention._kv_cache import KVCache, append_to_cache, init_kv_cache
from recurrax.attention._masks import make_attention_mask
from recurrax.attention._positional import rope as apply_rope

default_attention_kernel_init: Initializer = jax.nn.initializers.lecun_normal()

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiHeadAttention:
    """Multi-head attention (Vaswani et al., 2017), pure: ``init`` makes params, ``apply`` runs it.

    Math, with ``N`` query heads, ``K`` key/value heads (``N % K == 0``) of size ``H``::

        q = x_q W_q + b_q          # [*B, T, N, H]
        k = x_kv W_k + b_k         # [*B, S, K, H]  (x_kv = x_q for self-attention)
        v = x_kv W_v + b_v         # [*B, S, K, H]
        y = attention(q, k, v) W_o + b_o          # [*B, T, O]

    ``num_kv_heads`` below ``num_heads`` gives grouped-query attention
    (``1``: multi-query). With ``rope``, queries and keys of self-attention
    are rotated by their positions (:func:`recurrax.attention.rope`).
    Parameters use Flax's layout: ``query/key/value`` ``{"kernel": [D, heads, H],
    "bias": [heads, H]}`` and ``out`` ``{"kernel": [N, H, O], "bias": [O]}``,
    so they load into ``flax.nnx.MultiHeadAttention`` unchanged.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.attention import MultiHeadAttention
      >>> mha = MultiHeadAttention(num_heads=4, num_kv_heads=2)
      >>> params = mha.init(jax.random.key(0), in_features=16)
      >>> xs = jnp.ones((2, 7, 16))
      >>> mha.apply(params, xs, lengths=jnp.array([7, 5]), causal=True).shape
      (2, 7, 16)
    """

    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    qkv_features: int | None = None
    out_features: int | None = None
    use_bias: bool = True
    dropout_rate: float = 0.0
    rope: bool = False
    rope_max_timescale: float = 10_000.0
    implementation: Implementation = None
    kernel_init: Initializer = default_attention_kernel_init
    bias_init: Initializer = jax.nn.initializers.zeros
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def __post_init__(self) -> None:
        check_fields(self)
        check_positive_fields(self, "num_heads", "num_kv_heads", "head_dim", "qkv_features", "out_features")
        check_rate_fields(self, "dropout_rate")
        if not self.rope_max_timescale > 0:
            raise ValueError(f"MultiHeadAttention: rope_max_timescale must be > 0, got {self.rope_max_timescale!r}")
        check_float_dtype(self.dtype, "dtype")
        check_float_dtype(self.param_dtype, "param_dtype")
        if self.num_kv_heads is not None and self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads={self.num_kv_heads} "
                "(each key/value head serves a group of query heads)"
            )
        if self.head_dim is None and self.qkv_features is not None and self.qkv_features % self.num_heads:
            raise ValueError(f"qkv_features={self.qkv_features} must be divisible by num_heads={self.num_heads}")
        if self.rope and self.head_dim is not None and self.head_dim % 2:
            raise ValueError(f"rope needs an even head_dim, got {self.head_dim}")

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    def resolve_head_dim(self, in_features: int) -> int:
        """``head_dim``, or the attention width (``qkv_features`` or ``in_features``) over ``num_heads``."""
        if self.head_dim is not None:
            return self.head_dim
        width = self.qkv_features if self.qkv_features is not None else in_features
        if width % self.num_heads:
            raise ValueError(
                f"the attention width {width} (qkv_features, else in_features) must be divisible by "
                f"num_heads={self.num_heads}; set qkv_features or head_dim"
            )
        return width // self.num_heads

    def init(self, key: Array, in_features: int, kv_features: int | None = None) -> Params:
        """Fresh parameters for queries with ``in_features`` and keys/values with ``kv_features`` (default the same)."""
        check_positive_int(in_features, "in_features")
        kv_features = in_features if kv_features is None else check_positive_int(kv_features, "kv_features")
        N, K, H = self.num_heads, self.kv_heads, self.resolve_head_dim(in_features)
        if self.rope and H % 2:
            raise ValueError(f"rope needs an even head_dim, got {H} (set head_dim or qkv_features)")
        O = in_features if self.out_features is None else self.out_features
        dt = self.param_dtype
        keys = jax.random.split(key, 8)

        def dense(k_kernel: Array, k_bias: Array, fan_in: int, heads: int) -> Params:
            # Initialised as a [fan_in, heads·H] matrix, so fan-in based initialisers see the true fan-in.
            layer = {"kernel": self.kernel_init(k_kernel, (fan_in, heads * H), dt).reshape(fan_in, heads, H)}
            if self.use_bias:
                layer["bias"] = self.bias_init(k_bias, (heads, H), dt)
            return layer

        out = {"kernel": self.kernel_init(keys[6], (N * H, O), dt).reshape(N, H, O)}
        if self.use_bias:
            out["bias"] = self.bias_init(keys[7], (O,), dt)
        return {
            "query": dense(keys[0], keys[1], in_features, N),
            "key": dense(keys[2], keys[3], kv_features, K),
            "value": dense(keys[4], keys[5], kv_features, K),
            "out": out,
        }

    # ------------------------------------------------------------- internals
    def _project(self, layer: Params, x: Array, dt: jnp.dtype) -> Array:
        y = jnp.einsum("...d,dnh->...nh", x.astype(dt), layer["kernel"].astype(dt))
        return y + layer["bias"].astype(dt) if "bias" in layer else y

    def _output(self, params: Params, attended: Array, dt: jnp.dtype) -> Array:
        y = jnp.einsum("...tnh,nho->...to", attended, params["out"]["kernel"].astype(dt))
        return y + params["out"]["bias"].astype(dt) if "bias" in params["out"] else y

    def _rope(self, x: Array, positions: Array) -> Array:
        return apply_rope(x, positions, max_timescale=self.rope_max_timescale) if self.rope else x

    # ------------------------------------------------------------------ public
    @overload
    def apply(
        self,
        params: Params,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        lengths: Array | None = None,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        causal: bool = False,
        time_major: bool = False,
        return_weights: Literal[False] = False,
        dropout_key: Array | None = None,
    ) -> Array: ...

    @overload
    def apply(
        self,
        params: Params,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        lengths: Array | None = None,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        causal: bool = False,
        time_major: bool = False,
        return_weights: Literal[True],
        dropout_key: Array | None = None,
    ) -> tuple[Array, Array]: ...

    @overload
    def apply(
        self,
        params: Params,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        lengths: Array | None = None,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        causal: bool = False,
        time_major: bool = False,
        return_weights: bool = False,
        dropout_key: Array | None = None,
    ) -> Array | tuple[Array, Array]: ...

    def apply(
        self,
        params: Params,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        lengths: Array | None = None,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        causal: bool = False,
        time_major: bool = False,
        return_weights: bool = False,
        dropout_key: Array | None = None,
    ) -> Array | tuple[Array, Array]:
        """Self-attention (``inputs_kv=None``) or cross-attention to ``inputs_kv``.

        Shapes:
          inputs_q: ``[*B, T, D]``; inputs_kv: ``[*B, S, D_kv]`` (time-major: time first).
          lengths: ``[*B]`` valid query steps (and key steps, for self-attention);
            padded queries output zeros, padded keys are never attended to, and
            whatever padding holds (NaN included) reaches no value or gradient.
          kv_lengths: ``[*B]`` valid steps of ``inputs_kv`` (cross-attention).
          mask: extra boolean mask broadcastable to ``[*B, N, T, S]``.
          returns: ``[*B, T, O]`` (and the weights ``[*B, N, T, S]`` with ``return_weights``).

        Dropout on the attention weights is on when ``dropout_key`` is given.
        """
        d_in = int(params["query"]["kernel"].shape[0])
        xq, lengths = check_block_inputs(inputs_q, lengths, features=d_in, time_major=time_major, name="inputs_q")
        if inputs_kv is None:
            if kv_lengths is not None:
                raise ValueError("kv_lengths is for cross-attention; self-attention uses lengths for keys too")
            xkv, kv_lengths = xq, lengths
        else:
            if self.rope:
                raise ValueError("rope rotates self-attention only; build the cross-attention with rope=False")
            d_kv = int(params["key"]["kernel"].shape[0])
            xkv, kv_lengths = check_block_inputs(
                inputs_kv, kv_lengths, features=d_kv, time_major=time_major, name="inputs_kv"
            )
            if xkv.shape[:-2] != xq.shape[:-2]:
                raise ValueError(
                    f"inputs_q and inputs_kv must have the same batch dims, got {xq.shape[:-2]} and {xkv.shape[:-2]}"
                )
        # Padding may hold anything (NaN, Inf): zeroed before any arithmetic, it reaches no value or gradient.
        xq = zero_padding(xq, padding_mask(lengths, xq.shape[-2]))
        xkv = xq if inputs_kv is None else zero_padding(xkv, padding_mask(kv_lengths, xkv.shape[-2]))
        dt = compute_dtype(self.dtype, xq, params["query"]["kernel"])
        q = self._project(params["query"], xq, dt)
        k = self._project(params["key"], xkv, dt)
        v = self._project(params["value"], xkv, dt)
        if self.rope:
            positions = jnp.arange(xq.shape[-2], dtype=jnp.int32)
            q, k = self._rope(q, positions), self._rope(k, positions)
        result = dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            causal=causal,
            query_lengths=lengths,
            key_lengths=kv_lengths,
            return_weights=return_weights,
            dropout_rate=self.dropout_rate,
            dropout_key=dropout_key,
            implementation=self.implementation,
        )
        attended, weights = result if isinstance(result, tuple) else (result, None)
        ys = zero_padding(self._output(params, attended, dt), padding_mask(lengths, xq.shape[-2]))
        ys = from_batch_major(ys, time_major)
        return ys if weights is None else (ys, weights)

    def init_cache(
        self, params: Params, batch_shape: tuple[int, ...], max_length: int, dtype: DTypeLike | None = None
    ) -> KVCache:
        """An empty :class:`KVCache` for :meth:`decode` (dtype: the compute dtype by default)."""
        check_positive_int(max_length, "max_length")
        kernel = params["key"]["kernel"]
        dt = dtype if dtype is not None else compute_dtype(self.dtype, kernel)
        return init_kv_cache(tuple(batch_shape), max_length, int(kernel.shape[1]), int(kernel.shape[2]), dt)

    def decode(
        self, params: Params, inputs: Array, cache: KVCache, *, lengths: Array | None = None
    ) -> tuple[Array, KVCache]:
        """Causal self-attention for new steps ``inputs[*B, T_new, D]`` on top of ``cache``.

        New step ``t`` of example ``b`` sits at position ``cache.length[b] + t``
        and attends to every cached step and to new steps up to itself, so
        decoding a sequence one step (or one chunk) at a time gives the same
        outputs as :meth:`apply` with ``causal=True`` on the whole sequence.
        ``lengths[*B]`` (default ``T_new``) counts the valid new steps (e.g. a
        prompt batch of different lengths); outputs past them are zero.

        Returns:
          ``(ys[*B, T_new, O], cache)`` with the new keys and values appended.
        """
        d_in = int(params["query"]["kernel"].shape[0])
        xs, _ = check_block_inputs(inputs, None, features=d_in, time_major=False, name="inputs")
        batch_shape, num_new = xs.shape[:-2], xs.shape[-2]
        if tuple(cache.length.shape) != tuple(batch_shape):
            raise ValueError(f"cache was made for batch shape {tuple(cache.length.shape)}, inputs have {batch_shape}")
        if lengths is not None:
            lengths = check_lengths(lengths, batch_shape, num_new)
        # Padded steps are written to the cache too (past its new length): zeros there, never NaN,
        # because a masked key still multiplies its value by a weight of 0.
        xs = zero_padding(xs, padding_mask(lengths, num_new))
        dt = compute_dtype(self.dtype, xs, params["query"]["kernel"])
        q = self._project(params["query"], xs, dt)
        k = self._project(params["key"], xs, dt)
        v = self._project(params["value"], xs, dt)
        start = cache.length
        positions = start[..., None] + jnp.arange(num_new, dtype=jnp.int32)
        q, k = self._rope(q, positions), self._rope(k, positions)
        cache = append_to_cache(cache, k, v, num_new if lengths is None else lengths)
        # Position start + t sees every cached step and the new steps up to itself.
        mask = make_attention_mask(num_new, cache.max_length, query_lengths=lengths, causal=True, query_offset=start)
        attended = dot_product_attention(
            q, cache.key.astype(dt), cache.value.astype(dt), mask=mask, implementation=self.implementation
        )
        ys = zero_padding(self._output(params, attended, dt), padding_mask(lengths, num_new))
        return ys, cache
