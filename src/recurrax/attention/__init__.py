"""Attention and Transformer blocks that share the scan engine's calling convention.

Everything here is pure: immutable descriptions with ``init(key, ...)`` and
``apply(params, xs, *, lengths=None, time_major=False, ...)`` on
``xs[*B, T, D]``. ``lengths`` masks padded keys and zeroes padded outputs,
exactly as :func:`recurrax.scan` does. Attention runs on
:func:`jax.nn.dot_product_attention` (fused kernels on GPU) unless its weights
are asked for. The Flax NNX modules that own their parameters are in
:mod:`recurrax.nn`.
"""

from recurrax.attention._attention import IMPLEMENTATIONS, dot_product_attention
from recurrax.attention._kv_cache import KVCache, append_to_cache, init_kv_cache
from recurrax.attention._masks import make_attention_mask
from recurrax.attention._multi_head import MultiHeadAttention
from recurrax.attention._positional import learned_positions, rope, sinusoidal_positions
from recurrax.attention._transformer import (
    POSITIONALS,
    Transformer,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
)

__all__ = [
    "IMPLEMENTATIONS",
    "POSITIONALS",
    "KVCache",
    "MultiHeadAttention",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "append_to_cache",
    "dot_product_attention",
    "init_kv_cache",
    "learned_positions",
    "make_attention_mask",
    "rope",
    "sinusoidal_positions",
]
