"""build_optimizer and gradient_diagnostics, checked against independent NumPy computations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from recurrax.train import build_optimizer, gradient_diagnostics

PARAMS = {"a": jnp.array([1.0, -2.0, 0.5]), "b": {"w": jnp.array([[0.3, -0.1], [0.2, 0.4]])}}
GRADS = {"a": jnp.array([3.0, -4.0, 12.0]), "b": {"w": jnp.array([[0.5, -0.5], [1.0, 2.0]])}}


def np_leaves(tree):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


def np_norm(tree):
    return float(np.sqrt(sum(np.sum(x**2) for x in np_leaves(tree))))


def one_update(tx, grads=GRADS, params=PARAMS):
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    new_params = optax.apply_updates(params, updates)
    return updates, state, new_params


@pytest.mark.parametrize("max_norm", [1.0, 100.0])
def test_clip_by_global_norm_bounds_update_and_diagnostics_match_numpy(max_norm):
    tx = build_optimizer("sgd", 1.0, clip_norm=max_norm)  # lr 1: update = -clipped gradient
    updates, state, new_params = one_update(tx)
    raw = np_norm(GRADS)
    expected_clipped = min(raw, max_norm)
    assert np_norm(updates) <= max_norm * (1 + 1e-6)
    np.testing.assert_allclose(np_norm(updates), expected_clipped, rtol=1e-6)
    scale = 1.0 if raw < max_norm else max_norm / raw
    for u, g in zip(np_leaves(updates), np_leaves(GRADS), strict=True):
        np.testing.assert_allclose(u, -g * scale, rtol=1e-6)

    d = gradient_diagnostics(GRADS, updates, new_params, state)
    np.testing.assert_allclose(float(d["grad_norm"]), raw, rtol=1e-6)
    np.testing.assert_allclose(float(d["clipped_grad_norm"]), expected_clipped, rtol=1e-6)
    np.testing.assert_allclose(float(d["update_norm"]), expected_clipped, rtol=1e-6)
    np.testing.assert_allclose(float(d["param_norm"]), np_norm(new_params), rtol=1e-6)
    assert float(d["clipped"]) == (1.0 if raw > max_norm else 0.0)
    assert float(d["nonfinite"]) == 0.0


def test_clip_value_and_adaptive_clip_match_numpy():
    updates, state, _ = one_update(build_optimizer("sgd", 1.0, clip_value=0.75))
    for u, g in zip(np_leaves(updates), np_leaves(GRADS), strict=True):
        np.testing.assert_allclose(u, -np.clip(g, -0.75, 0.75), rtol=1e-6)
    d = gradient_diagnostics(GRADS, updates, PARAMS, state)
    np.testing.assert_allclose(
        float(d["clipped_grad_norm"]), np_norm(jax.tree.map(lambda g: np.clip(g, -0.75, 0.75), GRADS)), rtol=1e-6
    )
    assert float(d["clipped"]) == 1.0

    # Adaptive clipping (Brock et al.): unit-wise ‖g‖ <= c · max(‖p‖, eps); rows for 2-D, whole vector for 1-D.
    c = 0.1
    updates, _, _ = one_update(build_optimizer("sgd", 1.0, adaptive_clip=c))
    g_a, p_a = np.asarray(GRADS["a"], np.float64), np.asarray(PARAMS["a"], np.float64)
    want_a = g_a * min(1.0, c * max(np.linalg.norm(p_a), 1e-3) / np.linalg.norm(g_a))
    np.testing.assert_allclose(np.asarray(updates["a"]), -want_a, rtol=1e-5)
    assert np.linalg.norm(np.asarray(updates["a"])) <= c * np.linalg.norm(p_a) * (1 + 1e-5)


def test_accumulation_over_k_micro_batches_equals_one_big_batch_step():
    # Loss: mean over examples of 0.5 ||W x - y||^2; SGD with momentum so the state matters too.
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(12, 3)), jnp.float32)
    ys = jnp.asarray(rng.normal(size=(12, 2)), jnp.float32)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}

    def loss(p, x, y):
        return 0.5 * jnp.mean(jnp.sum((x @ p["w"] - y) ** 2, axis=-1))

    k = 3
    acc = build_optimizer(optax.sgd, 0.1, accumulate_steps=k, momentum=0.9)
    big = build_optimizer(optax.sgd, 0.1, momentum=0.9)
    p_acc, s_acc, p_big, s_big = params, acc.init(params), params, big.init(params)
    grad, acc_update = jax.jit(jax.grad(loss)), jax.jit(acc.update)
    for _ in range(2):  # two full accumulation windows
        for micro in range(k):
            sl = slice(4 * micro, 4 * micro + 4)
            g = grad(p_acc, xs[sl], ys[sl])
            u, s_acc = acc_update(g, s_acc, p_acc)
            if micro < k - 1:
                assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(u))
            p_acc = optax.apply_updates(p_acc, u)
        u, s_big = big.update(grad(p_big, xs, ys), s_big, p_big)
        p_big = optax.apply_updates(p_big, u)
        np.testing.assert_allclose(np.asarray(p_acc["w"]), np.asarray(p_big["w"]), rtol=1e-6, atol=1e-7)
    # The clip snapshots report the accumulated gradient's norm after the window.
    d = gradient_diagnostics(g, u, p_acc, s_acc)
    assert float(d["clipped_grad_norm"]) > 0


def test_nonfinite_guard_skips_and_counts():
    tx = build_optimizer("sgd", 1.0, skip_nonfinite=True, clip_norm=1.0)
    state = tx.init(PARAMS)
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan) if g.ndim == 1 else g, GRADS)
    updates, state = tx.update(bad, state, PARAMS)
    assert all(float(jnp.max(jnp.abs(u))) == 0.0 for u in jax.tree.leaves(updates))
    d = gradient_diagnostics(bad, updates, PARAMS, state)
    assert float(d["nonfinite"]) == 1.0 and int(d["nonfinite_count"]) == 1
    updates, state = tx.update(GRADS, state, PARAMS)
    assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-6)
    d = gradient_diagnostics(GRADS, updates, PARAMS, state)
    assert float(d["nonfinite"]) == 0.0 and int(d["nonfinite_count"]) == 1
    # With accumulation the bad micro-batch is dropped, not averaged in.
    tx = build_optimizer("sgd", 1.0, skip_nonfinite=True, accumulate_steps=2)
    state, update = tx.init(PARAMS), jax.jit(tx.update)
    for g in (GRADS, bad, GRADS):
        updates, state = update(g, state, PARAMS)
    for u, g in zip(np_leaves(updates), np_leaves(GRADS), strict=True):
        np.testing.assert_allclose(u, -g, rtol=1e-6)
    assert int(optax.tree.get(state, "total_notfinite")) == 1


def test_schedules_factories_and_ready_transformations():
    sched = optax.linear_schedule(1.0, 0.0, 2)
    tx = build_optimizer("sgd", sched)
    state = tx.init(PARAMS)
    u1, state = tx.update(GRADS, state, PARAMS)
    u2, state = tx.update(GRADS, state, PARAMS)
    np.testing.assert_allclose(np.asarray(u1["a"]), -np.asarray(GRADS["a"]))
    np.testing.assert_allclose(np.asarray(u2["a"]), -0.5 * np.asarray(GRADS["a"]))
    updates, _, _ = one_update(build_optimizer(optax.sgd(0.5), None))
    np.testing.assert_allclose(np.asarray(updates["a"]), -0.5 * np.asarray(GRADS["a"]))
    assert isinstance(build_optimizer("adamw", 1e-3, weight_decay=1e-2), optax.GradientTransformation)


def test_diagnostics_per_layer_and_without_builder():
    updates, state, new = one_update(optax.sgd(1.0))
    d = gradient_diagnostics(GRADS, updates, new, state, layers=["a", "b"])
    assert "clipped_grad_norm" not in d and "nonfinite_count" not in d
    np.testing.assert_allclose(float(d["grad_norm/a"]), np.linalg.norm(np.asarray(GRADS["a"])), rtol=1e-6)
    np.testing.assert_allclose(float(d["grad_norm/b"]), np.linalg.norm(np.asarray(GRADS["b"]["w"])), rtol=1e-6)
    with pytest.raises(ValueError, match="layers has 1 names but grads has 2 leaves"):
        gradient_diagnostics(GRADS, updates, new, state, layers=["a"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "no_such_optimizer"}, "not an optax optimizer"),
        ({"optimizer": "adam", "clip_norm": -1.0}, "clip_norm must be a positive number"),
        ({"optimizer": "adam", "accumulate_steps": 0}, "accumulate_steps must be a positive int"),
        ({"optimizer": optax.sgd(0.1)}, "learning_rate=None"),
        ({"optimizer": "adam", "learning_rate": None}, "learning_rate is required"),
        ({"optimizer": 3}, "optimizer must be an optax optimizer name"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"learning_rate": 0.1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        build_optimizer(kwargs.pop("optimizer"), kwargs.pop("learning_rate"), **kwargs)
