"""1D convolution over time: causal, dilated, grouped, with optional weight normalisation."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._ops import compute_dtype, from_batch_major, padding_mask, stats_dtype, zero_padding
from recurrax._types import Array, Initializer
from recurrax._validation import as_array, check_block_inputs, check_choice, check_float_dtype, check_positive_int

Padding = Literal["causal", "same", "valid"]
PADDINGS: tuple[str, ...] = ("causal", "same", "valid")

default_conv_kernel_init: Initializer = jax.nn.initializers.lecun_normal()


def weight_norm(v: Array, g: Array) -> Array:
    """Weight normalisation (Salimans & Kingma, 2016): ``w = g ⊙ v / ‖v‖``.

    ``v[K, D_in, F]``, ``g[F]``: each output channel's filter is rescaled to
    norm ``g`` (the norm is taken over kernel taps and input channels, as
    PyTorch's ``weight_norm`` on a ``Conv1d`` with ``dim=0``).
    """
    acc = stats_dtype(v.dtype)
    vf = v.astype(acc)
    norm = jnp.sqrt(jnp.sum(jnp.square(vf), axis=(0, 1)))
    return (vf * (g.astype(acc) / norm)).astype(v.dtype)


def _padding_pair(padding: str, kernel_size: int, dilation: int) -> tuple[int, int]:
    total = (kernel_size - 1) * dilation
    if padding == "causal":
        return total, 0
    if padding == "same":
        return total // 2, total - total // 2
    return 0, 0


def conv1d(
    xs: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    dilation: int = 1,
    padding: Padding = "causal",
    groups: int = 1,
    lengths: Array | None = None,
    time_major: bool = False,
    dtype: DTypeLike | None = None,
) -> Array:
    """Convolves ``xs`` over time with ``kernel``; a cross-correlation like every deep-learning conv.

    With ``padding="causal"``, output ``t`` sees inputs ``t - (K-1)·d … t`` only::

        ys[..., t, :] = bias + Σ_k xs[..., t - (K-1-k)·d, :] @ kernel[k]      # xs[<0] = 0

    ``"same"`` centres the window (extra padding on the right when ``(K-1)·d``
    is odd) and ``"valid"`` uses no padding (``T' = T - (K-1)·d``).

    Shapes:
      xs: ``[*B, T, D]`` (``[T, *B, D]`` with ``time_major``).
      kernel: ``[K, D // groups, F]``; bias: ``[F]``.
      lengths: ``[*B]``; inputs past an example's end are treated as zeros and
        its outputs there are zero (not allowed with ``"valid"``).
      returns: ``[*B, T', F]`` in ``dtype`` (default: promotion of xs and kernel).

    Example:
      >>> import jax.numpy as jnp
      >>> from recurrax.conv import conv1d
      >>> xs = jnp.zeros((1, 6, 1)).at[0, 2, 0].set(1.0)       # an impulse at t=2
      >>> kernel = jnp.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)
      >>> conv1d(xs, kernel, dilation=2)[0, :, 0].tolist()    # reaches t = 2, 4, 6
      [0.0, 0.0, 3.0, 0.0, 2.0, 0.0]
    """
    check_choice(padding, "padding", PADDINGS)
    check_positive_int(dilation, "dilation")
    check_positive_int(groups, "groups")
    kernel = as_array(kernel, "kernel")
    if kernel.ndim != 3:
        raise ValueError(f"kernel must have shape [K, D // groups, F], got shape {tuple(kernel.shape)}")
    K, d_in, F = kernel.shape
    if F % groups:
        raise ValueError(f"groups={groups} must divide the output features F={F}")
    xs, lengths = check_block_inputs(xs, lengths, features=d_in * groups, time_major=time_major)
    if bias is not None and tuple(jnp.shape(bias)) != (F,):
        raise ValueError(f"bias must have shape ({F},), got {tuple(jnp.shape(bias))}")
    if padding == "valid":
        if lengths is not None:
            raise ValueError("lengths cannot be used with padding='valid' (outputs no longer align with inputs)")
        if xs.shape[-2] < (K - 1) * dilation + 1:
            raise ValueError(
                f"padding='valid' needs T >= (kernel_size - 1) * dilation + 1 = {(K - 1) * dilation + 1}, "
                f"got T={xs.shape[-2]}"
            )
    dt = compute_dtype(dtype, xs, kernel)
    batch_shape, (T, D) = xs.shape[:-2], xs.shape[-2:]
    valid = padding_mask(lengths, T)
    x = zero_padding(xs, valid).astype(dt).reshape((-1, T, D))
    ys = jax.lax.conv_general_dilated(
        x,
        kernel.astype(dt),
        window_strides=(1,),
        padding=[_padding_pair(padding, K, dilation)],
        rhs_dilation=(dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=groups,
    )
    if bias is not None:
        ys = ys + bias.astype(dt)
    ys = ys.reshape((*batch_shape, ys.shape[1], F))
    return from_batch_major(zero_padding(ys, valid), time_major)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conv1D:
    """A 1D convolution over time (pure: ``init`` makes params, ``apply`` runs it).

    Parameters: ``kernel[K, D // groups, F]`` (or ``kernel_v`` and
    ``kernel_g[F]`` with ``weight_norm``) and ``bias[F]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.conv import Conv1D
      >>> conv = Conv1D(features=8, kernel_size=3, dilation=2)       # causal by default
      >>> params = conv.init(jax.random.key(0), in_features=4)
      >>> conv.apply(params, jnp.ones((2, 10, 4))).shape, conv.receptive_field
      ((2, 10, 8), 5)
    """

    features: int
    kernel_size: int
    dilation: int = 1
    padding: Padding = "causal"
    groups: int = 1
    use_bias: bool = True
    weight_norm: bool = False
    kernel_init: Initializer = default_conv_kernel_init
    bias_init: Initializer = jax.nn.initializers.zeros
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def __post_init__(self) -> None:
        check_positive_int(self.features, "features")
        check_positive_int(self.kernel_size, "kernel_size")
        check_positive_int(self.dilation, "dilation")
        check_positive_int(self.groups, "groups")
        check_choice(self.padding, "padding", PADDINGS)
        if self.features % self.groups:
            raise ValueError(f"groups={self.groups} must divide features={self.features}")
        check_float_dtype(self.dtype, "dtype")
        check_float_dtype(self.param_dtype, "param_dtype")

    @property
    def receptive_field(self) -> int:
        """Input steps that one output sees: ``(kernel_size - 1) * dilation + 1``."""
        return (self.kernel_size - 1) * self.dilation + 1

    def init(self, key: Array, in_features: int) -> dict[str, Array]:
        """Fresh parameters for inputs with ``in_features`` features."""
        check_positive_int(in_features, "in_features")
        if in_features % self.groups:
            raise ValueError(f"groups={self.groups} must divide in_features={in_features}")
        k_kernel, k_bias = jax.random.split(key)
        shape = (self.kernel_size, in_features // self.groups, self.features)
        kernel = self.kernel_init(k_kernel, shape, self.param_dtype)
        params: dict[str, Array] = {}
        if self.weight_norm:
            # g starts at ‖v‖, so the initial effective kernel is v itself.
            params["kernel_v"] = kernel
            norm = jnp.sqrt(jnp.sum(jnp.square(kernel.astype(stats_dtype(kernel.dtype))), axis=(0, 1)))
            params["kernel_g"] = norm.astype(self.param_dtype)
        else:
            params["kernel"] = kernel
        if self.use_bias:
            params["bias"] = self.bias_init(k_bias, (self.features,), self.param_dtype)
        return params

    def in_features(self, params: dict[str, Any]) -> int:
        """The input features ``D`` that ``params`` expect."""
        kernel = params["kernel_v"] if self.weight_norm else params["kernel"]
        return int(kernel.shape[1]) * self.groups

    def kernel(self, params: dict[str, Any]) -> Array:
        """The effective kernel ``[K, D // groups, F]`` (weight-normalised if asked)."""
        if self.weight_norm:
            return weight_norm(params["kernel_v"], params["kernel_g"])
        return params["kernel"]

    def apply(
        self, params: dict[str, Any], xs: Array, *, lengths: Array | None = None, time_major: bool = False
    ) -> Array:
        """``xs[*B, T, D] → ys[*B, T, F]`` (``T - (K-1)·d`` steps with ``"valid"``); see :func:`conv1d`."""
        return conv1d(
            xs,
            self.kernel(params),
            params.get("bias"),
            dilation=self.dilation,
            padding=self.padding,
            groups=self.groups,
            lengths=lengths,
            time_major=time_major,
            dtype=self.dtype,
        )
