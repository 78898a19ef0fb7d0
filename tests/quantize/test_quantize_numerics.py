"""The numbers of recurrax.quantize: codes, per-channel scales, fake quantization and its gradients, against
their definitions written out in numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recurrax.quantize import (
    Quantization,
    dequantize,
    fake_quantize,
    quantize_array,
    quantize_params,
    weight_scale,
)
from recurrax.quantize._numerics import QMAX, quantize

W = np.asarray(jax.random.normal(jax.random.key(0), (5, 6)), np.float32) * np.linspace(0.1, 3.0, 6, dtype=np.float32)


@pytest.mark.parametrize("fmt", ["int8", "fp8"])
def test_fake_quantize_is_quantize_then_dequantize_bit_for_bit(fmt):
    scale = weight_scale(W, fmt)
    np.testing.assert_allclose(np.asarray(scale), np.abs(W).max(0, keepdims=True) / QMAX[fmt], rtol=1e-7)
    reference = dequantize(quantize(W, scale, fmt), scale)
    np.testing.assert_array_equal(np.asarray(fake_quantize(W, scale, fmt)), np.asarray(reference))
    codes = quantize_array(W, fmt).values
    assert codes.dtype == (jnp.int8 if fmt == "int8" else jnp.float8_e4m3fn) and codes.shape == W.shape


def test_int8_codes_are_within_half_a_scale_of_each_weight():
    stored = quantize_array(W, "int8")
    assert stored.scale.shape == (1, 6) and stored.nbytes == W.size + 6 * 4
    codes = np.asarray(stored.values, np.int32)
    assert codes.min() >= -127 and codes.max() <= 127 and np.abs(codes).max(0).tolist() == [127] * 6
    error = np.abs(W - np.asarray(dequantize(stored.values, stored.scale)))
    # Half a step, plus float32 rounding of the product codes · scale.
    assert np.all(error <= np.asarray(stored.scale) * (0.5 + 1e-6)), error / np.asarray(stored.scale)


def test_straight_through_and_lsq_gradients_are_their_definitions():
    """With a scale that makes some weights clip: ∂/∂w is 1 where the clip leaves the code alone
    (|w/s| < 127.5) and 0 where it does not; ∂/∂s is round(w/s) - w/s there and ±127 elsewhere (LSQ),
    summed over each channel. With absmax scales every weight is inside, the largest included."""
    scale = np.full((1, 6), np.abs(W).max() / 200, np.float32)  # the largest weights clip
    cotangent = np.asarray(jax.random.normal(jax.random.key(1), W.shape), np.float32)
    loss = jax.jit(jax.grad(lambda w, s: jnp.sum(fake_quantize(w, s, "int8") * cotangent), argnums=(0, 1)))
    grad_w, grad_s = loss(W, scale)
    ratio = W / scale
    inside = np.abs(ratio) < 127.5
    assert 0 < inside.sum() < W.size  # both cases occur
    np.testing.assert_array_equal(np.asarray(grad_w), np.where(inside, cotangent, 0.0))
    slope = np.where(inside, np.clip(np.round(ratio), -127, 127) - ratio, np.sign(ratio) * 127)
    # round(w/s) - w/s cancels: an ulp of w/s (up to 127 · 2⁻²³ ≈ 1.5e-5, compiled or not) survives, times 5 rows.
    np.testing.assert_allclose(np.asarray(grad_s), (slope * cotangent).sum(0, keepdims=True), rtol=1e-5, atol=2e-4)
    absmax = jax.jit(
        jax.grad(lambda w: jnp.sum(fake_quantize(w, jax.lax.stop_gradient(weight_scale(w, "int8")), "int8")))
    )(W)
    np.testing.assert_array_equal(np.asarray(absmax), np.ones_like(W))


def test_quantize_params_stores_the_kernels_and_leaves_the_rest():
    params = {"input_kernel": W, "recurrent_kernel": W[:3], "bias": W[0], "peephole": W[:2]}
    stored = quantize_params(params, Quantization("int8"))
    assert stored["input_kernel"].values.dtype == jnp.int8 and stored["recurrent_kernel"].scale.shape == (1, 6)
    assert stored["bias"] is params["bias"] and stored["peephole"] is params["peephole"]
    chosen = quantize_params(params, Quantization("int8", targets=("peephole",)))
    assert chosen["peephole"].values.dtype == jnp.int8 and chosen["input_kernel"] is params["input_kernel"]


def test_a_quantization_says_what_is_wrong_and_reads_back_what_it_wrote():
    spec = Quantization("fp8", activations="int8", scales="learned", targets=("kernel",))
    assert Quantization.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match=r"weights must be one of \('int8', 'fp8'\), got 'int4'"):
        Quantization("int4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activations must be one of"):
        Quantization(activations="int16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scales must be one of \\('absmax', 'learned'\\), got 'minmax'"):
        Quantization(scales="minmax")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="targets must be a tuple of parameter names"):
        Quantization(targets="kernel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown quantization settings \['bits'\]"):
        Quantization.from_dict({"bits": 8})
