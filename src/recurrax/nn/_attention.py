"""Flax NNX modules of the attention blocks (``recurrax.attention``): thin owners of the pure blocks' parameters.

Each module holds its pure block as ``spec`` and the parameters ``spec.init``
made as ``nnx.Param`` s; calling it calls ``spec.apply``. Dropout draws from
the ``"dropout"`` rng stream and follows ``model.train()`` / ``model.eval()``.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, overload

import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from recurrax._types import Array
from recurrax.attention import _multi_head, _transformer
from recurrax.attention._kv_cache import KVCache
from recurrax.nn._module import BlockModule


class MultiHeadAttention(BlockModule):
    """NNX module of :class:`recurrax.attention.MultiHeadAttention` (self- or cross-attention).

    Call: ``mha(inputs_q, inputs_kv=None, *, lengths=None, kv_lengths=None,
    mask=None, causal=False, return_weights=False)``; ``init_cache`` and
    ``decode`` run causal self-attention one step (or chunk) at a time.

    Example::

        mha = recurrax.nn.MultiHeadAttention(16, num_heads=4, num_kv_heads=1, rngs=nnx.Rngs(0))
        ys, weights = mha(xs, lengths=lengths, causal=True, return_weights=True)
    """

    spec: _multi_head.MultiHeadAttention

    def __init__(
        self,
        in_features: int,
        num_heads: int,
        *,
        rngs: nnx.Rngs,
        kv_features: int | None = None,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        qkv_features: int | None = None,
        out_features: int | None = None,
        use_bias: bool = True,
        dropout_rate: float = 0.0,
        rope: bool = False,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        time_major: bool = False,
        deterministic: bool = False,
        **options: Any,
    ) -> None:
        spec = _multi_head.MultiHeadAttention(
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            qkv_features=qkv_features,
            out_features=out_features,
            use_bias=use_bias,
            dropout_rate=dropout_rate,
            rope=rope,
            dtype=dtype,
            param_dtype=param_dtype,
            **options,
        )
        make = functools.partial(spec.init, in_features=in_features, kv_features=kv_features)
        super().__init__(spec, make, rngs=rngs, stochastic=dropout_rate > 0, deterministic=deterministic)
        self.in_features = in_features
        self.time_major = time_major

    @overload
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        lengths: Array | None = None,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        causal: bool = False,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        lengths: Array | None = None,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        causal: bool = False,
        return_weights: Literal[True],
    ) -> tuple[Array, Array]: ...

    @overload
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        lengths: Array | None = None,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        causal: bool = False,
        return_weights: bool = False,
    ) -> Array | tuple[Array, Array]: ...

    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array | None = None,
        *,
        lengths: Array | None = None,
        kv_lengths: Array | None = None,
        mask: Array | None = None,
        causal: bool = False,
        return_weights: bool = False,
    ) -> Array | tuple[Array, Array]:
        return self.spec.apply(
            self.pure_params(),
            inputs_q,
            inputs_kv,
            lengths=lengths,
            kv_lengths=kv_lengths,
            mask=mask,
            causal=causal,
            time_major=self.time_major,
            return_weights=return_weights,
            dropout_key=self.dropout_key(),
        )

    def init_cache(self, batch_shape: tuple[int, ...], max_length: int) -> KVCache:
        """An empty key/value cache for :meth:`decode`."""
        return self.spec.init_cache(self.pure_params(), batch_shape, max_length)

    def decode(self, inputs: Array, cache: KVCache, *, lengths: Array | None = None) -> tuple[Array, KVCache]:
        """Causal self-attention for new steps; see :meth:`recurrax.attention.MultiHeadAttention.decode`."""
        return self.spec.decode(self.pure_params(), inputs, cache, lengths=lengths)


class TransformerEncoderBlock(BlockModule):
    """NNX module of :class:`recurrax.attention.TransformerEncoderBlock`: ``xs[*B, T, D] → [*B, T, D]``.

    ``options`` are the pure block's fields (``num_kv_heads``, ``mlp_features``,
    ``norm_first``, ``causal``, ``dropout_rate``, ``activation``, ``rope``, …).
    """

    spec: _transformer.TransformerEncoderBlock

    def __init__(
        self,
        features: int,
        *,
        num_heads: int,
        rngs: nnx.Rngs,
        time_major: bool = False,
        deterministic: bool = False,
        **options: Any,
    ) -> None:
        spec = _transformer.TransformerEncoderBlock(num_heads=num_heads, **options)
        dropout = spec.dropout_rate > 0 or spec.attention_dropout_rate > 0
        make = functools.partial(spec.init, features=features)
        super().__init__(spec, make, rngs=rngs, stochastic=dropout, deterministic=deterministic)
        self.in_features = features
        self.time_major = time_major

    @overload
    def __call__(
        self,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def __call__(
        self, xs: Array, *, lengths: Array | None = None, mask: Array | None = None, return_weights: Literal[True]
    ) -> tuple[Array, Array]: ...

    @overload
    def __call__(
        self, xs: Array, *, lengths: Array | None = None, mask: Array | None = None, return_weights: bool = False
    ) -> Array | tuple[Array, Array]: ...

    def __call__(
        self, xs: Array, *, lengths: Array | None = None, mask: Array | None = None, return_weights: bool = False
    ) -> Array | tuple[Array, Array]:
        return self.spec.apply(
            self.pure_params(),
            xs,
            lengths=lengths,
            mask=mask,
            time_major=self.time_major,
            dropout_key=self.dropout_key(),
            return_weights=return_weights,
        )

    def init_cache(self, batch_shape: tuple[int, ...], max_length: int) -> KVCache:
        return self.spec.init_cache(self.pure_params(), batch_shape, max_length)

    def decode(self, xs: Array, cache: KVCache, *, lengths: Array | None = None) -> tuple[Array, KVCache]:
        return self.spec.decode(self.pure_params(), xs, cache, lengths=lengths)


class TransformerDecoderBlock(BlockModule):
    """NNX module of :class:`recurrax.attention.TransformerDecoderBlock`: ``(xs, memory) → [*B, T, D]``."""

    spec: _transformer.TransformerDecoderBlock

    def __init__(
        self,
        features: int,
        *,
        num_heads: int,
        rngs: nnx.Rngs,
        memory_features: int | None = None,
        time_major: bool = False,
        deterministic: bool = False,
        **options: Any,
    ) -> None:
        spec = _transformer.TransformerDecoderBlock(num_heads=num_heads, **options)
        dropout = spec.dropout_rate > 0 or spec.attention_dropout_rate > 0
        make = functools.partial(spec.init, features=features, memory_features=memory_features)
        super().__init__(spec, make, rngs=rngs, stochastic=dropout, deterministic=deterministic)
        self.in_features = features
        self.time_major = time_major

    @overload
    def __call__(
        self,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def __call__(
        self,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        return_weights: Literal[True],
    ) -> tuple[Array, dict[str, Array]]: ...

    @overload
    def __call__(
        self,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, dict[str, Array]]: ...

    def __call__(
        self,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, dict[str, Array]]:
        return self.spec.apply(
            self.pure_params(),
            xs,
            memory,
            lengths=lengths,
            memory_lengths=memory_lengths,
            time_major=self.time_major,
            dropout_key=self.dropout_key(),
            return_weights=return_weights,
        )

    def init_cache(self, batch_shape: tuple[int, ...], max_length: int) -> KVCache:
        return self.spec.init_cache(self.pure_params(), batch_shape, max_length)

    def decode(
        self,
        xs: Array,
        memory: Array,
        cache: KVCache,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
    ) -> tuple[Array, KVCache]:
        return self.spec.decode(self.pure_params(), xs, memory, cache, lengths=lengths, memory_lengths=memory_lengths)


class TransformerEncoder(BlockModule):
    """NNX module of :class:`recurrax.attention.TransformerEncoder`: a backbone ``xs[*B, T, D] → [*B, T, F]``.

    ``options`` are the pure stack's fields (``features``, ``mlp_features``,
    ``positional``, ``max_length``, ``norm_first``, ``causal``,
    ``dropout_rate``, ``num_kv_heads``, …). Its call matches every recurrax
    backbone: ``encoder(xs, lengths=lengths)``.

    Example::

        encoder = recurrax.nn.TransformerEncoder(3, num_layers=2, num_heads=4, features=32, rngs=nnx.Rngs(0))
        ys = encoder(xs, lengths=lengths)      # [B, T, 3] -> [B, T, 32]
    """

    spec: _transformer.TransformerEncoder

    def __init__(
        self,
        in_features: int,
        *,
        num_layers: int,
        num_heads: int,
        rngs: nnx.Rngs,
        time_major: bool = False,
        deterministic: bool = False,
        **options: Any,
    ) -> None:
        spec = _transformer.TransformerEncoder(num_layers=num_layers, num_heads=num_heads, **options)
        dropout = spec.dropout_rate > 0 or spec.attention_dropout_rate > 0
        make = functools.partial(spec.init, in_features=in_features)
        super().__init__(spec, make, rngs=rngs, stochastic=dropout, deterministic=deterministic)
        self.in_features = in_features
        self.out_features = spec.model_features(in_features)
        self.time_major = time_major

    @overload
    def __call__(
        self,
        xs: Array,
        *,
        lengths: Array | None = None,
        mask: Array | None = None,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def __call__(
        self, xs: Array, *, lengths: Array | None = None, mask: Array | None = None, return_weights: Literal[True]
    ) -> tuple[Array, list[Array]]: ...

    @overload
    def __call__(
        self, xs: Array, *, lengths: Array | None = None, mask: Array | None = None, return_weights: bool = False
    ) -> Array | tuple[Array, list[Array]]: ...

    def __call__(
        self, xs: Array, *, lengths: Array | None = None, mask: Array | None = None, return_weights: bool = False
    ) -> Array | tuple[Array, list[Array]]:
        return self.spec.apply(
            self.pure_params(),
            xs,
            lengths=lengths,
            mask=mask,
            time_major=self.time_major,
            dropout_key=self.dropout_key(),
            return_weights=return_weights,
        )

    def init_cache(self, batch_shape: tuple[int, ...], max_length: int) -> tuple[KVCache, ...]:
        return self.spec.init_cache(self.pure_params(), batch_shape, max_length)

    def decode(
        self, xs: Array, caches: tuple[KVCache, ...], *, lengths: Array | None = None
    ) -> tuple[Array, tuple[KVCache, ...]]:
        return self.spec.decode(self.pure_params(), xs, caches, lengths=lengths)


class TransformerDecoder(BlockModule):
    """NNX module of :class:`recurrax.attention.TransformerDecoder`: ``(xs, memory) → [*B, T, F]``."""

    spec: _transformer.TransformerDecoder

    def __init__(
        self,
        in_features: int,
        *,
        num_layers: int,
        num_heads: int,
        rngs: nnx.Rngs,
        memory_features: int | None = None,
        time_major: bool = False,
        deterministic: bool = False,
        **options: Any,
    ) -> None:
        spec = _transformer.TransformerDecoder(num_layers=num_layers, num_heads=num_heads, **options)
        dropout = spec.dropout_rate > 0 or spec.attention_dropout_rate > 0
        make = functools.partial(spec.init, in_features=in_features, memory_features=memory_features)
        super().__init__(spec, make, rngs=rngs, stochastic=dropout, deterministic=deterministic)
        self.in_features = in_features
        self.out_features = spec.model_features(in_features)
        self.time_major = time_major

    @overload
    def __call__(
        self,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        return_weights: Literal[False] = False,
    ) -> Array: ...

    @overload
    def __call__(
        self,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        return_weights: Literal[True],
    ) -> tuple[Array, list[dict[str, Array]]]: ...

    @overload
    def __call__(
        self,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, list[dict[str, Array]]]: ...

    def __call__(
        self,
        xs: Array,
        memory: Array,
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
        return_weights: bool = False,
    ) -> Array | tuple[Array, list[dict[str, Array]]]:
        return self.spec.apply(
            self.pure_params(),
            xs,
            memory,
            lengths=lengths,
            memory_lengths=memory_lengths,
            time_major=self.time_major,
            dropout_key=self.dropout_key(),
            return_weights=return_weights,
        )

    def init_cache(self, batch_shape: tuple[int, ...], max_length: int) -> tuple[KVCache, ...]:
        return self.spec.init_cache(self.pure_params(), batch_shape, max_length)

    def decode(
        self,
        xs: Array,
        memory: Array,
        caches: tuple[KVCache, ...],
        *,
        lengths: Array | None = None,
        memory_lengths: Array | None = None,
    ) -> tuple[Array, tuple[KVCache, ...]]:
        return self.spec.decode(self.pure_params(), xs, memory, caches, lengths=lengths, memory_lengths=memory_lengths)


class Transformer(nnx.Module):
    """An encoder–decoder Transformer of NNX modules: ``decoder(tgt, encoder(src))``.

    ``options`` go to both stacks (``features``, ``mlp_features``,
    ``positional``, ``dropout_rate``, …).
    """

    def __init__(
        self,
        src_features: int,
        tgt_features: int,
        *,
        num_layers: int,
        num_heads: int,
        rngs: nnx.Rngs,
        num_decoder_layers: int | None = None,
        deterministic: bool = False,
        **options: Any,
    ) -> None:
        self.encoder = TransformerEncoder(
            src_features, num_layers=num_layers, num_heads=num_heads, rngs=rngs, deterministic=deterministic, **options
        )
        self.decoder = TransformerDecoder(
            tgt_features,
            num_layers=num_layers if num_decoder_layers is None else num_decoder_layers,
            num_heads=num_heads,
            memory_features=self.encoder.out_features,
            rngs=rngs,
            deterministic=deterministic,
            **options,
        )

    def __call__(
        self,
        src: Array,
        tgt: Array,
        *,
        src_lengths: Array | None = None,
        tgt_lengths: Array | None = None,
    ) -> Array:
        """``src[*B, S, D_src]``, ``tgt[*B, T, D_tgt]`` → ``[*B, T, features]`` (teacher forcing)."""
        memory = self.encoder(src, lengths=src_lengths)
        return self.decoder(tgt, memory, lengths=tgt_lengths, memory_lengths=src_lengths)
