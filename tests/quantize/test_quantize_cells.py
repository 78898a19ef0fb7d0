"""QuantizedCell: quantization-aware training and stored codes for any cell, held to the wrapped cell run
with quantize-dequantized kernels (the reference), through the engine's own paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax.quantize import (
    Quantization,
    QuantizedCell,
    dequantize,
    quantization_aware,
    quantized,
    weight_scale,
)
from recurrax.quantize._numerics import quantize

XS = jax.random.normal(jax.random.key(1), (2, 4, 3))
INT8 = Quantization("int8")


def _reference_params(params):
    """Every kernel through its int8 codes and back, written out without the wrapper."""
    out = dict(params)
    for name in ("input_kernel", "recurrent_kernel"):
        scale = weight_scale(params[name], "int8")
        out[name] = dequantize(quantize(params[name], scale, "int8"), scale)
    return out


def test_qat_forward_is_the_cell_with_quantized_kernels_bit_for_bit():
    """LSTM (its fused path), GRU and SimpleRNN in one compiled program; the stored codes and the activations'
    codes are held to the same forward pass in tests/quantize/test_quantize_models.py."""
    cells = [recurrax.lstm(4), recurrax.gru(4), recurrax.simple_rnn(4)]
    params = [cell.init(jax.random.key(0), 3) for cell in cells]

    @jax.jit
    def run(params, references):
        return [
            (recurrax.scan(quantization_aware(c, INT8), p, XS)[0], recurrax.scan(c, r, XS)[0])
            for c, p, r in zip(cells, params, references, strict=True)
        ]

    references = [_reference_params(p) for p in params]
    for cell, (qat, plain) in zip(cells, run(params, references), strict=True):
        np.testing.assert_array_equal(np.asarray(qat), np.asarray(plain), err_msg=type(cell).__name__)
    assert not np.array_equal(references[0]["recurrent_kernel"], params[0]["recurrent_kernel"])


def test_qat_gradient_is_the_float_gradient_at_the_quantized_kernels():
    """Straight-through with absmax scales (nothing clips): ∂L/∂w of the QAT cell is ∂L/∂w of the plain cell
    evaluated at the quantized kernels, on the LSTM's fused path with its custom_jvp."""
    cell = recurrax.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    qat = quantization_aware(cell, INT8)
    assert (
        qat.sequence_unsupported(params, cell.initial_carry((2,)), jnp.swapaxes(XS, 0, 1), recurrax.ScanOptions())
        is None
    )

    def loss(c, p):
        return jnp.sum(recurrax.scan(c, p, XS)[0] ** 2)

    @jax.jit
    def grads(params, reference):
        return jax.grad(lambda p: loss(qat, p))(params), jax.grad(lambda p: loss(cell, p))(reference)

    got, want = grads(params, _reference_params(params))
    for name in params:
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-5, atol=1e-6)


def test_the_wrapper_mirrors_the_cell_and_refuses_what_is_not_a_cell():
    cell = recurrax.lstm(6, proj_size=3, dtype=jnp.bfloat16)
    wrapped = quantization_aware(cell, Quantization(scales="learned"))
    assert (wrapped.hidden_size, wrapped.output_size, wrapped.dtype) == (6, 3, jnp.bfloat16)
    assert wrapped.supports_input_projection and not wrapped.is_linear
    params = jax.eval_shape(lambda: wrapped.init(jax.random.key(0), 2))
    assert params["input_kernel"].log_scale.shape == (1, 24) and params["projection_kernel"].kernel.shape == (6, 3)
    assert quantization_aware(wrapped).cell is cell  # wrapping twice wraps once
    with pytest.raises(TypeError, match="cell must be a recurrax Cell, got str"):
        QuantizedCell(cell="lstm")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"quantization must be a recurrax\.quantize\.Quantization or 'int8'/'fp8'"):
        quantized(cell, 8)  # type: ignore[arg-type]
