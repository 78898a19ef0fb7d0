"""Flax NNX modules of :class:`recurrax.RecurrentBlock` and :class:`recurrax.RecurrentStack`: owners of their params."""

from __future__ import annotations

import functools
from typing import Any

from flax import nnx

from recurrax import _recurrent_block
from recurrax._cell import Cell
from recurrax._types import Array
from recurrax.nn._module import BlockModule


class _BlockBackbone(BlockModule):
    spec: _recurrent_block.RecurrentBlock | _recurrent_block.RecurrentStack
    time_major: bool

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        return self.spec.apply(
            self.pure_params(), xs, lengths=lengths, time_major=self.time_major, dropout_key=self.dropout_key()
        )


class RecurrentBlock(_BlockBackbone):
    """NNX module of :class:`recurrax.RecurrentBlock`: ``xs[*B, T, F] → ys[*B, T, F]``.

    ``options`` are the pure block's fields (``norm``, ``conv_kernel``,
    ``gated``, ``output_glu``, ``mlp``, ``mlp_ratio``, ``dropout_rate``,
    ``scan_options``, …). Dropout draws from the ``"dropout"`` stream.

    Example::

        block = recurrax.nn.RecurrentBlock(64, recurrax.min_gru(128), rngs=nnx.Rngs(0))
        ys = block(xs, lengths=lengths)      # [B, T, 64] -> [B, T, 64]
    """

    spec: _recurrent_block.RecurrentBlock

    def __init__(
        self,
        features: int,
        cell: Cell,
        *,
        rngs: nnx.Rngs,
        time_major: bool = False,
        deterministic: bool = False,
        **options: Any,
    ) -> None:
        spec = _recurrent_block.RecurrentBlock(cell=cell, **options)
        make = functools.partial(spec.init, features=features)
        super().__init__(spec, make, rngs=rngs, stochastic=spec.dropout_rate > 0, deterministic=deterministic)
        self.in_features = self.out_features = features
        self.time_major = time_major


class RecurrentStack(_BlockBackbone):
    """NNX module of :class:`recurrax.RecurrentStack`: a backbone ``xs[*B, T, D] → [*B, T, features]``.

    ``options`` are the pure stack's fields (``features``, ``final_norm`` and
    every block option). Its call matches every recurrax backbone:
    ``stack(xs, lengths=lengths)``.

    Example::

        stack = recurrax.nn.RecurrentStack(3, recurrax.min_gru(64), num_blocks=3, features=64, rngs=nnx.Rngs(0))
        ys = stack(xs, lengths=lengths)      # [B, T, 3] -> [B, T, 64]
    """

    spec: _recurrent_block.RecurrentStack

    def __init__(
        self,
        in_features: int,
        cell: Cell,
        *,
        num_blocks: int,
        rngs: nnx.Rngs,
        time_major: bool = False,
        deterministic: bool = False,
        **options: Any,
    ) -> None:
        spec = _recurrent_block.RecurrentStack(cell=cell, num_blocks=num_blocks, **options)
        make = functools.partial(spec.init, in_features=in_features)
        super().__init__(spec, make, rngs=rngs, stochastic=spec.dropout_rate > 0, deterministic=deterministic)
        self.in_features = in_features
        self.out_features = spec.model_features(in_features)
        self.time_major = time_major
