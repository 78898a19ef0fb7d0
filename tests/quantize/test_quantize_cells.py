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
    """The wrapper hands each cell exactly the quantize-dequantized kernels; on the step loop (SimpleRNN on
    CPU) its outputs are the reference's bit for bit. The LSTM's fused path: the next test."""
    cells = [recurrax.lstm(4), recurrax.gru(4), recurrax.simple_rnn(4)]

    @jax.jit  # one program: eager, the initialisers and quantizers compile once per op and shape
    def handed_and_reference(key):
        params = [cell.init(key, 3) for cell in cells]
        handed = [quantization_aware(c, INT8).float_params(p) for c, p in zip(cells, params, strict=True)]
        return params, handed, [_reference_params(p) for p in params]

    all_params, handed, references = handed_and_reference(jax.random.key(0))
    for got, want in zip(handed, references, strict=True):
        for name in want:
            np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(want[name]), err_msg=name)
    cell, params = cells[2], all_params[2]

    @jax.jit
    def run(params, reference):
        return recurrax.scan(quantization_aware(cell, INT8), params, XS)[0], recurrax.scan(cell, reference, XS)[0]

    qat, plain = run(params, references[2])
    np.testing.assert_array_equal(np.asarray(qat), np.asarray(plain))
    assert not np.array_equal(references[2]["recurrent_kernel"], params["recurrent_kernel"])


# slow: the LSTM's fused loop with its custom_jvp, forward and backward (~1.5-2 CPU-s of compiling)
@pytest.mark.slow
def test_qat_on_the_fused_lstm_is_the_reference_and_its_gradient_the_float_gradient_at_the_quantized_kernels():
    """Forward bit for bit; and straight-through with absmax scales (nothing clips): ∂L/∂w of the QAT cell
    is ∂L/∂w of the plain cell evaluated at the quantized kernels."""
    cell = recurrax.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    qat = quantization_aware(cell, INT8)
    carry = cell.initial_carry((2,))
    assert qat.sequence_unsupported(params, carry, jnp.swapaxes(XS, 0, 1), recurrax.ScanOptions()) is None

    def loss(c, p):
        ys = recurrax.scan(c, p, XS)[0]
        return jnp.sum(ys**2), ys

    @jax.jit
    def run(params, reference):
        return jax.grad(lambda p: loss(qat, p), has_aux=True)(params), jax.grad(lambda p: loss(cell, p), has_aux=True)(
            reference
        )

    (got, ys), (want, ys_plain) = run(params, _reference_params(params))
    np.testing.assert_array_equal(np.asarray(ys), np.asarray(ys_plain))
    for name in params:
        np.testing.assert_allclose(np.asarray(got[name]), np.asarray(want[name]), rtol=1e-5, atol=1e-6)


def test_the_wrapper_mirrors_the_cell_keeps_a_linear_cell_linear_and_refuses_what_is_not_a_cell():
    cell = recurrax.lstm(6, proj_size=3, dtype=jnp.bfloat16)
    wrapped = quantization_aware(cell, Quantization(scales="learned"))
    assert (wrapped.hidden_size, wrapped.output_size, wrapped.dtype) == (6, 3, jnp.bfloat16)
    assert wrapped.supports_input_projection and not wrapped.is_linear
    params = jax.eval_shape(lambda: wrapped.init(jax.random.key(0), 2))
    assert params["input_kernel"].log_scale.shape == (1, 24) and params["projection_kernel"].kernel.shape == (6, 3)
    assert quantization_aware(wrapped).cell is cell  # wrapping twice wraps once
    linear = quantization_aware(recurrax.min_gru(4), Quantization(activations="int8"))
    assert linear.is_linear and type(linear).__name__ == "QuantizedLinearCell"
    params = linear.init(jax.random.key(0), 3)

    @jax.jit
    def both(params):  # the associative scan on the quantized weights equals the step loop on them
        return [recurrax.scan(linear, params, XS, method=m)[0] for m in ("parallel", "sequential")]

    parallel, sequential = both(params)
    np.testing.assert_allclose(np.asarray(parallel), np.asarray(sequential), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="cell must be a recurrax Cell, got str"):
        QuantizedCell(cell="lstm")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"quantization must be a recurrax\.quantize\.Quantization or 'int8'/'fp8'"):
        quantized(cell, 8)  # type: ignore[arg-type]
