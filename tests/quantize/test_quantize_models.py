"""Whole NNX models: quantize (PTQ) keeps the call, stores int8 codes (4x smaller kernels), stays close to the
float model, equals the quantization-aware model bit for bit, and survives a checkpoint round trip exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recurrax.models import SequenceClassifier
from recurrax.quantize import (
    Quantization,
    QuantizedArray,
    QuantizedCell,
    QuantizedLinear,
    parameter_bytes,
    quantization_aware_model,
    quantization_of,
    quantize,
    restore_quantized,
    save_quantized,
)

XS = jax.random.normal(jax.random.key(1), (3, 4, 2))
LENGTHS = jnp.array([4, 2, 3])
W8A8 = Quantization("int8", activations="int8")


def _model(seed: int = 0) -> SequenceClassifier:
    model = SequenceClassifier(2, 3, cell="lstm", hidden_size=8, dense_size=4, rngs=nnx.Rngs(seed))
    model.eval()
    return model


@pytest.fixture(scope="module")
def models():
    """A float LSTM classifier and its int8 weight+activation quantization (one build shared by the tests)."""
    model = _model()
    return model, quantize(model, W8A8)


@nnx.jit
def _outputs(*models):
    """Every model's output on XS, in one compiled program."""
    return [model(XS, lengths=LENGTHS) for model in models]


def _kernels(model: nnx.Module) -> list[QuantizedArray]:
    leaves = jax.tree.leaves(
        nnx.to_pure_dict(nnx.state(model)), is_leaf=lambda x: isinstance(x, dict) and "values" in x
    )
    return [QuantizedArray(leaf["values"], leaf["scale"]) for leaf in leaves if isinstance(leaf, dict)]


def test_quantize_stores_int8_kernels_a_quarter_of_their_float_size(models):
    model, small = models
    kernels = _kernels(small)
    assert len(kernels) == 4  # input and recurrent kernels of the LSTM, the two Dense layers
    assert all(k.values.dtype == jnp.int8 for k in kernels)
    codes = sum(int(k.values.size) for k in kernels)
    assert sum(k.nbytes for k in kernels) == codes + sum(int(k.scale.size) * 4 for k in kernels)
    float_bytes, small_bytes = parameter_bytes(model), parameter_bytes(small)
    saved = float_bytes - small_bytes
    assert saved == 3 * codes - sum(int(k.scale.size) * 4 for k in kernels)  # 4 bytes → 1 per weight, plus scales
    assert isinstance(small.output, QuantizedLinear) and isinstance(small.backbone.cell, QuantizedCell)
    assert isinstance(model.output, nnx.Linear) and model.backbone.cell.__class__.__name__ == "LSTMCell"  # untouched
    assert quantization_of(small) == W8A8 and quantization_of(model) is None


def test_the_quantized_model_answers_close_to_the_float_one_and_as_the_quantization_aware_one(models):
    """Called as the float model, close to it; a quantization-aware copy computes exactly what it computes."""
    model, small = models
    qat = quantization_aware_model(nnx.merge(*nnx.split(model)), W8A8)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(nnx.state(qat, nnx.Param)))  # float masters
    want, got, trained = _outputs(model, small, qat)
    assert got.shape == want.shape == (3, 3)
    error = float(jnp.abs(got - want).max())
    assert 0 < error < 0.02 * float(jnp.abs(want).max()) + 1e-3, error
    np.testing.assert_array_equal(np.asarray(trained), np.asarray(got))


def test_a_saved_quantized_model_restores_bit_for_bit(models, tmp_path):
    _, small = models
    path = save_quantized(tmp_path / "q", small, step=6, meta={"from": "test"})
    assert path.name == "6" and (tmp_path / "q" / "quantization.json").is_file()
    restored = restore_quantized(tmp_path / "q", _model(seed=5))  # other weights: only the structure counts
    saved, loaded = nnx.to_pure_dict(nnx.state(small, nnx.Param)), nnx.to_pure_dict(nnx.state(restored, nnx.Param))
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(loaded), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    assert quantization_of(restored) == W8A8 and isinstance(restored.hidden, QuantizedLinear)
    with pytest.raises(ValueError, match="holds no quantized layer"):
        save_quantized(tmp_path / "f", _model())
    with pytest.raises(FileNotFoundError, match="holds no quantized model"):
        restore_quantized(tmp_path / "f", _model())
