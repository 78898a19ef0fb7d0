"""``QuantizedLinear``: the NNX layer that takes an ``nnx.Linear``'s place in a quantized model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import nnx

from recurrax._types import Array
from recurrax.nn._module import values

if TYPE_CHECKING:
    from recurrax.quantize._spec import Quantization


class QuantizedLinear(nnx.Module):
    """``nnx.Linear``'s computation, ``x @ kernel + bias``, with a quantized kernel (and optionally input).

    What :func:`recurrax.quantize.quantize` and
    :func:`recurrax.quantize.quantization_aware_model` put in place of an
    ``nnx.Linear``. ``kernel`` is a float ``nnx.Param`` fake-quantized at every
    call (training), a :class:`~recurrax.quantize.ScaledKernel` of two (learned
    scales), or a :class:`~recurrax.quantize.QuantizedArray` of two (stored
    codes and scales). Shapes: ``x[..., in_features]`` →
    ``[..., out_features]``.
    """

    def __init__(self, kernel: Any, bias: Array | None, quantization: Quantization, *, dtype: Any = None) -> None:
        self.kernel = nnx.data(jax.tree.map(nnx.Param, kernel))
        self.bias = nnx.Param(bias) if bias is not None else nnx.data(None)
        self.quantization = quantization
        self.dtype = dtype
        self.param_dtype = jnp.float32  # what apply_precision reads; the codes keep their own dtype

    def __call__(self, x: Array) -> Array:
        """``x[..., in] @ kernel + bias`` → ``[..., out]``."""
        # recurrax.quantize re-exports this class, so its numerics are imported here, not at the top.
        from recurrax.quantize._numerics import fake_quantize_rows
        from recurrax.quantize._params import materialize

        kernel = materialize({"kernel": values(self.kernel)}, self.quantization)["kernel"]
        if self.quantization.activations is not None:
            x = fake_quantize_rows(x, self.quantization.activations)
        dt = jnp.dtype(self.dtype) if self.dtype is not None else jnp.result_type(x, kernel)
        y = jnp.matmul(x.astype(dt), kernel.astype(dt))
        return y if self.bias is None else y + self.bias[...].astype(dt)
