"""The numbers of quantization: symmetric per-channel int8 and fp8 (e4m3) codes, their scales, and fake quantization.

Shapes: a weight ``w[..., C]`` gets one scale per slice along its last axis
(``scale[1, ..., 1, C]``, the output channels of every kernel in recurrax: a
cell's ``input_kernel[D, G·H]`` and ``recurrent_kernel[P, G·H]``, a Dense
``kernel[in, out]``, an attention ``kernel[D, N, K]``). Every contraction in
recurrax runs over leading axes, so these scales factor out of an integer
matmul. An activation ``x[*B, F]`` gets one scale per row (``[*B, 1]``), so
that no example's codes depend on another example in the batch.

The codes (Jacob et al., 2018; Micikevicius et al., 2022)::

    int8:  q = clip(round(w / s), -127, 127),  s = max|w| / 127
    fp8:   q = e4m3(clip(w / s, -448, 448)),    s = max|w| / 448
    w ≈ q · s

:func:`fake_quantize` is ``dequantize(quantize(w, s), s)`` in the forward pass,
bit for bit, with the straight-through gradient (Bengio et al., 2013) inside
the clipping range, zero outside, and LSQ's gradient for the scale (Esser et
al., 2020): ``round(w/s) - w/s`` inside, ``±qmax`` outside. "Inside" is where
the clip leaves the code as rounding made it: ``|w/s| < 127.5`` for int8 and
``|w/s| < 464`` for fp8 (half a step beyond the largest code), so that a
channel's largest weight, whose ``w/s`` rounds to a hair above ``qmax``, is inside.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from recurrax._types import Array

#: The number formats: ``"int8"`` (symmetric, 255 levels) and ``"fp8"`` (``float8_e4m3fn``).
Format = Literal["int8", "fp8"]
FORMATS: tuple[Format, ...] = ("int8", "fp8")

# The largest code of each format: 127 (int8, symmetric) and e4m3fn's largest finite value.
QMAX: dict[str, float] = {"int8": 127.0, "fp8": 448.0}
_STORAGE = {"int8": jnp.int8, "fp8": jnp.float8_e4m3fn}
# Where the clip starts to change a code: half a step past the largest (e4m3's top step is 32).
CLIP_EDGE: dict[str, float] = {"int8": 127.5, "fp8": 464.0}


class QuantizedArray(NamedTuple):
    """A tensor stored as codes and scales: ``values[..., C]`` (int8 or float8_e4m3fn) and ``scale`` (float32).

    ``scale`` broadcasts against ``values`` (``[1, ..., 1, C]`` for a weight).
    ``dtype`` is the dtype :func:`dequantize` gives back (the original's).
    A pytree of two arrays, so it sits in a parameter tree, a Flax module and
    a checkpoint like any other parameter.
    """

    values: Array
    scale: Array

    @property
    def format(self) -> Format:
        """``"int8"`` or ``"fp8"``, read from the codes' dtype."""
        return "int8" if self.values.dtype == jnp.int8 else "fp8"

    @property
    def nbytes(self) -> int:
        """Bytes of codes and scales together."""
        return int(self.values.size * self.values.dtype.itemsize + self.scale.size * self.scale.dtype.itemsize)


def check_format(fmt: str, name: str) -> Format:
    """``fmt`` if it is one of :data:`FORMATS`; else a ValueError naming ``name``."""
    if fmt not in FORMATS:
        raise ValueError(f"{name} must be one of {FORMATS}, got {fmt!r}")
    return fmt


def weight_scale(w: Array, fmt: Format) -> Array:
    """One scale per output channel (the last axis): ``max|w[..., c]| / qmax``, ``[1, ..., 1, C]`` float32.

    A channel of zeros gets scale 1 (its codes are 0 either way).
    """
    axes = tuple(range(w.ndim - 1))
    absmax = jnp.max(jnp.abs(w.astype(jnp.float32)), axis=axes, keepdims=True)
    return _from_absmax(absmax, fmt)


def row_scale(x: Array, fmt: Format) -> Array:
    """One scale per row of an activation ``x[*B, F]``: ``max|x[b, :]| / qmax``, ``[*B, 1]`` float32."""
    absmax = jnp.max(jnp.abs(x.astype(jnp.float32)), axis=-1, keepdims=True)
    return _from_absmax(absmax, fmt)


def static_scale(x: Any, fmt: Format, percentile: float = 100.0) -> Array:
    """One scale for all of ``x``: its ``percentile``-th ``|x|`` over ``qmax``, a float32 scalar ``[]``.

    ``percentile=100`` (default) is the absmax: nothing in ``x`` clips. A lower
    percentile gives the bulk of the values finer steps and clips the rest.
    All zeros (or an empty ``x``) give scale 1. Computed on the host with
    numpy (calibration gathers observed values there; no compile per shape).
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    magnitudes = np.abs(np.asarray(x, np.float32).ravel())
    if magnitudes.size == 0:
        return jnp.ones((), jnp.float32)
    edge = np.float32(magnitudes.max() if percentile == 100.0 else np.percentile(magnitudes, percentile))
    return jnp.asarray(edge / np.float32(QMAX[fmt]) if edge > 0 else np.float32(1.0))


def _from_absmax(absmax: Array, fmt: Format) -> Array:
    return jnp.where(absmax > 0, absmax / QMAX[fmt], 1.0).astype(jnp.float32)


def quantize(w: Array, scale: Array, fmt: Format) -> Array:
    """The codes of ``w`` at ``scale`` (broadcast): int8 or float8_e4m3fn, same shape as ``w``."""
    ratio = jnp.clip(w.astype(jnp.float32) / scale, -QMAX[fmt], QMAX[fmt])
    if fmt == "int8":
        ratio = jnp.round(ratio)
    return ratio.astype(_STORAGE[fmt])


def dequantize(values: Array, scale: Array, dtype: DTypeLike = jnp.float32) -> Array:
    """``values · scale`` in ``dtype``: the real numbers the codes stand for."""
    return (values.astype(jnp.float32) * scale).astype(dtype)


def quantize_array(w: Array, fmt: Format, scale: Array | None = None) -> QuantizedArray:
    """``w`` as a :class:`QuantizedArray` (per-channel absmax scales unless ``scale`` is given)."""
    s = weight_scale(w, fmt) if scale is None else jnp.asarray(scale, jnp.float32)
    return QuantizedArray(quantize(w, s, fmt), s)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def fake_quantize(w: Array, scale: Array, fmt: Format) -> Array:
    """``dequantize(quantize(w, scale, fmt), scale, w.dtype)``, differentiable (see the module docstring).

    Gradients: ``∂/∂w`` is 1 where the clip leaves the code alone
    (``|w/scale| <`` :data:`CLIP_EDGE`) and 0 where it clipped
    (straight-through); ``∂/∂scale`` is LSQ's. Pass
    ``jax.lax.stop_gradient(scale)`` for scales that are not learned.
    """
    return dequantize(quantize(w, scale, fmt), scale, w.dtype)


@fake_quantize.defjvp
def _fake_quantize_jvp(fmt: Format, primals: tuple[Array, Array], tangents: tuple[Array, Array]) -> tuple[Array, Array]:
    w, scale = primals
    w_dot, scale_dot = tangents
    codes = quantize(w, scale, fmt)
    out = dequantize(codes, scale, w.dtype)
    ratio = w.astype(jnp.float32) / scale
    inside = jnp.abs(ratio) < CLIP_EDGE[fmt]
    # LSQ: d(s·q(w/s))/ds is q(w/s) - w/s inside the range and ±qmax where w/s clipped.
    scale_slope = jnp.where(inside, codes.astype(jnp.float32) - ratio, jnp.sign(ratio) * QMAX[fmt])
    tangent = jnp.where(inside, w_dot, jnp.zeros_like(w_dot)) + (scale_slope * scale_dot).astype(w_dot.dtype)
    return out, tangent


def fake_quantize_rows(x: Array, fmt: Format) -> Array:
    """An activation ``x[*B, F]`` through its codes at its own per-row scale (straight-through gradient)."""
    return fake_quantize(x, jax.lax.stop_gradient(row_scale(x, fmt)), fmt)
