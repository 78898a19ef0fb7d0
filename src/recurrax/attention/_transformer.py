"""Transformer encoder and decoder blocks (pre-LN by default, post-LN as an option) and small stacks of them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._ops import (
    ACTIVATIONS,
    check_activation,
    compute_dtype,
    dense,
    dropout,
    from_batch_major,
    layer_norm,
    padding_mask,
    split_key,
    zero_padding,
)
from recurrax._types import Array, Initializer
from recurrax._validation import (
    check_block_inputs,
    check_fields,
    check_float_dtype,
    check_positive_fields,
    check_positive_int,
    check_rate_fields,
)
from recurrax.attention._attention import Implementation
from recurrax.attention._kv_cache import KVCache
from recurrax.attention._multi_head import MultiHeadAttention, default_attention_kernel_init
from recurrax.attention._positional import learned_positions, sinusoidal_positions

Params = dict[str, Any]
Positional = Literal["sinusoidal", "learned", "rope"] | None
POSITIONALS: tuple[Any, ...] = ("sinusoidal", "learned", "rope", None)


def _clean(xs: Array, lengths: Array | None) -> Array:
    """``xs[*B, T, D]`` with zeros past each example's length.

    Padding may hold anything (NaN, Inf) and must reach no value and no
    gradient; a ``where`` after the arithmetic would still differentiate
    through it, so the inputs are cleaned before any.
    """
    return zero_padding(xs, padding_mask(lengths, xs.shape[-2]))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _BlockOptions:
    """Hyper-parameters shared by every Transformer block and stack."""

    num_heads: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    mlp_features: int | None = None
    norm_first: bool = True
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    activation: str = "gelu"
    layer_norm_eps: float = 1e-5
    use_bias: bool = True
    implementation: Implementation = None
    kernel_init: Initializer = default_attention_kernel_init
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def __post_init__(self) -> None:
        check_fields(self)  # every field, a subclass's too
        check_positive_fields(self, "num_heads", "num_kv_heads", "head_dim", "mlp_features")
        check_rate_fields(self, "dropout_rate", "attention_dropout_rate")
        check_activation(self.activation)
        check_float_dtype(self.dtype, "dtype")
        check_float_dtype(self.param_dtype, "param_dtype")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"{type(self).__name__}: layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        self._attention()  # builds the attention now, so that heads that do not divide fail here

    def block_options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(_BlockOptions)}

    def _attention(self, rope: bool = False) -> MultiHeadAttention:
        return MultiHeadAttention(
            num_heads=self.num_heads,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            use_bias=self.use_bias,
            dropout_rate=self.attention_dropout_rate,
            rope=rope,
            implementation=self.implementation,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def _init_norm(self, features: int) -> Params:
        return {"scale": jnp.ones((features,), self.param_dtype), "bias": jnp.zeros((features,), self.param_dtype)}

    def _norm(self, params: Params, x: Array) -> Array:
        return layer_norm(x, params["scale"], params["bias"], self.layer_norm_eps)

    def _init_mlp(self, key: Array, features: int) -> Params:
        hidden = 4 * features if self.mlp_features is None else self.mlp_features
        k1, k2 = jax.random.split(key)
        zeros = jax.nn.initializers.zeros
        return {
            "hidden": {
                "kernel": self.kernel_init(k1, (features, hidden), self.param_dtype),
                "bias": zeros(k1, (hidden,), self.param_dtype),
            },
            "out": {
                "kernel": self.kernel_init(k2, (hidden, features), self.param_dtype),
                "bias": zeros(k2, (features,), self.param_dtype),
            },
        }

    def _mlp(self, params: Params, x: Array, key: Array | None) -> Array:
        """``W_2 · drop(act(W_1 x + b_1)) + b_2`` (PyTorch's feed-forward block)."""
        h = ACTIVATIONS[self.activation](dense(x, params["hidden"]["kernel"], params["hidden"]["bias"], x.dtype))
        return dense(dropout(h, self.dropout_rate, key), params["out"]["kernel"], params["out"]["bias"], x.dtype)

    def _sublayer(self, norm: Params, x: Array, fn: Callable[[Array], Array], key: Array | None) -> Array:
        """Pre-LN ``x + drop(fn(LN(x)))`` or post-LN ``LN(x + drop(fn(x)))``."""
        if self.norm_first:
            return x + dropout(fn(self._norm(norm, x)), self.dropout_rate, key)
        return self._norm(norm, x + dropout(fn(x), self.dropout_rate, key))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerEncoderBlock(_BlockOptions):
    """Self-attention then a feed-forward network, each in a residual branch with layer norm.

    Pre-LN (``norm_first=True``, the default; stable without warm-up)::

        h = x + drop(SelfAttention(LN_1(x)))
        y = h + drop(MLP(LN_2(h)))

    Post-LN (``norm_first=False``, Vaswani et al., 2017)::

        h = LN_1(x + drop(SelfAttention(x)))
        y = LN_2(h + drop(MLP(h)))

    ``MLP(x) = W_2 drop(act(W_1 x + b_1)) + b_2`` with ``mlp_features`` hidden
    units (default ``4·D``). With ``causal`` the block is a decoder-only
    (GPT-style) block and supports :meth:`decode` with a key/value cache. The
    layout equals ``torch.nn.TransformerEncoderLayer``'s, so weights map 1:1.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.attention import TransformerEncoderBlock
      >>> block = TransformerEncoderBlock(num_heads=2)
      >>> params = block.init(jax.random.key(0), features=8)
      >>> apply = jax.jit(block.apply)  # one compiled program instead of one per operation
      >>> apply(params, jnp.ones((3, 5, 8)), lengths=jnp.array([5, 2, 4])).shape
      (3, 5, 8)
    """

    causal: bool = False
    rope: bool = False

    @property
    def attention(self) -> MultiHeadAttention:
        return self._attention(self.rope)

    def init(self, key: Array, features: int) -> Params:
        check_positive_int(features, "features")
        k_attn, k_mlp = jax.random.split(key)
        return {
            "attention": self.attention.init(k_attn, features),
            "norm1": self._init_norm(features),
            "norm2": self._init_norm(features),
            "mlp": self._init_mlp(k_mlp, features),
        }

    def _run(
        self, params: Params, xs: Array, attend: Callable[[Array, Array | None], Array], dropout_key: Array | None
    ) -> Array:
        k_attn, k_res1, k_mlp, k_res2 = split_key(dropout_key, 4)
        h = self._sublayer(params["norm1"], xs, lambda x: attend(x, k_attn), k_res1)
        return self._sublayer(params["norm2"], h, lambda x: self._mlp(params["mlp"], x, k_mlp), k_res2)

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: Literal[True],
    ) -> tuple[Array, Array]: ...

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, Array]: ...

    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, Array]:
        """``xs[*B, T, D] → ys[*B, T, D]`` (and the attention weights ``[*B, N, T, T]``).

        ``lengths`` masks padded keys and zeroes padded outputs; ``mask`` adds
        a boolean mask broadcastable to ``[*B, N, T, T]``; dropout is on when
        ``dropout_key`` is given.
        """
        xs, lengths = check_block_inputs(xs, lengths, features=params["norm1"]["scale"].shape[0], time_major=time_major)
        xs = _clean(xs, lengths).astype(compute_dtype(self.dtype, xs, params["attention"]["query"]["kernel"]))
        weights: list[Array] = []

        def attend(x: Array, key: Array | None) -> Array:
            out = self.attention.apply(
                params["attention"],
                x,
                lengths=lengths,
                mask=mask,
                causal=self.causal,
                return_weights=return_weights,
                dropout_key=key,
            )
            if isinstance(out, tuple):  # return_weights
                out, w = out
                weights.append(w)
            return out

        ys = zero_padding(self._run(params, xs, attend, dropout_key), padding_mask(lengths, xs.shape[-2]))
        ys = from_batch_major(ys, time_major)
        return (ys, weights[0]) if return_weights else ys

    def init_cache(self, params: Params, batch_shape: tuple[int, ...], max_length: int) -> KVCache:
        """An empty key/value cache for :meth:`decode`."""
        return self.attention.init_cache(params["attention"], batch_shape, max_length)

    def decode(
        self, params: Params, xs: Array, cache: KVCache, *, lengths: Array | None = None
    ) -> tuple[Array, KVCache]:
        """A causal block on new steps ``xs[*B, T_new, D]``; equals :meth:`apply` on the whole sequence."""
        if not self.causal:
            raise ValueError("decode needs a causal block (causal=True): a bidirectional block sees the future")
        xs, lengths = check_block_inputs(xs, lengths, features=params["norm1"]["scale"].shape[0], time_major=False)
        xs = _clean(xs, lengths).astype(compute_dtype(self.dtype, xs, params["attention"]["query"]["kernel"]))
        caches: list[KVCache] = []

        def attend(x: Array, key: Array | None) -> Array:
            out, new_cache = self.attention.decode(params["attention"], x, cache, lengths=lengths)
            caches.append(new_cache)
            return out

        ys = self._run(params, xs, attend, None)
        ys = zero_padding(ys, padding_mask(lengths, xs.shape[-2]) if lengths is not None else None)
        return ys, caches[0]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerDecoderBlock(_BlockOptions):
    """Causal self-attention, cross-attention to a memory, then a feed-forward network.

    Pre-LN (default)::

        h = x + drop(CausalSelfAttention(LN_1(x)))
        h = h + drop(CrossAttention(LN_2(h), memory))
        y = h + drop(MLP(LN_3(h)))

    Post-LN applies each ``LN`` after its residual sum instead, as
    ``torch.nn.TransformerDecoderLayer`` with ``norm_first=False``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.attention import TransformerDecoderBlock
      >>> block = TransformerDecoderBlock(num_heads=2)
      >>> params = block.init(jax.random.key(0), features=8, memory_features=6)
      >>> apply = jax.jit(block.apply)  # one compiled program instead of one per operation
      >>> apply(params, jnp.ones((3, 5, 8)), jnp.ones((3, 4, 6)), memory_lengths=jnp.array([4, 1, 2])).shape
      (3, 5, 8)
    """

    rope: bool = False

    @property
    def self_attention(self) -> MultiHeadAttention:
        return self._attention(self.rope)

    @property
    def cross_attention(self) -> MultiHeadAttention:
        return self._attention(False)

    def init(self, key: Array, features: int, memory_features: int | None = None) -> Params:
        check_positive_int(features, "features")
        k_self, k_cross, k_mlp = jax.random.split(key, 3)
        return {
            "self_attention": self.self_attention.init(k_self, features),
            "cross_attention": self.cross_attention.init(k_cross, features, memory_features),
            "norm1": self._init_norm(features),
            "norm2": self._init_norm(features),
            "norm3": self._init_norm(features),
            "mlp": self._init_mlp(k_mlp, features),
        }

    def _run(
        self,
        params: Params,
        xs: Array,
        self_attend: Callable[[Array, Array | None], Array],
        cross_attend: Callable[[Array, Array | None], Array],
        dropout_key: Array | None,
    ) -> Array:
        k_self, k_res1, k_cross, k_res2, k_mlp, k_res3 = split_key(dropout_key, 6)
        h = self._sublayer(params["norm1"], xs, lambda x: self_attend(x, k_self), k_res1)
        h = self._sublayer(params["norm2"], h, lambda x: cross_attend(x, k_cross), k_res2)
        return self._sublayer(params["norm3"], h, lambda x: self._mlp(params["mlp"], x, k_mlp), k_res3)

    def _check_memory(
        self, params: Params, memory: Array, memory_lengths: Array | None, batch_shape: tuple[int, ...]
    ) -> tuple[Array, Array | None]:
        d_memory = int(params["cross_attention"]["key"]["kernel"].shape[0])
        memory, memory_lengths = check_block_inputs(
            memory, memory_lengths, features=d_memory, time_major=False, name="memory"
        )
        if memory.shape[:-2] != batch_shape:
            raise ValueError(f"memory must have the batch dims {batch_shape}, got {memory.shape[:-2]}")
        return _clean(memory, memory_lengths), memory_lengths

    def _cross(
        self,
        params: Params,
        memory: Array,
        memory_lengths: Array | None,
        lengths: Array | None,
        weights: list[Array] | None,
    ) -> Callable[[Array, Array | None], Array]:
        def cross_attend(x: Array, key: Array | None) -> Array:
            out = self.cross_attention.apply(
                params["cross_attention"],
                x,
                memory.astype(x.dtype),
                lengths=lengths,
                kv_lengths=memory_lengths,
                return_weights=weights is not None,
                dropout_key=key,
            )
            if isinstance(out, tuple):  # return_weights
                out, w = out
                if weights is not None:
                    weights.append(w)
            return out

        return cross_attend

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: Literal[True],
    ) -> tuple[Array, dict[str, Array]]: ...

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, dict[str, Array]]: ...

    def apply(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, dict[str, Array]]:
        """``xs[*B, T, D]``, ``memory[*B, S, D_m]`` → ``[*B, T, D]`` (and ``{"self", "cross"}`` weights)."""
        xs, lengths = check_block_inputs(xs, lengths, features=params["norm1"]["scale"].shape[0], time_major=time_major)
        if time_major:
            memory = jnp.moveaxis(jnp.asarray(memory), 0, -2)
        memory, memory_lengths = self._check_memory(params, memory, memory_lengths, xs.shape[:-2])
        xs = _clean(xs, lengths).astype(compute_dtype(self.dtype, xs, params["self_attention"]["query"]["kernel"]))
        self_weights: list[Array] | None = [] if return_weights else None
        cross_weights: list[Array] | None = [] if return_weights else None

        def self_attend(x: Array, key: Array | None) -> Array:
            out = self.self_attention.apply(
                params["self_attention"],
                x,
                lengths=lengths,
                causal=True,
                return_weights=return_weights,
                dropout_key=key,
            )
            if isinstance(out, tuple):  # return_weights
                out, w = out
                if self_weights is not None:
                    self_weights.append(w)
            return out

        cross = self._cross(params, memory, memory_lengths, lengths, cross_weights)
        ys = self._run(params, xs, self_attend, cross, dropout_key)
        ys = from_batch_major(zero_padding(ys, padding_mask(lengths, xs.shape[-2])), time_major)
        if self_weights is not None and cross_weights is not None:  # return_weights
            return ys, {"self": self_weights[0], "cross": cross_weights[0]}
        return ys

    def init_cache(self, params: Params, batch_shape: tuple[int, ...], max_length: int) -> KVCache:
        """An empty key/value cache for the self-attention of :meth:`decode`."""
        return self.self_attention.init_cache(params["self_attention"], batch_shape, max_length)

    def decode(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        cache: KVCache,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
    ) -> tuple[Array, KVCache]:
        """New steps ``xs[*B, T_new, D]`` on top of ``cache``; equals :meth:`apply` on the whole sequence."""
        xs, lengths = check_block_inputs(xs, lengths, features=params["norm1"]["scale"].shape[0], time_major=False)
        memory, memory_lengths = self._check_memory(params, memory, memory_lengths, xs.shape[:-2])
        xs = _clean(xs, lengths).astype(compute_dtype(self.dtype, xs, params["self_attention"]["query"]["kernel"]))
        caches: list[KVCache] = []

        def self_attend(x: Array, key: Array | None) -> Array:
            out, new_cache = self.self_attention.decode(params["self_attention"], x, cache, lengths=lengths)
            caches.append(new_cache)
            return out

        cross = self._cross(params, memory, memory_lengths, lengths, None)
        ys = self._run(params, xs, self_attend, cross, None)
        ys = zero_padding(ys, padding_mask(lengths, xs.shape[-2]) if lengths is not None else None)
        return ys, caches[0]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _StackOptions(_BlockOptions):
    num_layers: int = 1
    features: int | None = None
    positional: Positional = "sinusoidal"
    max_length: int | None = None
    final_norm: bool | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_fields(self, "num_layers", "features", "max_length")
        if self.positional == "learned" and self.max_length is None:
            raise ValueError("positional='learned' needs max_length (the size of the position table)")

    @property
    def uses_final_norm(self) -> bool:
        """A final LayerNorm after the last block; on by default for pre-LN stacks, whose output is un-normalised."""
        return self.norm_first if self.final_norm is None else self.final_norm

    def model_features(self, in_features: int) -> int:
        return in_features if self.features is None else self.features

    def _init_embedding(self, key: Array, in_features: int) -> Params:
        F = self.model_features(in_features)
        k_in, k_pos = jax.random.split(key)
        params: Params = {}
        if in_features != F:
            params["input"] = {
                "kernel": self.kernel_init(k_in, (in_features, F), self.param_dtype),
                "bias": jnp.zeros((F,), self.param_dtype),
            }
        if self.positional == "learned":
            params["positions"] = jax.nn.initializers.normal(0.02)(k_pos, (self.max_length, F), self.param_dtype)
        if self.uses_final_norm:
            params["final_norm"] = self._init_norm(F)
        return params

    def _embed(self, params: Params, xs: Array, positions: Array, key: Array | None, dt: jnp.dtype) -> Array:
        """Input projection (when ``in_features != features``), absolute positions, dropout."""
        h = xs.astype(dt)
        if "input" in params:
            h = dense(h, params["input"]["kernel"], params["input"]["bias"], dt)
        if self.positional == "sinusoidal":
            h = h + sinusoidal_positions(positions, h.shape[-1], dtype=dt)
        elif self.positional == "learned":
            h = h + learned_positions(params["positions"], positions).astype(dt)
        return dropout(h, self.dropout_rate, key)

    def _finish(self, params: Params, ys: Array) -> Array:
        return self._norm(params["final_norm"], ys) if "final_norm" in params else ys

    def in_features(self, params: Params) -> int:
        """The input features ``D`` that ``params`` expect."""
        if "input" in params:
            return int(params["input"]["kernel"].shape[0])
        return int(params["blocks"][0]["norm1"]["scale"].shape[0])

    def _compute_dtype(self, params: Params, xs: Array) -> jnp.dtype:
        return compute_dtype(self.dtype, xs, jax.tree.leaves(params["blocks"][0])[0])


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerEncoder(_StackOptions):
    """A stack of :class:`TransformerEncoderBlock` s: a backbone ``xs[*B, T, D] → [*B, T, features]``.

    The inputs are projected to ``features`` (when it differs from ``D``),
    given positions (``positional``: ``"sinusoidal"`` added, ``"learned"``
    table of ``max_length`` rows, ``"rope"`` rotary in every attention, or
    ``None``), run through ``num_layers`` blocks, and, for pre-LN stacks,
    through a final LayerNorm. With ``causal`` it is a decoder-only
    (GPT-style) stack that supports :meth:`decode` with key/value caches.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.attention import TransformerEncoder
      >>> encoder = TransformerEncoder(num_layers=2, num_heads=2, features=8)
      >>> params = encoder.init(jax.random.key(0), in_features=3)
      >>> apply = jax.jit(encoder.apply)  # one compiled program instead of one per operation
      >>> apply(params, jnp.ones((2, 9, 3)), lengths=jnp.array([9, 4])).shape
      (2, 9, 8)
    """

    causal: bool = False

    @property
    def block(self) -> TransformerEncoderBlock:
        return TransformerEncoderBlock(causal=self.causal, rope=self.positional == "rope", **self.block_options())

    def init(self, key: Array, in_features: int) -> Params:
        """Fresh parameters for inputs with ``in_features`` features."""
        check_positive_int(in_features, "in_features")
        F = self.model_features(in_features)
        keys = jax.random.split(key, self.num_layers + 1)
        params = self._init_embedding(keys[0], in_features)
        params["blocks"] = [self.block.init(k, F) for k in keys[1:]]
        return params

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: Literal[True],
    ) -> tuple[Array, list[Array]]: ...

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, list[Array]]: ...

    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, list[Array]]:
        """``xs[*B, T, D] → ys[*B, T, features]`` (and one ``[*B, N, T, T]`` weight array per layer)."""
        xs, lengths = check_block_inputs(xs, lengths, features=self.in_features(params), time_major=time_major)
        keys = split_key(dropout_key, self.num_layers + 1)
        positions = jnp.arange(xs.shape[-2], dtype=jnp.int32)
        h = self._embed(params, _clean(xs, lengths), positions, keys[0], self._compute_dtype(params, xs))
        weights: list[Array] = []  # one entry per layer, with return_weights
        for block_params, k in zip(params["blocks"], keys[1:], strict=True):
            out = self.block.apply(
                block_params, h, lengths=lengths, mask=mask, dropout_key=k, return_weights=return_weights
            )
            if isinstance(out, tuple):  # return_weights
                h, w = out
                weights.append(w)
            else:
                h = out
        ys = zero_padding(self._finish(params, h), padding_mask(lengths, xs.shape[-2]))
        ys = from_batch_major(ys, time_major)
        return (ys, weights) if return_weights else ys

    def init_cache(self, params: Params, batch_shape: tuple[int, ...], max_length: int) -> tuple[KVCache, ...]:
        """One empty key/value cache per layer, for :meth:`decode`."""
        return tuple(self.block.init_cache(p, batch_shape, max_length) for p in params["blocks"])

    def decode(
        self, params: Params, xs: Array, caches: tuple[KVCache, ...], *, lengths: Array | None = None
    ) -> tuple[Array, tuple[KVCache, ...]]:
        """A causal stack on new steps ``xs[*B, T_new, D]``; equals :meth:`apply` on the whole sequence."""
        if not self.causal:
            raise ValueError("decode needs a causal stack (causal=True): a bidirectional encoder sees the future")
        xs, lengths = check_block_inputs(xs, lengths, features=self.in_features(params), time_major=False)
        positions = caches[0].length[..., None] + jnp.arange(xs.shape[-2], dtype=jnp.int32)
        h = self._embed(params, _clean(xs, lengths), positions, None, self._compute_dtype(params, xs))
        new_caches = []
        for block_params, cache in zip(params["blocks"], caches, strict=True):
            h, cache = self.block.decode(block_params, h, cache, lengths=lengths)
            new_caches.append(cache)
        ys = self._finish(params, h)
        if lengths is not None:
            ys = zero_padding(ys, padding_mask(jnp.asarray(lengths), xs.shape[-2]))
        return ys, tuple(new_caches)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerDecoder(_StackOptions):
    """A stack of :class:`TransformerDecoderBlock` s reading a memory (e.g. an encoder's output).

    Inputs are embedded as in :class:`TransformerEncoder`; every block
    attends causally to the decoder's own steps and to all valid memory
    steps. :meth:`decode` runs it step by step with key/value caches.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.attention import TransformerDecoder
      >>> decoder = TransformerDecoder(num_layers=2, num_heads=2, features=8)
      >>> params = decoder.init(jax.random.key(0), in_features=5, memory_features=8)
      >>> apply = jax.jit(decoder.apply)  # one compiled program instead of one per operation
      >>> apply(params, jnp.ones((2, 6, 5)), jnp.ones((2, 4, 8))).shape
      (2, 6, 8)
    """

    @property
    def block(self) -> TransformerDecoderBlock:
        return TransformerDecoderBlock(rope=self.positional == "rope", **self.block_options())

    def init(self, key: Array, in_features: int, memory_features: int | None = None) -> Params:
        """Fresh parameters; ``memory_features`` defaults to the model width ``features``."""
        check_positive_int(in_features, "in_features")
        F = self.model_features(in_features)
        keys = jax.random.split(key, self.num_layers + 1)
        params = self._init_embedding(keys[0], in_features)
        params["blocks"] = [self.block.init(k, F, memory_features) for k in keys[1:]]
        return params

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: Literal[True],
    ) -> tuple[Array, list[dict[str, Array]]]: ...

    @overload
    def apply(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, list[dict[str, Array]]]: ...

    def apply(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, list[dict[str, Array]]]:
        """``xs[*B, T, D]``, ``memory[*B, S, D_m]`` → ``[*B, T, features]`` (and per-layer weights)."""
        xs, lengths = check_block_inputs(xs, lengths, features=self.in_features(params), time_major=time_major)
        if time_major:
            memory = jnp.moveaxis(jnp.asarray(memory), 0, -2)
        keys = split_key(dropout_key, self.num_layers + 1)
        positions = jnp.arange(xs.shape[-2], dtype=jnp.int32)
        h = self._embed(params, _clean(xs, lengths), positions, keys[0], self._compute_dtype(params, xs))
        weights: list[dict[str, Array]] = []  # one entry per layer, with return_weights
        for block_params, k in zip(params["blocks"], keys[1:], strict=True):
            out = self.block.apply(
                block_params,
                h,
                memory,
                lengths=lengths,
                memory_lengths=memory_lengths,
                dropout_key=k,
                return_weights=return_weights,
            )
            if isinstance(out, tuple):  # return_weights
                h, w = out
                weights.append(w)
            else:
                h = out
        ys = zero_padding(self._finish(params, h), padding_mask(lengths, xs.shape[-2]))
        ys = from_batch_major(ys, time_major)
        return (ys, weights) if return_weights else ys

    def init_cache(self, params: Params, batch_shape: tuple[int, ...], max_length: int) -> tuple[KVCache, ...]:
        """One empty key/value cache per layer, for :meth:`decode`."""
        return tuple(self.block.init_cache(p, batch_shape, max_length) for p in params["blocks"])

    def decode(
        self,
        params: Params,
        xs: Array,
        memory: Array,
        caches: tuple[KVCache, ...],
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
    ) -> tuple[Array, tuple[KVCache, ...]]:
        """New steps ``xs[*B, T_new, D]`` on top of ``caches``; equals :meth:`apply` on the whole sequence."""
        xs, lengths = check_block_inputs(xs, lengths, features=self.in_features(params), time_major=False)
        positions = caches[0].length[..., None] + jnp.arange(xs.shape[-2], dtype=jnp.int32)
        h = self._embed(params, _clean(xs, lengths), positions, None, self._compute_dtype(params, xs))
        new_caches = []
        for block_params, cache in zip(params["blocks"], caches, strict=True):
            h, cache = self.block.decode(block_params, h, memory, cache, lengths=lengths, memory_lengths=memory_lengths)
            new_caches.append(cache)
        ys = self._finish(params, h)
        if lengths is not None:
            ys = zero_padding(ys, padding_mask(jnp.asarray(lengths), xs.shape[-2]))
        return ys, tuple(new_caches)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Transformer:
    """An encoder–decoder Transformer: ``decoder(tgt, memory=encoder(src))``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.attention import Transformer, TransformerDecoder, TransformerEncoder
      >>> model = Transformer(
      ...     encoder=TransformerEncoder(num_layers=1, num_heads=2, features=8),
      ...     decoder=TransformerDecoder(num_layers=1, num_heads=2, features=8),
      ... )
      >>> params = model.init(jax.random.key(0), src_features=3, tgt_features=5)
      >>> apply = jax.jit(model.apply)  # one compiled program instead of one per operation
      >>> apply(params, jnp.ones((2, 7, 3)), jnp.ones((2, 4, 5)), src_lengths=jnp.array([7, 3])).shape
      (2, 4, 8)
    """

    encoder: TransformerEncoder
    decoder: TransformerDecoder

    def __post_init__(self) -> None:
        check_fields(self)  # (encoder and decoder are specs, checked below)
        if not isinstance(self.encoder, TransformerEncoder) or self.encoder.causal:
            raise TypeError("encoder must be a non-causal TransformerEncoder")
        if not isinstance(self.decoder, TransformerDecoder):
            raise TypeError(f"decoder must be a TransformerDecoder, got {type(self.decoder).__name__}")

    def init(self, key: Array, src_features: int, tgt_features: int) -> Params:
        k_enc, k_dec = jax.random.split(key)
        memory_features = self.encoder.model_features(src_features)
        return {
            "encoder": self.encoder.init(k_enc, src_features),
            "decoder": self.decoder.init(k_dec, tgt_features, memory_features),
        }

    def encode(
        self, params: Params, src: Array, *, src_lengths: Array | None = None, dropout_key: Array | None = None
    ) -> Array:
        """``src[*B, S, D_src]`` → memory ``[*B, S, features]``."""
        return self.encoder.apply(params["encoder"], src, lengths=src_lengths, dropout_key=dropout_key)

    def apply(
        self,
        params: Params,
        src: Array,
        tgt: Array,
        *,
        src_lengths: Array | None = None,
        tgt_lengths: Array | None = None,
        dropout_key: Array | None = None,
    ) -> Array:
        """``src[*B, S, D_src]``, ``tgt[*B, T, D_tgt]`` → ``[*B, T, features]`` (teacher forcing)."""
        k_enc, k_dec = split_key(dropout_key, 2)
        memory = self.encode(params, src, src_lengths=src_lengths, dropout_key=k_enc)
        return self.decoder.apply(
            params["decoder"], tgt, memory, lengths=tgt_lengths, memory_lengths=src_lengths, dropout_key=k_dec
        )
