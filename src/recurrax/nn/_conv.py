"""Flax NNX modules of the convolution blocks (``recurrax.conv``): thin owners of the pure blocks' parameters."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from recurrax._types import Array, Initializer
from recurrax.conv import _conv1d, _tcn
from recurrax.nn._module import BlockModule


class Conv1D(BlockModule):
    """NNX module of :class:`recurrax.conv.Conv1D`: ``xs[*B, T, D] → [*B, T', F]`` (causal by default).

    ``stride``, ``padding`` (``"causal"``, ``"same"``, ``"valid"``, an int or a
    pair ``(left, right)``), ``dilation`` and ``groups`` as ``torch.nn.Conv1d``;
    ``T' = conv.output_length(T)``.

    Example::

        conv = recurrax.nn.Conv1D(4, 8, kernel_size=3, dilation=2, rngs=nnx.Rngs(0))
        ys = conv(xs, lengths=lengths)        # [B, T, 4] -> [B, T, 8]
        down = recurrax.nn.Conv1D(4, 8, kernel_size=5, stride=2, padding=2, rngs=nnx.Rngs(0))
        ys = down(xs, lengths=lengths)        # [B, T, 4] -> [B, ⌈T/2⌉, 8]
        lengths = down.output_length(lengths)
    """

    spec: _conv1d.Conv1D

    def __init__(
        self,
        in_features: int,
        features: int,
        kernel_size: int,
        *,
        rngs: nnx.Rngs,
        stride: int = 1,
        dilation: int = 1,
        padding: _conv1d.Padding = "causal",
        groups: int = 1,
        use_bias: bool = True,
        weight_norm: bool = False,
        kernel_init: Initializer = _conv1d.default_conv_kernel_init,
        bias_init: Initializer = jax.nn.initializers.zeros,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        time_major: bool = False,
        deterministic: bool = False,
    ) -> None:
        spec = _conv1d.Conv1D(
            features=features,
            kernel_size=kernel_size,
            stride=stride,
            dilation=dilation,
            padding=padding,
            groups=groups,
            use_bias=use_bias,
            weight_norm=weight_norm,
            kernel_init=kernel_init,
            bias_init=bias_init,
            dtype=dtype,
            param_dtype=param_dtype,
        )
        make = functools.partial(spec.init, in_features=in_features)
        super().__init__(spec, make, rngs=rngs, stochastic=False, deterministic=deterministic)
        self.in_features = in_features
        self.time_major = time_major

    def output_length(self, length: _conv1d.LengthLike) -> _conv1d.LengthLike:
        """Output steps for ``length`` input steps (an int, or ``lengths[*B]``), as PyTorch's ``Conv1d``."""
        return self.spec.output_length(length)

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        return self.spec.apply(self.pure_params(), xs, lengths=lengths, time_major=self.time_major)


class TemporalBlock(BlockModule):
    """NNX module of :class:`recurrax.conv.TemporalBlock` (one residual TCN block)."""

    spec: _tcn.TemporalBlock

    def __init__(
        self,
        in_features: int,
        features: int,
        kernel_size: int,
        *,
        rngs: nnx.Rngs,
        dilation: int = 1,
        dropout_rate: float = 0.0,
        weight_norm: bool = False,
        activation: str = "relu",
        kernel_init: Initializer = _tcn.tcn_kernel_init,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        time_major: bool = False,
        deterministic: bool = False,
    ) -> None:
        spec = _tcn.TemporalBlock(
            features=features,
            kernel_size=kernel_size,
            dilation=dilation,
            dropout_rate=dropout_rate,
            weight_norm=weight_norm,
            activation=activation,
            kernel_init=kernel_init,
            dtype=dtype,
            param_dtype=param_dtype,
        )
        make = functools.partial(spec.init, in_features=in_features)
        super().__init__(spec, make, rngs=rngs, stochastic=dropout_rate > 0, deterministic=deterministic)
        self.in_features = in_features
        self.time_major = time_major

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        return self.spec.apply(
            self.pure_params(), xs, lengths=lengths, time_major=self.time_major, dropout_key=self.dropout_key()
        )


class TCN(BlockModule):
    """NNX module of :class:`recurrax.conv.TCN`: a backbone ``xs[*B, T, D] → [*B, T, features[-1]]``.

    Example::

        tcn = recurrax.nn.TCN(3, 16, num_levels=3, kernel_size=3, dropout_rate=0.1, rngs=nnx.Rngs(0))
        tcn.eval()                               # no dropout
        ys = tcn(xs, lengths=lengths)            # [B, T, 3] -> [B, T, 16]; tcn.receptive_field == 29
    """

    spec: _tcn.TCN

    def __init__(
        self,
        in_features: int,
        features: int | Sequence[int],
        *,
        rngs: nnx.Rngs,
        num_levels: int | None = None,
        kernel_size: int = 2,
        dilations: Sequence[int] | None = None,
        dropout_rate: float = 0.0,
        weight_norm: bool = False,
        activation: str = "relu",
        kernel_init: Initializer = _tcn.tcn_kernel_init,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        time_major: bool = False,
        deterministic: bool = False,
    ) -> None:
        spec = _tcn.TCN(
            features=features,
            num_levels=num_levels,
            kernel_size=kernel_size,
            dilations=dilations,
            dropout_rate=dropout_rate,
            weight_norm=weight_norm,
            activation=activation,
            kernel_init=kernel_init,
            dtype=dtype,
            param_dtype=param_dtype,
        )
        make = functools.partial(spec.init, in_features=in_features)
        super().__init__(spec, make, rngs=rngs, stochastic=dropout_rate > 0, deterministic=deterministic)
        self.in_features = in_features
        self.time_major = time_major

    @property
    def receptive_field(self) -> int:
        return self.spec.receptive_field

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        return self.spec.apply(
            self.pure_params(), xs, lengths=lengths, time_major=self.time_major, dropout_key=self.dropout_key()
        )
