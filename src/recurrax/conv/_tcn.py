"""Temporal convolutional networks (Bai, Kolter & Koltun, 2018): residual blocks of dilated causal convolutions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._ops import (
    ACTIVATIONS,
    check_activation,
    dropout,
    from_batch_major,
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
from recurrax.conv._conv1d import Conv1D
from recurrax.conv._receptive_field import receptive_field

# Bai et al. initialise every convolution from N(0, 0.01²).
tcn_kernel_init: Initializer = jax.nn.initializers.normal(0.01)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemporalBlock:
    """One residual TCN block (Bai et al., 2018, Fig. 1b).

    Math (``conv`` causal with dilation ``d``; ``drop`` dropout when training)::

        h = drop(act(conv1(x)))
        h = drop(act(conv2(h)))
        y = act(h + (x if D == F else x W_1x1))

    With ``weight_norm`` both convolutions are weight-normalised, as in the
    paper; the optional 1×1 ``downsample`` matches the residual's width.
    Parameters: ``conv1``, ``conv2`` (and ``downsample``), each a
    :class:`Conv1D` parameter dict.
    """

    features: int
    kernel_size: int
    dilation: int = 1
    dropout_rate: float = 0.0
    weight_norm: bool = False
    activation: str = "relu"
    kernel_init: Initializer = tcn_kernel_init
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def __post_init__(self) -> None:
        check_fields(self)
        check_positive_fields(self, "features", "kernel_size", "dilation")
        check_rate_fields(self, "dropout_rate")
        check_activation(self.activation)
        check_float_dtype(self.dtype, "dtype")
        check_float_dtype(self.param_dtype, "param_dtype")

    def _conv(self, kernel_size: int, dilation: int, weight_norm: bool) -> Conv1D:
        return Conv1D(
            features=self.features,
            kernel_size=kernel_size,
            dilation=dilation,
            padding="causal",
            weight_norm=weight_norm,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @property
    def conv1(self) -> Conv1D:
        return self._conv(self.kernel_size, self.dilation, self.weight_norm)

    @property
    def conv2(self) -> Conv1D:
        return self._conv(self.kernel_size, self.dilation, self.weight_norm)

    @property
    def downsample(self) -> Conv1D:
        return self._conv(1, 1, False)

    @property
    def receptive_field(self) -> int:
        """``1 + 2 (kernel_size - 1) · dilation``."""
        return receptive_field(self.kernel_size, [self.dilation, self.dilation])

    def init(self, key: Array, in_features: int) -> dict[str, Any]:
        check_positive_int(in_features, "in_features")
        k1, k2, k3 = jax.random.split(key, 3)
        params = {"conv1": self.conv1.init(k1, in_features), "conv2": self.conv2.init(k2, self.features)}
        if in_features != self.features:
            params["downsample"] = self.downsample.init(k3, in_features)
        return params

    def apply(
        self,
        params: dict[str, Any],
        xs: Array,
        *,
        lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
    ) -> Array:
        """``xs[*B, T, D] → ys[*B, T, F]``; dropout is on when ``dropout_key`` is given."""
        xs, lengths = check_block_inputs(
            xs, lengths, features=self.conv1.in_features(params["conv1"]), time_major=time_major
        )
        valid = padding_mask(lengths, xs.shape[-2])
        # Padding may hold anything (NaN, Inf): zeroed before any arithmetic, it reaches no value or
        # gradient (the convolutions' kernel gradients would otherwise multiply it by a zero cotangent).
        xs = zero_padding(xs, valid)
        act = ACTIVATIONS[self.activation]
        k1, k2 = split_key(dropout_key, 2)
        h = dropout(act(self.conv1.apply(params["conv1"], xs)), self.dropout_rate, k1)
        h = dropout(act(self.conv2.apply(params["conv2"], h)), self.dropout_rate, k2)
        residual = self.downsample.apply(params["downsample"], xs) if "downsample" in params else xs
        ys = act(h + residual.astype(h.dtype))
        return from_batch_major(zero_padding(ys, valid), time_major)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TCN:
    """A temporal convolutional network: :class:`TemporalBlock` s with growing dilation.

    ``features`` gives each level's channels (an int repeats it ``num_levels``
    times); level ``i`` has dilation ``dilations[i]`` (default ``2**i``), so the
    receptive field grows exponentially with depth. Every convolution is
    causal: output ``t`` depends on inputs ``≤ t`` only.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.conv import TCN
      >>> tcn = TCN(features=16, num_levels=4, kernel_size=3)
      >>> params = tcn.init(jax.random.key(0), in_features=2)
      >>> tcn.apply(params, jnp.ones((5, 100, 2))).shape, tcn.receptive_field
      ((5, 100, 16), 61)

    References:
      Bai, Kolter, Koltun (2018), "An Empirical Evaluation of Generic
      Convolutional and Recurrent Networks for Sequence Modeling".
    """

    features: int | Sequence[int]
    num_levels: int | None = None
    kernel_size: int = 2
    dilations: Sequence[int] | None = None
    dropout_rate: float = 0.0
    weight_norm: bool = False
    activation: str = "relu"
    kernel_init: Initializer = tcn_kernel_init
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def __post_init__(self) -> None:
        check_fields(self)
        check_positive_fields(self, "num_levels", "kernel_size")
        check_rate_fields(self, "dropout_rate")
        if not isinstance(self.features, Sequence):
            if self.num_levels is None:
                raise ValueError("num_levels is required when features is one int (or pass one int per level)")
            features = (int(self.features),) * self.num_levels
        else:
            features = tuple(self.features)
            if not features:
                raise ValueError("features must name at least one level")
            if self.num_levels is not None and self.num_levels != len(features):
                raise ValueError(f"num_levels={self.num_levels} but features has {len(features)} levels")
        features = tuple(check_positive_int(f, f"features[{i}]") for i, f in enumerate(features))
        if self.dilations is None:
            dilations = tuple(2**i for i in range(len(features)))
        else:
            dilations = tuple(check_positive_int(d, f"dilations[{i}]") for i, d in enumerate(self.dilations))
        if len(dilations) != len(features):
            raise ValueError(f"dilations has {len(dilations)} entries, expected one per level ({len(features)})")
        # Normalised to tuples so that equal TCNs compare (and hash) equal.
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "num_levels", len(features))
        object.__setattr__(self, "dilations", dilations)
        self.blocks  # noqa: B018 — builds every block now, so bad options fail here

    @property
    def _levels(self) -> tuple[tuple[int, int], ...]:
        """``(features, dilation)`` of each level, from the tuples ``__post_init__`` made of both fields."""
        features, dilations = self.features, self.dilations
        assert isinstance(features, tuple) and dilations is not None  # __post_init__ normalised them
        return tuple(zip(features, dilations, strict=True))

    @property
    def blocks(self) -> tuple[TemporalBlock, ...]:
        return tuple(
            TemporalBlock(
                features=f,
                kernel_size=self.kernel_size,
                dilation=d,
                dropout_rate=self.dropout_rate,
                weight_norm=self.weight_norm,
                activation=self.activation,
                kernel_init=self.kernel_init,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
            )
            for f, d in self._levels
        )

    @property
    def out_features(self) -> int:
        return self._levels[-1][0]

    @property
    def receptive_field(self) -> int:
        """``1 + 2 (kernel_size - 1) Σ dilations`` (two convolutions per block)."""
        return receptive_field(self.kernel_size, [d for _, d in self._levels for _ in range(2)])

    def init(self, key: Array, in_features: int) -> dict[str, Any]:
        keys = jax.random.split(key, len(self._levels))
        blocks, features = [], in_features
        for block, k in zip(self.blocks, keys, strict=True):
            blocks.append(block.init(k, features))
            features = block.features
        return {"blocks": blocks}

    def apply(
        self,
        params: dict[str, Any],
        xs: Array,
        *,
        lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
    ) -> Array:
        """``xs[*B, T, D] → ys[*B, T, features[-1]]``; dropout is on when ``dropout_key`` is given."""
        keys = split_key(dropout_key, len(self._levels))
        ys = xs
        for block, block_params, k in zip(self.blocks, params["blocks"], keys, strict=True):
            ys = block.apply(block_params, ys, lengths=lengths, time_major=time_major, dropout_key=k)
        return ys
