"""Static activation scales: calibrated on a batch to exactly the hand-computed absmax (or percentile), a
statically quantized model equal to the quantize-dequantize reference written out, and kept by a checkpoint."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax
from recurrax.models import SequenceClassifier
from recurrax.quantize import (
    Quantization,
    StaticQuantizedLinear,
    dequantize,
    quantization_aware_model,
    quantization_of,
    quantize,
    restore_quantized,
    save_quantized,
    static_scale,
)
from recurrax.quantize._numerics import quantize as codes

LENGTHS = jnp.array([5, 2, 4])
# The largest |x| sits on a padded step (example 1, step 3): calibration must leave it out.
XS = jax.random.normal(jax.random.key(1), (3, 5, 2)).at[1, 3, 0].set(-4.0)
VALID = np.arange(5)[None, :] < np.asarray(LENGTHS)[:, None]  # [B, T]: the steps within each length
W8A8 = Quantization("int8", activations="int8")


def _model(seed: int = 0) -> SequenceClassifier:
    model = SequenceClassifier(2, 3, cell="gru", hidden_size=8, dense_size=4, rngs=nnx.Rngs(seed))
    model.eval()
    return model


@pytest.fixture(scope="module")
def models():
    """A float GRU classifier and its int8 copy with scales calibrated on (XS, LENGTHS)."""
    model = _model()
    return model, quantize(model, W8A8, calibration_data={"inputs": XS, "lengths": LENGTHS})


def _fq(x, scale):
    """``x`` through its int8 codes at ``scale`` and back, written out."""
    return dequantize(codes(x, scale, "int8"), scale, x.dtype)


def _deq(kernel):
    return dequantize(kernel["values"], kernel["scale"])


def test_the_calibrated_scales_are_the_hand_computed_ones(models):
    """Input: max |x| over the valid steps / 127 (the padded steps' random values left out); state: max |h|
    over the states the steps read (h_0 = 0 … h_{L-1}, not the last); each Dense: max |its input| / 127."""
    model, small = models
    ys = np.asarray(model.backbone(XS, lengths=LENGTHS))  # the float GRU's h_1 … h_T, zero past each length
    read = np.concatenate([ys[b, : int(n) - 1] for b, n in enumerate(LENGTHS)])  # h_1 … h_{L-1} of each example
    z = ys[np.arange(3), np.asarray(LENGTHS) - 1]  # the "last" readout: the hidden Dense's input
    dense = np.maximum(np.asarray(model.hidden(z)), 0)  # relu: the output Dense's input
    want = {
        "input": np.abs(np.asarray(XS)[VALID]).max() / np.float32(127),
        "state": np.abs(read).max() / np.float32(127),
        "hidden": np.abs(z).max() / np.float32(127),
        "output": np.abs(dense).max() / np.float32(127),
    }
    assert np.abs(np.asarray(XS)).max() == 4.0 > np.abs(np.asarray(XS)[VALID]).max()  # padding would change it
    got = small.backbone.params["activation_scale"]
    assert got["input"][...].shape == () and got["input"][...].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got["input"][...]), want["input"])
    # h comes from the step loop here and from the layer's own call above: equal to float32 rounding.
    np.testing.assert_allclose(np.asarray(got["state"][...]), want["state"], rtol=1e-6)
    assert isinstance(small.hidden, StaticQuantizedLinear) and isinstance(small.output, StaticQuantizedLinear)
    np.testing.assert_allclose(np.asarray(small.hidden.input_scale[...]), want["hidden"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(small.output.input_scale[...]), want["output"], rtol=1e-6)
    assert quantization_of(small) == Quantization("int8", activations="int8", activation_scales="static")


def test_static_scale_is_the_percentile_of_the_magnitudes():
    x = np.asarray(jax.random.normal(jax.random.key(2), (7, 9)), np.float32)
    np.testing.assert_array_equal(np.asarray(static_scale(x, "int8")), np.abs(x).max() / np.float32(127))
    np.testing.assert_allclose(np.asarray(static_scale(x, "int8", 90.0)), np.percentile(np.abs(x), 90) / 127, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(static_scale(x, "fp8")), np.abs(x).max() / 448, rtol=1e-7)
    assert float(static_scale(np.zeros(3), "int8")) == 1.0
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\], got 0"):
        static_scale(x, "int8", 0)


def test_a_statically_quantized_model_is_the_quantize_dequantize_reference_exactly(models):
    """The reference, written out: the GRU's step on dequantized kernels, its input and the state it reads
    through int8 codes at the two calibrated scales, through the engine with the same lengths; then the
    readout and both Dense layers on quantize-dequantized inputs and kernels."""
    _, small = models
    p = nnx.to_pure_dict(nnx.state(small.backbone, nnx.Param))["params"]
    s_x, s_h = p["activation_scale"]["input"], p["activation_scale"]["state"]
    weights = {**p, "input_kernel": _deq(p["input_kernel"]), "recurrent_kernel": _deq(p["recurrent_kernel"])}
    del weights["activation_scale"]
    gru = recurrax.gru(8)
    heads = nnx.to_pure_dict(nnx.state(small, nnx.Param))

    def step(h, x):
        return gru.step_reading(weights, h, _fq(x, s_x), _fq(h, s_h))

    @jax.jit
    def reference(xs, lengths):
        ys, _ = recurrax.scan(step, None, xs, initial_carry=gru.initial_carry((3,)), lengths=lengths)
        z = ys[jnp.arange(3), lengths - 1]
        hidden, output = heads["hidden"], heads["output"]
        z = jax.nn.relu(_fq(z, hidden["input_scale"]) @ _deq(hidden["kernel"]) + hidden["bias"])
        return _fq(z, output["input_scale"]) @ _deq(output["kernel"]) + output["bias"]

    got = nnx.jit(lambda m, xs, lengths: m(xs, lengths=lengths))(small, XS, LENGTHS)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(reference(XS, LENGTHS)))
    # Static, not per row: an input beyond the calibrated range clips at 127 · s_x.
    cell = small.backbone.cell
    big = cell._activation(p, "input", jnp.full((1, 2), 1e3))
    np.testing.assert_array_equal(np.asarray(big), np.full((1, 2), np.asarray(dequantize(jnp.int8(127), s_x))))


def test_static_scales_survive_a_checkpoint_round_trip(models, tmp_path):
    _, small = models
    save_quantized(tmp_path / "q", small)
    restored = restore_quantized(tmp_path / "q", _model(seed=4))  # other weights: only the structure counts
    assert quantization_of(restored) == quantization_of(small)
    saved, loaded = nnx.to_pure_dict(nnx.state(small, nnx.Param)), nnx.to_pure_dict(nnx.state(restored, nnx.Param))
    assert float(loaded["backbone"]["params"]["activation_scale"]["state"]) != 1.0  # not the placeholder
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(loaded), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))


def test_bad_static_settings_are_refused_by_name(models):
    model, _ = models
    static = Quantization("int8", activations="int8", activation_scales="static")
    with pytest.raises(ValueError, match="activation_scales='static' needs activations="):
        Quantization("int8", activation_scales="static")
    with pytest.raises(ValueError, match=r"activation_scales must be one of \('dynamic', 'static'\), got 'fixed'"):
        Quantization("int8", activations="int8", activation_scales="fixed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs calibration_data"):
        quantize(model, static)
    with pytest.raises(ValueError, match=r"weight-only \(activations=None\)"):
        quantize(model, "int8", calibration_data=XS)
    with pytest.raises(TypeError, match=r"calibration_data must be an array of inputs.*got str"):
        quantize(model, W8A8, calibration_data="batches")
    with pytest.raises(ValueError, match="calibrated after training"):
        quantization_aware_model(_model(), static)
