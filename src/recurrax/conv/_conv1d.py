"""1D convolution over time: causal, strided, dilated, grouped, with optional weight normalisation."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Literal, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from recurrax._ops import compute_dtype, from_batch_major, padding_mask, stats_dtype, zero_padding
from recurrax._types import Array, Initializer
from recurrax._validation import (
    as_array,
    check_block_inputs,
    check_fields,
    check_float_dtype,
    check_positive_fields,
    check_positive_int,
)

Padding = Literal["causal", "same", "valid"] | int | tuple[int, int]
PADDINGS: tuple[str, ...] = ("causal", "same", "valid")
"""The named padding modes; ``padding`` may also be an int (both sides) or a pair ``(left, right)``."""

LengthLike = TypeVar("LengthLike", int, Array)

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


def _is_int(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_padding(padding: Any) -> str | int | tuple[int, int]:
    """``padding`` if it is a named mode, an int ``>= 0`` or a pair ``(left, right)`` of them (a list: a tuple)."""
    expected = f"one of {PADDINGS}, an int >= 0 or a pair (left, right) of ints >= 0"
    if isinstance(padding, str):
        if padding not in PADDINGS:
            raise ValueError(f"padding must be {expected}, got {padding!r}")
        return padding
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2 or not all(_is_int(p) for p in padding):
            raise TypeError(f"padding must be {expected}, got {padding!r}")
        pair = (int(padding[0]), int(padding[1]))
    elif _is_int(padding):
        pair = (int(padding), int(padding))
    else:
        raise TypeError(f"padding must be {expected}, got {type(padding).__name__} {padding!r}")
    if min(pair) < 0:
        raise ValueError(f"padding must be {expected}, got {padding!r}")
    return pair if isinstance(padding, (tuple, list)) else int(padding)


def padding_pair(padding: str | int | tuple[int, int], kernel_size: int, dilation: int = 1) -> tuple[int, int]:
    """The zeros ``(left, right)`` added around the time axis for ``padding``.

    ``"causal"``: ``((K-1)·d, 0)``; ``"same"``: ``(⌊(K-1)·d / 2⌋, ⌈(K-1)·d / 2⌉)``;
    ``"valid"``: ``(0, 0)``; an int ``p``: ``(p, p)``; a pair: itself.
    """
    padding = check_padding(padding)
    total = (check_positive_int(kernel_size, "kernel_size") - 1) * check_positive_int(dilation, "dilation")
    if padding == "causal":
        return total, 0
    if padding == "same":
        return total // 2, total - total // 2
    if isinstance(padding, str):  # "valid", the one name left
        return 0, 0
    return padding if isinstance(padding, tuple) else (padding, padding)


@overload
def conv_output_length(
    length: int, kernel_size: int, *, stride: int = 1, padding: Padding = "causal", dilation: int = 1
) -> int: ...


@overload
def conv_output_length(
    length: Array, kernel_size: int, *, stride: int = 1, padding: Padding = "causal", dilation: int = 1
) -> Array: ...


def conv_output_length(
    length: int | Array,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: Padding = "causal",
    dilation: int = 1,
) -> int | Array:
    """Output steps of a convolution over ``length`` input steps (an int, or ``lengths[*B]``), as PyTorch's ``Conv1d``::

        T' = max(0, ⌊(T + left + right - dilation·(kernel_size - 1) - 1) / stride⌋ + 1)

    with ``(left, right)`` from :func:`padding_pair`. With ``stride=1``,
    ``"causal"`` and ``"same"`` keep the length; ``"same"`` with a stride gives
    ``⌈T / stride⌉``. Applied to ``lengths``, it gives the outputs' lengths.

    Example:
      >>> from recurrax.conv import conv_output_length
      >>> conv_output_length(40, 5, stride=2, padding=1)     # MNIST-1D's first convolution
      19
    """
    stride = check_positive_int(stride, "stride")
    left, right = padding_pair(padding, kernel_size, dilation)
    reach = dilation * (kernel_size - 1) + 1
    if _is_int(length):
        return max(0, (int(length) + left + right - reach) // stride + 1)
    lengths = as_array(length, "length")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"length must be an int or an integer array, got dtype {lengths.dtype}")
    return jnp.maximum((jnp.asarray(lengths) + (left + right - reach)) // stride + 1, 0)


def conv1d(
    xs: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: Padding = "causal",
    groups: int = 1,
    lengths: Array | None = None,
    time_major: bool = False,
    dtype: DTypeLike | None = None,
) -> Array:
    """Convolves ``xs`` over time with ``kernel``; a cross-correlation like every deep-learning conv.

    With ``left`` zeros before the sequence and ``right`` after it (see
    :func:`padding_pair`), output ``j`` is, as in ``torch.nn.Conv1d``::

        ys[..., j, :] = bias + Σ_k x_padded[..., j·stride + k·dilation, :] @ kernel[k]

    so ``padding="causal"`` (``left = (K-1)·d``) lets output ``t`` see inputs
    ``t - (K-1)·d … t`` only; ``"same"`` centres the window (the extra zero on
    the right when ``(K-1)·d`` is odd); ``"valid"`` adds none; an int ``p``
    adds ``p`` on both sides and a pair ``(left, right)`` says each. A stride
    ``s`` keeps the outputs ``0, s, 2s, …`` of the same convolution with stride
    1, so there are ``T' = ⌊(T + left + right - d·(K-1) - 1) / s⌋ + 1`` of them
    (:func:`conv_output_length`).

    Shapes:
      xs: ``[*B, T, D]`` (``[T, *B, D]`` with ``time_major``).
      kernel: ``[K, D // groups, F]``; bias: ``[F]``.
      lengths: ``[*B]``; inputs past an example's end are treated as zeros,
        whatever they hold (NaN included), so each example's outputs are those of
        its own ``lengths[b]`` steps alone; outputs past
        ``conv_output_length(lengths, K, stride=s, padding=padding, dilation=d)``
        are zero.
      returns: ``[*B, T', F]`` in ``dtype`` (default: promotion of xs and kernel).

    Example:
      >>> import jax.numpy as jnp
      >>> from recurrax.conv import conv1d
      >>> xs = jnp.zeros((1, 6, 1)).at[0, 2, 0].set(1.0)       # an impulse at t=2
      >>> kernel = jnp.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)
      >>> conv1d(xs, kernel, dilation=2)[0, :, 0].tolist()    # reaches t = 2, 4, 6
      [0.0, 0.0, 3.0, 0.0, 2.0, 0.0]
    """
    mode = check_padding(padding)
    check_positive_int(stride, "stride")
    check_positive_int(dilation, "dilation")
    check_positive_int(groups, "groups")
    kernel = jnp.asarray(as_array(kernel, "kernel"))
    if kernel.ndim != 3:
        raise ValueError(f"kernel must have shape [K, D // groups, F], got shape {tuple(kernel.shape)}")
    K, d_in, F = kernel.shape
    if F % groups:
        raise ValueError(f"groups={groups} must divide the output features F={F}")
    xs, lengths = check_block_inputs(xs, lengths, features=d_in * groups, time_major=time_major)
    if bias is not None and tuple(jnp.shape(bias)) != (F,):
        raise ValueError(f"bias must have shape ({F},), got {tuple(jnp.shape(bias))}")
    batch_shape, (T, D) = xs.shape[:-2], xs.shape[-2:]
    pads = padding_pair(mode, K, dilation)
    if conv_output_length(T, K, stride=stride, padding=pads, dilation=dilation) < 1:
        raise ValueError(
            f"xs has T={T} steps, too few for kernel_size={K} with dilation={dilation} and padding={mode!r} "
            f"(zeros {pads} around the sequence): T + left + right must be >= (kernel_size - 1) * dilation + 1 "
            f"= {(K - 1) * dilation + 1}"
        )
    dt = compute_dtype(dtype, xs, kernel)
    # Padding may hold anything (NaN, Inf): zeroed before any arithmetic, it reaches no value or gradient.
    x = zero_padding(xs, padding_mask(lengths, T)).astype(dt).reshape((-1, T, D))
    ys = jax.lax.conv_general_dilated(
        x,
        kernel.astype(dt),
        window_strides=(stride,),
        padding=[pads],
        rhs_dilation=(dilation,),
        dimension_numbers=("NWC", "WIO", "NWC"),
        feature_group_count=groups,
    )
    if bias is not None:
        ys = ys + bias.astype(dt)
    ys = ys.reshape((*batch_shape, ys.shape[1], F))
    if lengths is not None:
        out_lengths = conv_output_length(lengths, K, stride=stride, padding=pads, dilation=dilation)
        ys = zero_padding(ys, padding_mask(out_lengths, ys.shape[-2]))
    return from_batch_major(ys, time_major)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conv1D:
    """A 1D convolution over time (pure: ``init`` makes params, ``apply`` runs it).

    Parameters: ``kernel[K, D // groups, F]`` (or ``kernel_v`` and
    ``kernel_g[F]`` with ``weight_norm``) and ``bias[F]``. ``stride``,
    ``padding`` (``"causal"``, ``"same"``, ``"valid"``, an int or a pair
    ``(left, right)``), ``dilation`` and ``groups`` mean what they mean for
    ``torch.nn.Conv1d``; see :func:`conv1d`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from recurrax.conv import Conv1D
      >>> conv = Conv1D(features=8, kernel_size=3, dilation=2)       # causal by default
      >>> params = conv.init(jax.random.key(0), in_features=4)
      >>> conv.apply(params, jnp.ones((2, 10, 4))).shape, conv.receptive_field
      ((2, 10, 8), 5)
      >>> down = Conv1D(features=8, kernel_size=4, stride=2, padding=1)   # halves the length
      >>> lengths = jnp.array([10, 7])
      >>> down.apply(down.init(jax.random.key(0), 4), jnp.ones((2, 10, 4)), lengths=lengths).shape
      (2, 5, 8)
      >>> down.output_length(lengths).tolist()      # the outputs' lengths, to pass on
      [5, 3]
    """

    features: int
    kernel_size: int
    stride: int = 1
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
        if isinstance(self.padding, list):
            # A list becomes a tuple, so that equal convolutions compare (and hash) equal.
            object.__setattr__(self, "padding", tuple(self.padding))
        check_fields(self)
        check_positive_fields(self, "features", "kernel_size", "stride", "dilation", "groups")
        object.__setattr__(self, "padding", check_padding(self.padding))  # its ints are >= 0
        if self.features % self.groups:
            raise ValueError(f"groups={self.groups} must divide features={self.features}")
        check_float_dtype(self.dtype, "dtype")
        check_float_dtype(self.param_dtype, "param_dtype")

    @property
    def receptive_field(self) -> int:
        """Input steps that one output sees: ``(kernel_size - 1) * dilation + 1``."""
        return (self.kernel_size - 1) * self.dilation + 1

    def output_length(self, length: LengthLike) -> LengthLike:
        """Output steps for ``length`` input steps (an int, or ``lengths[*B]``); see :func:`conv_output_length`."""
        return conv_output_length(
            length, self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation
        )

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
        kernel: Array = params["kernel"]
        return kernel

    def apply(
        self, params: dict[str, Any], xs: Array, *, lengths: Array | None = None, time_major: bool = False
    ) -> Array:
        """``xs[*B, T, D] → ys[*B, T', F]`` with ``T' = self.output_length(T)``; see :func:`conv1d`."""
        return conv1d(
            xs,
            self.kernel(params),
            params.get("bias"),
            stride=self.stride,
            dilation=self.dilation,
            padding=self.padding,
            groups=self.groups,
            lengths=lengths,
            time_major=time_major,
            dtype=self.dtype,
        )
