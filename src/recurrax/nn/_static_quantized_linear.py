"""``StaticQuantizedLinear``: a quantized ``nnx.Linear`` whose input has one fixed, calibrated scale."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from flax import nnx

from recurrax._types import Array
from recurrax.nn._module import values
from recurrax.nn._quantized_linear import QuantizedLinear

if TYPE_CHECKING:
    from recurrax.quantize._spec import Quantization


class StaticQuantizedLinear(QuantizedLinear):
    """:class:`~recurrax.quantize.QuantizedLinear` with a static input scale: ``q(x, s_x) @ kernel + bias``.

    What :func:`~recurrax.quantize.quantize` puts in place of an ``nnx.Linear``
    when ``quantization.activation_scales == "static"``. ``input_scale`` (a
    float32 scalar ``nnx.Param``, saved with the model) is the one the
    calibration found; inputs beyond ``qmax · input_scale`` clip. Shapes:
    ``x[..., in_features]`` → ``[..., out_features]``.
    """

    def __init__(
        self, kernel: Any, bias: Array | None, quantization: Quantization, input_scale: Array, *, dtype: Any = None
    ) -> None:
        if not quantization.static_activations:
            raise ValueError(f"StaticQuantizedLinear needs activation_scales='static', got {quantization}")
        super().__init__(kernel, bias, quantization, dtype=dtype)
        self.input_scale = nnx.Param(jnp.asarray(input_scale, jnp.float32))

    def __call__(self, x: Array) -> Array:
        """``fake_quantize(x, input_scale) @ kernel + bias`` → ``[..., out]``."""
        # recurrax.quantize re-exports this class, so its numerics are imported here, not at the top.
        from recurrax.quantize._numerics import fake_quantize
        from recurrax.quantize._params import materialize

        kernel = materialize({"kernel": values(self.kernel)}, self.quantization)["kernel"]
        fmt = self.quantization.activations
        assert fmt is not None  # a static quantization has activations (Quantization checks it)
        x = fake_quantize(x, jax.lax.stop_gradient(self.input_scale[...]), fmt)
        dt = jnp.dtype(self.dtype) if self.dtype is not None else jnp.result_type(x, kernel)
        y = jnp.matmul(x.astype(dt), kernel.astype(dt))
        return y if self.bias is None else y + self.bias[...].astype(dt)
