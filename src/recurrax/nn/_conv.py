"""Flax NNX modules for the convolution blocks: thin owners of the pure blocks' parameters."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from recurrax.conv import _conv1d, _tcn
from recurrax.conv._common import Array, Initializer


class SpecModule(nnx.Module):
    """Base of recurrax's block modules: owns the ``nnx.Param`` s that ``spec.init`` made.

    ``spec`` is an immutable pure block (``init``/``apply``); the module adds
    no math. Dropout follows NNX conventions: it is on unless
    ``deterministic`` (``model.eval()`` sets it, ``model.train()`` clears it),
    and its keys come from the ``"dropout"`` stream of the ``rngs`` given at
    construction (the default stream if there is none).
    """

    def __init__(
        self,
        spec: Any,
        make_params: Callable[[Array], Any],
        *,
        rngs: nnx.Rngs,
        dropout: bool,
        deterministic: bool = False,
    ) -> None:
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        self.spec = spec
        # One compiled init instead of one compile per initialiser call.
        self.params = nnx.data(jax.tree.map(nnx.Param, jax.jit(make_params)(rngs.params())))
        self.deterministic = bool(deterministic)
        self.dropout_rngs = rngs["dropout"].fork() if dropout else nnx.data(None)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view(model, deterministic=...)``."""
        if deterministic is not None:
            self.deterministic = deterministic

    def pure_params(self) -> Any:
        """The parameters as the plain pytree that ``spec.apply`` takes."""
        return jax.tree.map(lambda v: v[...], self.params, is_leaf=lambda v: isinstance(v, nnx.Variable))

    def dropout_key(self) -> Array | None:
        """A fresh key when dropout is active, else None (the pure blocks' convention)."""
        if self.deterministic or self.dropout_rngs is None:
            return None
        return self.dropout_rngs()


class Conv1D(SpecModule):
    """NNX module of :class:`recurrax.conv.Conv1D`: ``xs[*B, T, D] → [*B, T, F]`` (causal by default).

    Example::

        conv = recurrax.nn.Conv1D(4, 8, kernel_size=3, dilation=2, rngs=nnx.Rngs(0))
        ys = conv(xs, lengths=lengths)        # [B, T, 4] -> [B, T, 8]
    """

    def __init__(
        self,
        in_features: int,
        features: int,
        kernel_size: int,
        *,
        rngs: nnx.Rngs,
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
        super().__init__(
            spec,
            functools.partial(spec.init, in_features=in_features),
            rngs=rngs,
            dropout=False,
            deterministic=deterministic,
        )
        self.in_features = in_features
        self.time_major = time_major

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        return self.spec.apply(self.pure_params(), xs, lengths=lengths, time_major=self.time_major)


class TemporalBlock(SpecModule):
    """NNX module of :class:`recurrax.conv.TemporalBlock` (one residual TCN block)."""

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
        super().__init__(
            spec,
            functools.partial(spec.init, in_features=in_features),
            rngs=rngs,
            dropout=dropout_rate > 0,
            deterministic=deterministic,
        )
        self.in_features = in_features
        self.time_major = time_major

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        return self.spec.apply(
            self.pure_params(), xs, lengths=lengths, time_major=self.time_major, dropout_key=self.dropout_key()
        )


class TCN(SpecModule):
    """NNX module of :class:`recurrax.conv.TCN`: a backbone ``xs[*B, T, D] → [*B, T, features[-1]]``.

    Example::

        tcn = recurrax.nn.TCN(3, 16, num_levels=3, kernel_size=3, dropout_rate=0.1, rngs=nnx.Rngs(0))
        tcn.eval()                               # no dropout
        ys = tcn(xs, lengths=lengths)            # [B, T, 3] -> [B, T, 16]; tcn.receptive_field == 29
    """

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
        super().__init__(
            spec,
            functools.partial(spec.init, in_features=in_features),
            rngs=rngs,
            dropout=dropout_rate > 0,
            deterministic=deterministic,
        )
        self.in_features = in_features
        self.time_major = time_major

    @property
    def receptive_field(self) -> int:
        return self.spec.receptive_field

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        return self.spec.apply(
            self.pure_params(), xs, lengths=lengths, time_major=self.time_major, dropout_key=self.dropout_key()
        )
