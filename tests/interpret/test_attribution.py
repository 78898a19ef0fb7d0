"""explain(): known answers on additive models, integrated gradients' completeness on a GRU, padding, bad input."""

from __future__ import annotations

import importlib.util

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recurrax.interpret import explain, model_output
from recurrax.models import SequenceRegressor

B, T, D = 3, 6, 2
RNG = np.random.default_rng(0)
W = RNG.standard_normal((T, D)).astype(np.float32)
XS = RNG.standard_normal((B, T, D)).astype(np.float32)
LENGTHS = np.array([6, 4, 2])


def additive(xs, lengths=None):
    """``f(x) = Σ_{t < length, d} W[t, d] x[t, d]``: every method's answer is ``W ⊙ (x − x̄)``, exactly."""
    valid = jnp.ones(xs.shape[:2]) if lengths is None else jnp.arange(xs.shape[1]) < lengths[:, None]
    return jnp.sum(jnp.where(valid[..., None], xs * W, 0.0), axis=(1, 2))[:, None]


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients", "occlusion", "shap"])
def test_an_additive_model_gets_its_own_terms(method):
    if method == "shap" and importlib.util.find_spec("shap") is None:
        pytest.skip("shap is an optional extra (recurrax[interpret])")
    baseline = np.full((T, D), 0.5, np.float32)
    got = explain(additive, XS, lengths=LENGTHS, method=method, baseline=baseline, num_steps=4)
    if method == "occlusion":  # windows of 3 steps: each step gets the mean drop of the windows covering it
        wide = explain(additive, XS, lengths=LENGTHS, method=method, baseline=baseline, window=3)
        terms = W * (XS - baseline) * (np.arange(T) < LENGTHS[:, None])[..., None]
        for t in range(T):
            windows = [s for s in range(T - 2) if s <= t < s + 3]
            mean_drop = np.mean([terms[:, s : s + 3].sum(1) / 3 for s in windows], axis=0)
            expected_t = mean_drop * (t < LENGTHS)[:, None]  # zero past each example's length
            np.testing.assert_allclose(wide[:, t], expected_t, rtol=1e-5, atol=1e-6)
    expected = W * (XS - (0 if method == "gradient_x_input" else baseline))
    expected = expected * (np.arange(T) < LENGTHS[:, None])[..., None]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_integrated_gradients_are_complete_on_a_gru():
    # A smooth model: the trapezoidal rule converges as 1/num_steps² (with ReLU kinks, only as 1/num_steps).
    model = SequenceRegressor(D, cell="gru", hidden_size=8, rngs=nnx.Rngs(0))
    got = explain(model, XS, lengths=LENGTHS, method="integrated_gradients", num_steps=64)
    both = model_output(model, np.concatenate([XS, np.zeros_like(XS)]), lengths=np.tile(LENGTHS, 2))
    np.testing.assert_allclose(got.sum((1, 2)), both[:B] - both[B:], rtol=1e-3)
    assert np.all(got[2, LENGTHS[2] :] == 0) and np.all(np.abs(got[0]) > 0)


def test_per_step_outputs_explain_the_chosen_step_and_class():
    def per_step(xs, lengths=None):  # [B, T, 2]: class 1 at step t is the running sum of the first feature
        running = jnp.cumsum(xs[..., 0], axis=1)
        return jnp.stack([-running, running], axis=-1)

    got = explain(per_step, XS, method="gradient_x_input", step=2, target=1)
    expected = np.zeros_like(XS)
    expected[:, :3, 0] = XS[:, :3, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"method": "lime"}, "method must be one of"),
        ({"method": "occlusion", "window": T + 1}, f"window must be at most the sequence length T={T}"),
        ({"baseline": np.zeros((T + 1, D))}, r"baseline must have shape \(6, 2\) or \(3, 6, 2\)"),
        ({"target": 1}, r"target must be an int \(or \[B\] ints\) in \[0, 1\)"),
        ({"num_steps": 0}, "num_steps must be a positive int"),
        ({"lengths": np.array([6, 7, 1])}, "lengths"),
    ],
)
def test_bad_arguments_are_refused_by_name(options, match):
    with pytest.raises(ValueError, match=match):
        explain(additive, XS, **options)


def test_shap_without_its_package_says_how_to_get_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_shap(name, *args, **kwargs):
        if name == "shap":
            raise ImportError("no shap here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_shap)
    with pytest.raises(ImportError, match=r'pip install "recurrax\[interpret\]"'):
        explain(additive, XS, method="shap")
