"""Parameter trees in three forms: float (what ``init`` made), with learned scales (QAT), and stored as codes (PTQ).

Any cell's or block's parameters pass through these, whatever the cell: a
leaf is chosen by its name and rank (:meth:`Quantization.quantizes`), never by
the cell's type. :func:`materialize` turns each form back into the float tree
the cell's own functions take:

* a float kernel → ``fake_quantize(w, absmax scale)`` (QAT with absmax scales);
* a :class:`ScaledKernel` → ``fake_quantize(kernel, exp(log_scale))`` (QAT, learned scale);
* a :class:`~recurrax.quantize.QuantizedArray` → ``values · scale`` (a quantized model).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax._types import Array, Params
from recurrax.quantize._numerics import (
    QuantizedArray,
    dequantize,
    fake_quantize,
    quantize_array,
    weight_scale,
)
from recurrax.quantize._spec import Quantization


class ScaledKernel(NamedTuple):
    """A kernel trained with a learned per-channel scale: ``kernel[..., C]`` and ``log_scale[1, ..., 1, C]``.

    The scale is learned as its logarithm: always positive, and an optimizer
    step of Adam's usual size changes it by a ratio (a few percent), not by
    more than the scale itself (absmax/127 is often below 0.01).
    """

    kernel: Array
    log_scale: Array


def _is_node(x: Any) -> bool:
    return isinstance(x, (QuantizedArray, ScaledKernel))


def _name(path: tuple[Any, ...]) -> str:
    if not path:
        return ""
    last = path[-1]
    for attr in ("key", "name", "idx"):
        if hasattr(last, attr):
            return str(getattr(last, attr))
    return str(last)


def _map_targets(params: Params, spec: Quantization, fn: Any) -> Params:
    """``fn(leaf)`` on every quantized leaf (float targets and the two node types); others unchanged."""

    def visit(path: tuple[Any, ...], leaf: Any) -> Any:
        real = hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)  # not complex, not int
        if _is_node(leaf) or (real and spec.quantizes(_name(path), leaf.ndim)):
            return fn(leaf)
        return leaf

    return jax.tree_util.tree_map_with_path(visit, params, is_leaf=_is_node)


def with_learned_scales(params: Params, spec: Quantization) -> Params:
    """``params`` with each quantized kernel as a :class:`ScaledKernel` (its scale started at absmax)."""

    def learn(leaf: Any) -> Any:
        if _is_node(leaf):
            return leaf
        return ScaledKernel(leaf, jnp.log(weight_scale(leaf, spec.weights)))

    return _map_targets(params, spec, learn)


def quantize_params(params: Params, spec: Quantization) -> Params:
    """``params`` with each quantized kernel stored as a :class:`~recurrax.quantize.QuantizedArray`.

    Scales are each output channel's absmax, or the learned ones of a
    :class:`ScaledKernel`. Everything else (biases, norms) stays as it is.

    Example:
      >>> import jax, recurrax
      >>> from recurrax.quantize import Quantization, quantize_params
      >>> params = recurrax.lstm(8).init(jax.random.key(0), in_features=3)
      >>> stored = quantize_params(params, Quantization("int8"))
      >>> stored["input_kernel"].values.dtype, stored["input_kernel"].scale.shape, stored["bias"].dtype
      (dtype('int8'), (1, 32), dtype('float32'))
    """

    def store(leaf: Any) -> Any:
        if isinstance(leaf, QuantizedArray):
            return leaf
        if isinstance(leaf, ScaledKernel):
            return quantize_array(leaf.kernel, spec.weights, _learned(leaf.log_scale))
        return quantize_array(leaf, spec.weights)

    return _map_targets(params, spec, store)


def materialize(params: Params, spec: Quantization) -> Params:
    """The float parameters a cell's own functions take (see the module docstring); differentiable."""

    def real(leaf: Any) -> Any:
        if isinstance(leaf, QuantizedArray):
            return dequantize(leaf.values, leaf.scale, leaf.scale.dtype)
        if isinstance(leaf, ScaledKernel):
            return fake_quantize(leaf.kernel, _learned(leaf.log_scale), spec.weights)
        return fake_quantize(leaf, jax.lax.stop_gradient(weight_scale(leaf, spec.weights)), spec.weights)

    return _map_targets(params, spec, real)


def _learned(log_scale: Array) -> Array:
    return jnp.exp(log_scale.astype(jnp.float32))


def float_params(params: Params) -> Params:
    """``params`` with every :class:`ScaledKernel` back to its plain kernel (the scales dropped)."""
    return jax.tree.map(lambda x: x.kernel if isinstance(x, ScaledKernel) else x, params, is_leaf=_is_node)


def quantized_bytes(params: Params) -> tuple[int, int]:
    """``(bytes of the stored tree, bytes of its quantized leaves had they stayed float32)``."""
    stored = float32 = 0
    for leaf in jax.tree.leaves(params, is_leaf=_is_node):
        if isinstance(leaf, QuantizedArray):
            stored += leaf.nbytes
            float32 += int(leaf.values.size) * 4
        else:
            size = int(leaf.size) * jnp.dtype(leaf.dtype).itemsize
            stored += size
            float32 += size
    return stored, float32
