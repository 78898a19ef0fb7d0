"""Padding never reaches a value or a gradient in the convolution and attention blocks either.

The blocks' counterpart of ``tests/test_padding.py`` (the scan engine): every
block that takes ``lengths`` (pure and NNX, self- and cross-attention, both
attention paths, strided convolutions, cached decoding) is compiled once and
fed inputs whose padding holds NaN, ±Inf or 1e30; its outputs and its
gradients with respect to parameters and inputs must equal, bit for bit,
those of the same inputs with zero padding. One shared shape for all blocks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax.nn as rnn
from recurrax.attention import (
    MultiHeadAttention,
    Transformer,
    TransformerDecoder,
    TransformerEncoder,
    TransformerEncoderBlock,
    dot_product_attention,
)
from recurrax.conv import TCN, Conv1D, TemporalBlock

B, T, D, F = 3, 6, 4, 6
LENGTHS = np.array([6, 4, 1], np.int32)
# Cross-attention and encoder–decoder memories are the inputs reversed along the batch, padding included.
MEMORY_LENGTHS = LENGTHS[::-1].copy()
POISONS = [float("nan"), float("inf"), -float("inf"), 1e30]

# A block under test: (params, xs) -> outputs, and its params (any pytree, or an nnx.State).
Case = Callable[[], tuple[Callable[[Any, jax.Array], Any], Any]]


def _padded(poison: float) -> np.ndarray:
    xs = np.random.default_rng(7).standard_normal((B, T, D)).astype(np.float32)
    valid = np.arange(T) < LENGTHS[:, None]
    return np.where(valid[..., None], xs, np.float32(poison))


def _memory(xs: jax.Array) -> jax.Array:
    return xs[::-1]


def _random_params(block: Any, **init_args: Any) -> Any:
    """Random non-zero values of ``block.init``'s shapes, from numpy (nothing compiles; zero biases hide bugs)."""
    shapes = jax.eval_shape(functools.partial(block.init, **init_args), jax.random.key(0))
    rng = np.random.default_rng(3)
    return jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


def _pure(block: Any, call: Callable[..., Any], **init_args: Any) -> Case:
    return lambda: (functools.partial(call, block), _random_params(block, **init_args))


def _module(make: Callable[[], nnx.Module], call: Callable[..., Any]) -> Case:
    """NNX modules built abstractly (no init compiles), then given random parameters."""

    def case() -> tuple[Callable[[Any, jax.Array], Any], Any]:
        graphdef, shapes = nnx.split(nnx.eval_shape(make))
        rng = np.random.default_rng(3)
        state = jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
        return (lambda state, xs: call(nnx.merge(graphdef, state), xs)), state

    return case


def _attention(return_weights: bool) -> Case:
    def call(_, xs):
        q = xs.reshape(B, T, 2, D // 2)  # 2 query heads share one key/value head
        kv = _memory(xs)[..., : D // 2].reshape(B, T, 1, D // 2)
        return dot_product_attention(
            q, kv, kv, query_lengths=LENGTHS, key_lengths=MEMORY_LENGTHS, return_weights=return_weights
        )

    return lambda: (call, {})


def _decode(stack: Any, decode: Callable[..., Any], **init_args: Any) -> Case:
    """A prompt of ragged lengths; the caches it returns are outputs too: padded steps written there
    (past each new length, for the next call to overwrite) must be zeros, not NaN, since a masked
    key still multiplies its value by a weight of 0 in every later call."""

    def call(block, params, xs):
        caches = block.init_cache(params, (B,), T)
        return decode(block, params, xs, _memory(xs), caches, lengths=LENGTHS)

    return _pure(stack, call, **init_args)


_BLOCK = {"num_heads": 2, "mlp_features": 8}
_STACK = {"num_layers": 1, "num_heads": 2, "features": F, "mlp_features": 8}

CASES: dict[str, Case] = {
    "Conv1D causal": _pure(
        Conv1D(features=F, kernel_size=3, dilation=2), lambda b, p, xs: b.apply(p, xs, lengths=LENGTHS), in_features=D
    ),
    "Conv1D same": _pure(
        Conv1D(features=F, kernel_size=4, padding="same", groups=2),
        lambda b, p, xs: b.apply(p, xs, lengths=LENGTHS),
        in_features=D,
    ),
    "Conv1D strided": _pure(
        Conv1D(features=F, kernel_size=3, stride=2, padding=(2, 1)),
        lambda b, p, xs: b.apply(p, xs, lengths=LENGTHS),
        in_features=D,
    ),
    "TemporalBlock": _pure(
        TemporalBlock(features=F, kernel_size=3, dilation=2, weight_norm=True),
        lambda b, p, xs: b.apply(p, xs, lengths=LENGTHS),
        in_features=D,
    ),
    "TCN": _pure(TCN(features=(F, F), kernel_size=2), lambda b, p, xs: b.apply(p, xs, lengths=LENGTHS), in_features=D),
    "dot_product_attention fused": _attention(return_weights=False),
    "dot_product_attention weights": _attention(return_weights=True),
    "MultiHeadAttention self causal": _pure(
        MultiHeadAttention(num_heads=2, rope=True),
        lambda b, p, xs: b.apply(p, xs, lengths=LENGTHS, causal=True),
        in_features=D,
    ),
    "MultiHeadAttention cross": _pure(
        MultiHeadAttention(num_heads=2, num_kv_heads=1),
        lambda b, p, xs: b.apply(p, xs, _memory(xs), lengths=LENGTHS, kv_lengths=MEMORY_LENGTHS, return_weights=True),
        in_features=D,
    ),
    "TransformerEncoderBlock": _pure(
        TransformerEncoderBlock(norm_first=False, causal=True, **_BLOCK),
        lambda b, p, xs: b.apply(p, xs, lengths=LENGTHS, return_weights=True),
        features=D,
    ),
    # Both stacks, and through them TransformerEncoderBlock and TransformerDecoderBlock.
    "Transformer": _pure(
        Transformer(encoder=TransformerEncoder(**_STACK), decoder=TransformerDecoder(**_STACK)),
        lambda b, p, xs: b.apply(p, _memory(xs), xs, src_lengths=MEMORY_LENGTHS, tgt_lengths=LENGTHS),
        src_features=D,
        tgt_features=D,
    ),
    # Through them, the blocks' decode and MultiHeadAttention.decode.
    "TransformerEncoder decode": _decode(
        TransformerEncoder(causal=True, **_STACK), lambda b, p, xs, _, c, **kw: b.decode(p, xs, c, **kw), in_features=D
    ),
    "TransformerDecoder decode": _decode(
        TransformerDecoder(**_STACK),
        lambda b, p, xs, memory, c, **kw: b.decode(p, xs, memory, c, memory_lengths=MEMORY_LENGTHS, **kw),
        in_features=D,
        memory_features=D,
    ),
    # The NNX modules add no math, but they are what users call.
    "nn modules": _module(
        lambda: nnx.List(
            [
                rnn.Conv1D(D, F, kernel_size=3, rngs=nnx.Rngs(0)),
                rnn.TCN(D, F, num_levels=2, rngs=nnx.Rngs(0)),
                rnn.MultiHeadAttention(D, num_heads=2, rngs=nnx.Rngs(0)),
                rnn.Transformer(D, D, num_layers=1, num_heads=2, features=F, mlp_features=8, rngs=nnx.Rngs(0)),
            ]
        ),
        lambda modules, xs: [
            *(m(xs, lengths=LENGTHS) for m in modules[:3]),
            modules[3](_memory(xs), xs, src_lengths=MEMORY_LENGTHS, tgt_lengths=LENGTHS),
        ],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_padding_never_reaches_values_or_gradients(name: str):
    fn, params = CASES[name]()

    def loss(params, xs):
        outputs = fn(params, xs)
        return sum(jnp.sum(jnp.square(y.astype(jnp.float32))) for y in jax.tree.leaves(outputs)), outputs

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    want = run(params, _padded(0.0))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(want))
    for poison in POISONS:
        got = run(params, _padded(poison))
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(g, w, err_msg=f"{name}, padding {poison}")
