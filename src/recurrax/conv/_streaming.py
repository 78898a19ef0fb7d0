"""A causal convolution run as a recurrent cell: it streams one step at a time, as any RNN."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Cell
from recurrax._factory import make_factory
from recurrax._types import Array, Initializer, Params
from recurrax._validation import check_positive_fields
from recurrax.conv._conv1d import Conv1D, default_conv_kernel_init


@dataclasses.dataclass(frozen=True, kw_only=True)
class CausalConv1DCell(Cell):
    """A causal dilated convolution as a cell; its carry is the window of past inputs.

    One step, with ``K = kernel_size``, ``d = dilation`` and the carry
    ``window[*B, (K-1)·d, D]`` holding the last ``(K-1)·d`` inputs::

        full = concat(window, x)                  # [*B, (K-1)·d + 1, D]
        y    = bias + Σ_k full[k·d] @ kernel[k]   # the taps t-(K-1)d, …, t-d, t
        window' = full[1:]

    Scanned over a sequence from the zero window this equals
    :class:`recurrax.conv.Conv1D` with ``padding="causal"`` and the same
    parameters (``cell.conv`` is that block), so a trained convolution can
    run online, step by step, like any RNN. ``hidden_size`` is the output
    features ``F``; ``in_features`` is needed up front because the carry
    stores inputs.

    Attributes:
      hidden_size: ``F``, output features.
      kernel_size: ``K``, taps per filter.
      in_features: ``D``, input features (the carry stores past inputs).
      dilation: spacing ``d`` between taps.
      groups: feature groups (``groups == in_features == hidden_size``: depthwise).
      use_bias, weight_norm, kernel_init, bias_init: as :class:`recurrax.conv.Conv1D`.
      dtype, param_dtype, carry_dtype: compute, storage and window dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.conv.causal_conv1d(4, 3, dilation=2, in_features=2)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> xs = jax.random.normal(jax.random.key(1), (3, 9, 2))
      >>> streamed, window = recurrax.scan(cell, params, xs)
      >>> bool(jnp.allclose(streamed, cell.conv.apply(params, xs), atol=1e-6)), window.shape
      (True, (3, 4, 2))
    """

    in_features: int
    kernel_size: int
    dilation: int = 1
    groups: int = 1
    use_bias: bool = True
    weight_norm: bool = False
    kernel_init: Initializer = default_conv_kernel_init
    bias_init: Initializer = jax.nn.initializers.zeros

    def __post_init__(self) -> None:
        super().__post_init__()  # checks every field's type
        check_positive_fields(self, "in_features")
        if self.in_features % self.groups:
            raise ValueError(f"groups={self.groups} must divide in_features={self.in_features}")
        self.conv  # noqa: B018 — validates kernel_size, dilation and groups now

    @property
    def conv(self) -> Conv1D:
        """The full-sequence convolution with the same parameters."""
        return Conv1D(
            features=self.hidden_size,
            kernel_size=self.kernel_size,
            dilation=self.dilation,
            padding="causal",
            groups=self.groups,
            use_bias=self.use_bias,
            weight_norm=self.weight_norm,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    @property
    def window_size(self) -> int:
        """Past inputs the carry holds: ``(kernel_size - 1) * dilation``."""
        return (self.kernel_size - 1) * self.dilation

    def init(self, key: Array, in_features: int) -> Params:
        if in_features != self.in_features:
            raise ValueError(f"this cell was built for in_features={self.in_features}, got in_features={in_features}")
        return self.conv.init(key, in_features)

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Array:
        return jnp.zeros((*batch_shape, self.window_size, self.in_features), self.state_dtype(dtype))

    def step(self, params: Params, carry: Array, x: Array) -> tuple[Array, Array]:
        kernel = self.conv.kernel(params)
        dt = self.compute_dtype(x, kernel)
        full = jnp.concatenate([carry, x[..., None, :].astype(carry.dtype)], axis=-2)
        taps = full[..., :: self.dilation, :].astype(dt)  # [*B, K, D]
        K, d_group, F = kernel.shape
        g = self.groups
        taps = taps.reshape((*taps.shape[:-1], g, d_group))
        # Group j reads input channels j·D/g … and writes output channels j·F/g …, as lax's feature groups.
        y = jnp.einsum("...kgc,kcgf->...gf", taps, kernel.astype(dt).reshape(K, d_group, g, F // g))
        y = y.reshape((*y.shape[:-2], F))
        if self.use_bias:
            y = y + params["bias"].astype(dt)
        return full[..., 1:, :], y


causal_conv1d = make_factory(CausalConv1DCell, "causal_conv1d", positional=("hidden_size", "kernel_size"))
