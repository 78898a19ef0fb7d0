"""Dynamics: Jacobians against finite differences of a numpy LSTM, the Lyapunov exponent against log ρ(W),
fixed points against their closed forms, PCA on a known plane, clear errors, and the figures.

Cheap by design: parameters are made in numpy (no initialiser compiles), and each compiled program serves
several cases (a cell is a static argument, so new parameters of the same shapes reuse the program).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import recurrax
from numpy_reference import lstm_step
from recurrax.interpret import (
    fixed_points,
    jacobian_singular_values,
    lyapunov_exponent,
    pca_trajectories,
    plot_jacobian_spectrum,
    plot_pca_trajectories,
    recurrent_jacobians,
    state_trajectory,
)

RNG = np.random.default_rng(0)


def _numpy_params(cell, in_features, scale=0.5, rng=RNG):
    shapes = jax.eval_shape(lambda: cell.init(jax.random.key(0), in_features))
    return {name: (scale * rng.standard_normal(s.shape)).astype(np.float32) for name, s in shapes.items()}


def _rnn_params(kernel, bias, in_features=1):
    H = len(bias)
    return {
        "input_kernel": np.zeros((in_features, H), np.float32) + 0.3,
        "recurrent_kernel": np.asarray(kernel, np.float32),
        "bias": np.asarray(bias, np.float32),
    }


def test_lstm_jacobians_and_states_equal_a_numpy_lstm_and_its_finite_differences():
    B, T, D, H = 2, 4, 2, 3
    cell = recurrax.lstm(H)
    params = _numpy_params(cell, D)
    xs = RNG.standard_normal((B, T, D)).astype(np.float32)
    lengths = np.array([T, 2])
    jacobians = recurrent_jacobians(cell, params, xs, lengths=lengths)
    states = state_trajectory(cell, params, xs, lengths=lengths)
    assert jacobians.shape == (B, T, 2 * H, 2 * H) and states.shape == (B, T, 2 * H)

    p64 = {k: v.astype(np.float64) for k, v in params.items()}

    def step(state, x):  # the state is [h, c], as the module docstring says
        (h, c), _ = lstm_step(p64, (state[:H], state[H:]), x)
        return np.concatenate([h, c])

    eps = 1e-6
    for b in range(B):
        state = np.zeros(2 * H)
        for t in range(lengths[b]):
            x = xs[b, t].astype(np.float64)
            expected = np.stack(
                [(step(state + eps * e, x) - step(state - eps * e, x)) / (2 * eps) for e in np.eye(2 * H)], -1
            )
            np.testing.assert_allclose(jacobians[b, t], expected, atol=2e-5)
            state = step(state, x)
            np.testing.assert_allclose(states[b, t], state, atol=2e-6)
        # Past the length: zero Jacobians (the engine's padding rule), the state frozen.
        assert not np.any(np.asarray(jacobians[b, lengths[b] :]))
        np.testing.assert_array_equal(
            states[b, lengths[b] :], np.broadcast_to(states[b, lengths[b] - 1], states[b, lengths[b] :].shape)
        )
    np.testing.assert_allclose(
        jacobian_singular_values(jacobians),
        np.linalg.svd(np.asarray(jacobians), compute_uv=False),
        rtol=1e-5,
        atol=1e-6,
    )


def test_lyapunov_exponent_is_log_spectral_radius_on_a_linear_map_and_negative_for_a_contracting_tanh_rnn():
    H, T = 4, 200
    cell = recurrax.simple_rnn(H)
    # A non-normal W (its norm exceeds its spectral radius) with eigenvalues 0.8, 0.5, -0.3, 0.1.
    basis = RNG.standard_normal((H, H))
    kernel = basis @ np.diag([0.8, 0.5, -0.3, 0.1]) @ np.linalg.inv(basis)
    assert np.linalg.norm(kernel, 2) > 1
    # Zero inputs and bias keep h = 0, where tanh' = 1: the step is exactly h ↦ h W.
    zeros = np.zeros((2, T, 1), np.float32)
    linear = lyapunov_exponent(cell, _rnn_params(kernel, np.zeros(H)), zeros, key=jax.random.key(1))
    np.testing.assert_allclose(linear, np.log(0.8), atol=0.02)
    # Driven by inputs, with an orthogonal kernel of spectral radius 0.9: negative (same program).
    orthogonal = 0.9 * np.linalg.qr(RNG.standard_normal((H, H)))[0]
    xs = RNG.standard_normal((2, T, 1)).astype(np.float32)
    lengths = np.array([T, 50])
    driven = lyapunov_exponent(cell, _rnn_params(orthogonal, RNG.standard_normal(H)), xs, lengths=lengths)
    assert driven.shape == (2,) and np.all(np.asarray(driven) < np.log(0.9))


def test_fixed_points_of_a_2d_linear_rnn_are_its_closed_form_with_its_stability():
    # A ReLU RNN whose states stay positive is linear there: h' = h W + b, so h* = b (I - W)^-1.
    cell = recurrax.simple_rnn(2, activation="relu")
    starts = np.array([[3.0, 1.0], [1.0, 4.0], [4.5, 0.5]], np.float32)  # where both units stay active
    cases = [([[0.5, 0.4], [-0.2, 0.3]], [1.0, 0.5], True), ([[0.5, 0.2], [0.1, 1.5]], [2.0, -1.0], False)]
    for kernel, bias, stable in cases:
        kernel, bias = np.array(kernel), np.array(bias)
        expected = bias @ np.linalg.inv(np.eye(2) - kernel)
        assert np.all(expected > 0)
        found = fixed_points(cell, _rnn_params(kernel, bias), starts, learning_rate=0.05)
        np.testing.assert_allclose(found.points, np.broadcast_to(expected, (3, 2)), atol=1e-5)
        np.testing.assert_allclose(found.jacobians, np.broadcast_to(kernel.T, (3, 2, 2)), atol=1e-6)
        eig = np.sort(np.abs(np.linalg.eigvals(kernel)))[::-1]
        np.testing.assert_allclose(np.abs(found.eigenvalues), np.broadcast_to(eig, (3, 2)), rtol=1e-5)
        assert found.stable.tolist() == [stable] * 3
        assert len(found.unique().points) == 1


def test_fixed_points_of_tanh_2h_are_zero_unstable_and_plus_minus_0_9575_stable():
    cell = recurrax.simple_rnn(1)
    params = _rnn_params([[2.0]], [0.0])
    starts = np.array([[-2.0], [-0.3], [0.1], [0.5], [1.5]])  # |h| < 0.44 descends q to 0, beyond to ±0.9575
    found = fixed_points(cell, params, starts).unique(max_speed=1e-10)
    root = 0.957504024  # tanh(2h) = h
    order = np.argsort(found.points[:, 0])
    np.testing.assert_allclose(found.points[order, 0], [-root, 0.0, root], atol=1e-5)
    np.testing.assert_allclose(found.eigenvalues[order, 0].real, [2 * (1 - root**2), 2.0, 2 * (1 - root**2)], atol=1e-4)
    assert found.stable[order].tolist() == [True, False, True]


def test_pca_recovers_a_plane_and_ignores_padding():
    B, T, S = 3, 40, 5
    latent = np.cumsum(RNG.standard_normal((B, T, 2)), axis=1)
    plane = np.linalg.qr(RNG.standard_normal((S, 2)))[0].T  # [2, S], orthonormal rows
    states = latent @ plane + RNG.standard_normal(S)
    lengths = np.array([T, 25, 10])
    padded = states.copy()
    padded[1, 25:] = padded[2, 10:] = 1e6  # what lies past lengths must not move the components
    pca = pca_trajectories(padded, 2, lengths=lengths)
    np.testing.assert_allclose(pca.explained_variance_ratio.sum(), 1.0, atol=1e-9)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(2), atol=1e-9)
    np.testing.assert_allclose(np.abs(np.linalg.det(pca.components @ plane.T)), 1.0, atol=1e-9)  # the same plane
    reconstructed = pca.projections[0] @ pca.components + pca.mean
    np.testing.assert_allclose(reconstructed, states[0], atol=1e-8)
    np.testing.assert_allclose(pca.project(states[0]), pca.projections[0], atol=1e-9)
    assert pca.explained_variance_ratio[0] >= pca.explained_variance_ratio[1]


def test_bad_inputs_are_clear_errors():
    cell = recurrax.simple_rnn(2)
    params = _rnn_params(np.eye(2), np.zeros(2))
    xs = np.zeros((1, 3, 1), np.float32)
    with pytest.raises(TypeError, match="cell must be a recurrax Cell"):
        recurrent_jacobians(lambda c, x: (c, x), params, xs)

    class Layer:  # what a recurrax.nn layer offers, without building one
        def __init__(self):
            self.cell = cell

        def pure_params(self):
            return params

    layer = Layer()
    with pytest.raises(TypeError, match=r"layer.cell and layer.pure_params\(\)"):
        lyapunov_exponent(layer, params, xs)
    with pytest.raises(TypeError, match="base_cell"):
        state_trajectory(recurrax.zoneout(cell, 0.1), params, xs)
    with pytest.raises(ValueError, match="xs must have shape"):
        recurrent_jacobians(cell, params, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="params"):
        recurrent_jacobians(cell, params, np.zeros((1, 3, 4), np.float32))
    with pytest.raises(ValueError, match="tangent must have shape"):
        lyapunov_exponent(cell, params, xs, tangent=np.ones(3))
    with pytest.raises(ValueError, match=r"initial_states must have shape \[N, S\] with S = 2"):
        fixed_points(cell, params, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="inputs must be one constant input"):
        fixed_points(cell, params, 2, inputs=np.zeros(3))
    with pytest.raises(ValueError, match="n_components"):
        pca_trajectories(np.zeros((2, 5, 3)), 4)
    with pytest.raises(ValueError, match=r"jacobians must have shape \[..., S, S\]"):
        jacobian_singular_values(np.zeros((2, 3)))


def test_the_figures(tmp_path):
    import matplotlib.figure

    sigma = np.exp(RNG.normal(-0.5, 0.5, (4, 10, 3)))
    sigma[1, 6:] = 0  # the zero Jacobians past a length are left out
    spectrum = plot_jacobian_spectrum({"a": sigma, "b": 2 * sigma}, tmp_path / "spectrum.png", title="t")
    assert isinstance(spectrum, matplotlib.figure.Figure)
    assert (tmp_path / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trajectories = plot_pca_trajectories(
        RNG.standard_normal((3, 10, 2)), fixed_points=np.zeros((2, 2)), stable=np.array([True, False])
    )
    assert isinstance(trajectories, matplotlib.figure.Figure)
    with pytest.raises(ValueError, match="png"):
        plot_pca_trajectories(np.zeros((3, 10, 2)), tmp_path / "x.jpg")


def test_the_docs_quote_the_recorded_dynamics_benchmark():
    # docs/interpretability.md quotes benchmarks/results/dynamics.json (python -m benchmarks.dynamics).
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    record = json.loads((root / "benchmarks" / "results" / "dynamics.json").read_text())
    page = " ".join((root / "docs" / "interpretability.md").read_text().split())

    def fmt(value):
        return f"{value:.3f}".replace("-", "−")

    for name, result in record["models"].items():
        init, trained = result["init"], result["trained"]
        row = [
            f"{result['test_mse']:.4f}",
            f"{fmt(init['median_abs_log_sigma'])} → {fmt(trained['median_abs_log_sigma'])}",
            f"{100 * init['fraction_sigma_in_0.5_2']:.1f}% → {100 * trained['fraction_sigma_in_0.5_2']:.1f}%",
            f"{fmt(init['lyapunov_mean'])} → {fmt(trained['lyapunov_mean'])}",
            f"{-1 / trained['lyapunov_mean']:.0f} steps",
        ]
        for cell in row:
            assert cell in page, f"docs/interpretability.md should quote {cell!r} for {name} (rerun the benchmark?)"
