"""Losses, metrics and their masked reduction, against NumPy formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax.train as train
from recurrax.train import (
    Objective,
    accuracy,
    binary_accuracy,
    binary_cross_entropy_with_logits,
    masked_total,
    mse,
    sequence_mask,
    softmax_cross_entropy,
)

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(3, 4, 5)).astype(np.float32)  # [B, T, C]
LABELS = RNG.integers(0, 5, size=(3, 4)).astype(np.int32)
LENGTHS = np.array([4, 1, 2], np.int32)


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_elementwise_values_match_numpy():
    pred, tgt = LOGITS[..., :2], RNG.normal(size=(3, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(mse(jnp.asarray(pred), jnp.asarray(tgt)), ((pred - tgt) ** 2).mean(-1), rtol=1e-6)

    probs = (RNG.random(size=(3, 4, 2)) > 0.5).astype(np.float32)
    want = (np.maximum(pred, 0) - pred * probs + np.log1p(np.exp(-np.abs(pred)))).mean(-1)
    np.testing.assert_allclose(binary_cross_entropy_with_logits(jnp.asarray(pred), jnp.asarray(probs)), want, rtol=1e-5)
    np.testing.assert_allclose(
        binary_accuracy(jnp.asarray(pred), jnp.asarray(probs)), ((pred > 0) == (probs > 0.5)).mean(-1)
    )

    logp = np_log_softmax(LOGITS.astype(np.float64))
    want = -np.take_along_axis(logp, LABELS[..., None], -1)[..., 0]
    np.testing.assert_allclose(softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(LABELS)), want, rtol=1e-5)
    one_hot = np.eye(5, dtype=np.float32)[LABELS]
    np.testing.assert_allclose(softmax_cross_entropy(jnp.asarray(LOGITS), jnp.asarray(one_hot)), want, rtol=1e-5)
    np.testing.assert_array_equal(
        accuracy(jnp.asarray(LOGITS), jnp.asarray(LABELS)), (LOGITS.argmax(-1) == LABELS).astype(np.float32)
    )
    np.testing.assert_array_equal(
        accuracy(jnp.asarray(LOGITS), jnp.asarray(one_hot)), (LOGITS.argmax(-1) == LABELS).astype(np.float32)
    )


def test_masked_total_leaves_out_padded_steps():
    values = RNG.random(size=(3, 4)).astype(np.float32)
    mask = np.arange(4)[None] < LENGTHS[:, None]
    np.testing.assert_array_equal(sequence_mask(jnp.asarray(LENGTHS), 4), mask)
    total, count = masked_total(jnp.asarray(values), jnp.asarray(LENGTHS))
    np.testing.assert_allclose(float(total), values[mask].sum(), rtol=1e-6)
    assert float(count) == mask.sum() == 7
    total, count = masked_total(jnp.asarray(values[:, 0]), jnp.asarray(LENGTHS))  # per-example: no mask
    assert float(count) == 3
    with pytest.raises(ValueError, match=r"per example \[B\] or per step \[B, T\]"):
        masked_total(jnp.zeros((2, 3, 4)))


def test_objective_reports_masked_means_as_totals_and_counts():
    obj = Objective("softmax_cross_entropy", metrics=["accuracy"])
    batch = {"targets": jnp.asarray(LABELS), "lengths": jnp.asarray(LENGTHS)}
    stats = obj.stats(jnp.asarray(LOGITS), batch)
    mask = np.arange(4)[None] < LENGTHS[:, None]
    logp = np_log_softmax(LOGITS.astype(np.float64))
    ce = -np.take_along_axis(logp, LABELS[..., None], -1)[..., 0]
    np.testing.assert_allclose(float(stats["loss"][0]) / float(stats["loss"][1]), ce[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(stats["accuracy"][0]), (LOGITS.argmax(-1) == LABELS)[mask].sum())

    def mae(p, t):
        return jnp.mean(jnp.abs(p - t), axis=-1)

    obj = Objective(mae, metrics={"mae2": mae})
    stats = obj.stats(jnp.ones((2, 3)), {"targets": jnp.zeros((2, 3))})
    assert float(stats["loss"][0]) == float(stats["mae2"][0]) == 2.0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Objective("hinge"), "loss must be a callable or one of"),
        (lambda: Objective("mse", metrics=["f1"]), "metric 'f1' must be a callable or one of"),
        (lambda: Objective("mse", metrics="accuracy"), "got the string"),
        (lambda: Objective("mse", metrics=["loss"]), "may not be named 'loss'"),
        (lambda: mse(jnp.zeros((2, 1)), jnp.zeros((2,))), r"predictions have shape \(2, 1\) but targets"),
        (lambda: softmax_cross_entropy(jnp.zeros((2, 3)), jnp.zeros((3,), jnp.int32)), "integer labels must"),
    ],
)
def test_bad_losses_and_shapes(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_labels_outside_the_classes_are_refused_eagerly_and_nan_under_jit():
    logits = jnp.zeros((3, 4))
    for bad in (4, -2, 9):
        labels = jnp.array([0, bad, 1])
        with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 4\) or -1"):
            train.softmax_cross_entropy(logits, labels)
        with pytest.raises(ValueError, match=r"labels must be class indices"):
            train.accuracy(logits, labels)
        values = jax.jit(train.softmax_cross_entropy)(logits, labels)
        assert np.isnan(values[1]) and np.isfinite(values[0]) and np.isfinite(values[2])
    with pytest.raises(ValueError, match=r"targets must be probabilities in \[0, 1\]"):
        train.binary_cross_entropy_with_logits(jnp.zeros((2, 1)), jnp.array([[0.0], [2.0]]))
    assert np.isnan(jax.jit(train.binary_cross_entropy_with_logits)(jnp.zeros((2, 1)), jnp.array([[0.0], [2.0]]))[1])


def test_label_minus_one_is_ignored_like_torch_ignore_index():
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    labels = np.array([[0, 2, -1, 1, -1], [1, -1, -1, 0, 2]])
    objective = train.Objective("softmax_cross_entropy", metrics=["accuracy"])
    stats = jax.jit(objective.stats)(jnp.asarray(logits), {"targets": jnp.asarray(labels)})
    total, count = stats["loss"]
    want = torch.nn.functional.cross_entropy(
        torch.tensor(logits).reshape(-1, 3), torch.tensor(labels).reshape(-1), ignore_index=-1
    )
    np.testing.assert_allclose(total / count, want.item(), rtol=1e-6)
    assert float(count) == 6 and float(stats["accuracy"][1]) == 6
    # lengths and ignored labels combine: the first example's 4th step (label 1) is padding.
    total, count = objective.stats(jnp.asarray(logits), {"targets": jnp.asarray(labels), "lengths": jnp.array([3, 5])})[
        "loss"
    ]
    assert float(count) == 2 + 3


@pytest.mark.parametrize(
    ("outputs", "loss", "metrics", "targets", "message"),
    [
        (1, "softmax_cross_entropy", ["accuracy"], np.array([0, 1, 1, 0]), "at least 2 classes"),
        (3, "softmax_cross_entropy", [], np.array([0, 1, 3, 0]), r"class indices in \[0, 3\)"),
        (3, "softmax_cross_entropy", [], np.zeros((4, 2), np.int32), "labels need the shape"),
        (1, "binary_cross_entropy", [], np.array([[0.0], [1.0], [2.0], [0.0]], np.float32), r"lie in \[0, 1\]"),
        (2, "mse", [], np.zeros((4, 1), np.float32), "targets have shape"),
    ],
)
def test_fit_checks_the_model_against_the_loss_before_training(outputs, loss, metrics, targets, message):
    import optax
    from flax import nnx

    model = nnx.Linear(2, outputs, rngs=nnx.Rngs(0))
    before = np.asarray(model.kernel[...]).copy()
    data = {"inputs": np.ones((4, 2), np.float32), "targets": targets}
    with pytest.raises(ValueError, match=message):
        train.fit(model, optax.sgd(0.1), data, loss=loss, metrics=metrics, batch_size=4, progress=False)
    np.testing.assert_array_equal(model.kernel[...], before)  # nothing trained
