"""IndRNN: the paper's recurrence against a plain Python loop, its weight constraint, and the layer, regularised."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax
from numpy_reference import scan_loop

B, T, D, H = 3, 6, 3, 5
LENGTHS = np.array([6, 4, 1])
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[1, 1] = True


def indrnn_step(p, h, x, *, activation, low=None, high=None):
    """Li et al. (2018), eq. 2: h_t = σ(W x_t + u ⊙ h_{t-1} + b), with |u| clipped to [low, high]."""
    u = p["recurrent_kernel"]
    if low is not None or high is not None:
        u = np.sign(u) * np.clip(np.abs(u), low, high)
    z = x @ p["input_kernel"] + u * h + p["bias"]
    h_new = np.maximum(z, 0.0) if activation == "relu" else np.tanh(z)
    return h_new, h_new


def _params(cell, seed=0):
    params = cell.init(jax.random.key(seed), D)
    keys = jax.random.split(jax.random.key(seed + 1), 3)
    # Random, non-default values everywhere (zero biases would hide a missing bias), and some |u| outside [0.3, 1.1].
    return {
        "input_kernel": params["input_kernel"],
        "recurrent_kernel": jax.random.uniform(keys[0], (H,), params["recurrent_kernel"].dtype, -1.6, 1.6),
        "bias": jax.random.normal(keys[1], (H,), params["bias"].dtype),
    }


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_matches_a_plain_python_loop(x64, activation, reverse):
    cell = recurrax.indrnn(
        H, activation=activation, recurrent_min_abs=0.3, recurrent_max_abs=1.1, param_dtype=jnp.float64
    )
    params = _params(cell)
    xs = jax.random.normal(jax.random.key(7), (B, T, D), jnp.float64)
    h0 = jax.random.normal(jax.random.key(8), (B, H), jnp.float64)
    ys, h = recurrax.scan(cell, params, xs, initial_carry=h0, lengths=LENGTHS, resets=RESETS, reverse=reverse)
    np_params = jax.tree.map(np.asarray, params)
    ref_ys, ref_h = scan_loop(
        lambda c, x: indrnn_step(np_params, c, x, activation=activation, low=0.3, high=1.1),
        np.asarray(xs),
        np.asarray(h0),
        lengths=LENGTHS,
        resets=RESETS,
        reverse=reverse,
    )
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, ref_h, rtol=1e-12, atol=1e-12)


def test_the_constraint_bounds_the_recurrent_weight_and_its_gradient():
    cell = recurrax.indrnn(H, recurrent_min_abs=0.5, recurrent_max_abs=2 ** (1 / 100))
    u = jnp.array([-3.0, -0.1, 0.0, 0.7, 5.0])
    bounded = cell.recurrent_weight({"recurrent_kernel": u})
    np.testing.assert_allclose(bounded, [-(2 ** (1 / 100)), -0.5, 0.0, 0.7, 2 ** (1 / 100)], rtol=1e-6)
    # Inside the range the weight trains; outside, as for any clip, its gradient is zero.
    grad = jax.grad(lambda u: jnp.sum(cell.recurrent_weight({"recurrent_kernel": u})))(u)
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0, 1.0, 0.0])


def test_default_init_draws_u_in_the_papers_range():
    u = recurrax.indrnn(512, recurrent_max_abs=0.9).init(jax.random.key(0), D)["recurrent_kernel"]
    assert u.shape == (512,) and float(u.min()) >= 0.0 and float(u.max()) <= 0.9 and float(u.std()) > 0.2
    u1 = recurrax.indrnn(512).init(jax.random.key(0), D)["recurrent_kernel"]
    assert float(u1.max()) <= 1.0


def test_the_layer_comes_from_the_registry_with_dropout_and_zoneout():
    layer = recurrax.nn.IndRNN(D, H, rngs=nnx.Rngs(0), recurrent_max_abs=1.0, recurrent_dropout=0.5, zoneout=0.2)
    xs = jax.random.normal(jax.random.key(3), (B, T, D))
    assert isinstance(layer.cell.base_cell, recurrax.IndRNNCell) and layer.cell.base_cell.recurrent_max_abs == 1.0
    train_a, train_b = layer(xs), layer(xs)
    layer.eval()
    evaluation = layer(xs)
    assert not np.allclose(train_a, train_b)  # a fresh mask every call
    # In evaluation, recurrent dropout is off and zoneout is its expectation: h = 0.2 h_prev + 0.8 h_new.
    params = layer.pure_params()
    expected, h = [], np.zeros((B, H), np.float32)
    for t in range(T):
        candidate, _ = indrnn_step(
            jax.tree.map(np.asarray, params), h, np.asarray(xs[:, t]), activation="relu", high=1.0
        )
        h = 0.2 * h + 0.8 * candidate
        expected.append(h)
    np.testing.assert_allclose(evaluation, np.stack(expected, axis=1), rtol=1e-5, atol=1e-6)
    # Its backbone ("indrnn") is checked with every other in tests/models/test_models.py.


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: recurrax.indrnn(H, activation="sigmoid"), "activation must be one of"),
        (lambda: recurrax.indrnn(H, recurrent_max_abs=-1.0), "recurrent_max_abs must be None or a number >= 0"),
        (lambda: recurrax.indrnn(H, recurrent_min_abs=2.0, recurrent_max_abs=1.0), "must not exceed"),
    ],
)
def test_bad_options_are_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
