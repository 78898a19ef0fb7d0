"""The fit loop: fit/evaluate/predict, dropout RNGs, early stopping, history files, callbacks."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from recurrax import train
from train.train_helpers import B, N, Regressor, classification_data, leaves_equal, regression_data


@dataclasses.dataclass
class SplitLike:  # what recurrax.tasks returns: an object with arrays as attributes
    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray | None = None


def test_fit_evaluate_predict_history_and_diagnostics():
    data, valid = regression_data(lengths=True), regression_data(8, seed=1, lengths=True)
    model = Regressor(nnx.Rngs(0))
    trainer = train.Trainer(model, train.build_optimizer("adam", 0.02, clip_norm=5.0), loss="mse")
    history = trainer.fit(data, epochs=3, batch_size=B, validation_data=SplitLike(**valid), progress=False)

    assert history is trainer.history and trainer.step == 9 and trainer.epoch == 3
    assert [r["step"] for r in history.steps] == list(range(1, 10))
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3] and [r["step"] for r in history.epochs] == [3, 6, 9]
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    step_keys = set(history.keys(per="step"))
    assert {
        "loss",
        "grad_norm",
        "clipped_grad_norm",
        "clipped",
        "update_norm",
        "param_norm",
        "nonfinite",
        "grad_norm/rnn",
        "grad_norm/head",
    } <= step_keys
    for row in history.steps:  # per-layer norms add up (in squares) to the global norm
        np.testing.assert_allclose(math.hypot(row["grad_norm/rnn"], row["grad_norm/head"]), row["grad_norm"], rtol=1e-5)
        assert row["clipped"] == float(row["grad_norm"] > 5.0)
        np.testing.assert_allclose(row["clipped_grad_norm"], min(row["grad_norm"], 5.0), rtol=1e-5)
    for epoch in (1, 2, 3):  # equal batches: the exact epoch mean is the mean of the step means
        losses = [r["loss"] for r in history.steps if r["epoch"] == epoch]
        np.testing.assert_allclose(history.epochs[epoch - 1]["loss"], np.mean(losses), rtol=1e-6)

    # The module holds the trained weights; predict and evaluate agree with a direct computation.
    assert leaves_equal(nnx.state(model, nnx.Param), trainer.params)
    direct = np.asarray(model(jnp.asarray(valid["inputs"]), lengths=jnp.asarray(valid["lengths"])))
    predicted = train.predict(model, valid, batch_size=3)  # 3 batches, the last one short
    np.testing.assert_allclose(predicted, direct, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(trainer.predict(valid, batch_size=3), direct, rtol=1e-6, atol=1e-6)
    scores = train.evaluate(model, valid, loss="mse", batch_size=B)
    want = float(np.mean((direct - valid["targets"]) ** 2))
    np.testing.assert_allclose(scores["loss"], want, rtol=1e-5)
    np.testing.assert_allclose(history.epochs[-1]["val_loss"], want, rtol=1e-5)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_classification_with_custom_loss_fn_and_metrics():
    data = classification_data()
    model = Regressor(nnx.Rngs(1), out=2)

    def loss_fn(model, batch):
        logits = model(batch["inputs"])
        ce = optax.losses.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()
        return ce, {"acc": jnp.mean((jnp.argmax(logits, -1) == batch["targets"]).astype(jnp.float32))}

    history = train.fit(
        model, optax.adam(0.05), data, loss_fn=loss_fn, epochs=2, batch_size=B, progress=False, diagnostics=False
    )
    assert "grad_norm" not in history.keys(per="step")
    assert {"loss", "acc"} <= set(history.keys())
    scores = train.evaluate(model, data, loss="softmax_cross_entropy", metrics=["accuracy"], batch_size=5)
    mine = train.evaluate(model, data, loss_fn=loss_fn, batch_size=N)
    np.testing.assert_allclose(scores["loss"], mine["loss"], rtol=1e-5)
    np.testing.assert_allclose(scores["accuracy"], mine["acc"], rtol=1e-6)


def test_dropout_rngs_advance_in_training_and_not_in_evaluation():
    data = regression_data()
    batch = {k: v[:B] for k, v in data.items()}
    losses = []
    for _ in range(2):  # two identical models: the same dropout draws
        trainer = train.Trainer(Regressor(nnx.Rngs(0, dropout=7), dropout=0.5), optax.sgd(0.0))
        count0 = jax.tree.leaves(trainer.rest)
        l1, l2 = (float(trainer.train_step(batch)["loss"]) for _ in range(2))
        assert l1 != l2  # same weights (lr 0), new dropout mask each step
        assert not leaves_equal(count0, jax.tree.leaves(trainer.rest))
        e1, e2 = trainer.evaluate(data)["loss"], trainer.evaluate(data)["loss"]
        assert e1 == e2  # eval mode: no dropout
        losses.append((l1, l2, e1))
    assert losses[0] == losses[1]


class Recorder(train.Callback):
    def __init__(self, stop_at=None):
        self.events, self.stop_at, self.step_losses = [], stop_at, []

    def on_train_begin(self, trainer):
        self.events.append("begin")

    def on_epoch_begin(self, trainer, epoch):
        self.events.append(f"epoch{epoch}")

    def on_step_end(self, trainer, step, metrics):
        self.step_losses.append(float(metrics["loss"]))
        if step == self.stop_at:
            trainer.stop_training = True

    def on_epoch_end(self, trainer, epoch, logs):
        self.events.append(f"end{epoch}:{logs['epoch']:g}")

    def on_train_end(self, trainer):
        self.events.append("end")


def test_callbacks_history_files_and_progress_bar(tmp_path, capsys):
    data = regression_data()
    rec = Recorder(stop_at=5)
    seen = []
    lam = train.LambdaCallback(on_epoch_end=lambda trainer, epoch, logs: seen.append((epoch, trainer.step)))
    trainer = train.Trainer(Regressor(nnx.Rngs(0)), optax.adam(0.01))
    history = trainer.fit(
        data, epochs=4, batch_size=B, callbacks=[rec, lam], history_dir=tmp_path, progress=True, log_every=1
    )
    assert rec.events == ["begin", "epoch0", "end0:1", "epoch1", "end"]
    assert seen == [(0, 3)] and trainer.step == 5 and len(history.steps) == 5
    assert rec.step_losses == [r["loss"] for r in history.steps]
    err = capsys.readouterr().err
    assert "epoch 1/4" in err and "loss=" in err

    loaded = train.History.load(tmp_path)
    assert loaded == history and loaded.steps[2]["loss"] == history.steps[2]["loss"]
    assert json.loads((tmp_path / "history.json").read_text())["epochs"][0]["epoch"] == 1
    lines = (tmp_path / "history_steps.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["step", "epoch", "loss"] and len(lines) == 6
    assert lines[3].split(",")[:2] == ["3", "1"]  # counters are written as integers
    assert type(history.steps[0]["step"]) is int and type(loaded.epochs[0]["epoch"]) is int
    assert float(lines[3].split(",")[2]) == history.steps[2]["loss"]
    assert len((tmp_path / "history_epochs.csv").read_text().splitlines()) == 2


def test_early_stopping_stops_and_restores_best_weights():
    data = regression_data()
    snapshots = {}
    # Training lowers the loss, so with mode="max" only epoch 0 is ever "best".
    stopper = train.EarlyStopping("loss", mode="max", patience=2, restore_best=True)
    keep = train.LambdaCallback(on_epoch_end=lambda t, epoch, logs: snapshots.setdefault(epoch, t.params))
    trainer = train.Trainer(Regressor(nnx.Rngs(0)), optax.adam(0.02))
    history = trainer.fit(data, epochs=10, batch_size=B, callbacks=[keep, stopper], progress=False)
    assert len(history.epochs) == 3 and stopper.stopped_epoch == 2 and stopper.best_epoch == 0
    assert leaves_equal(trainer.params, snapshots[0]) and not leaves_equal(snapshots[0], snapshots[2])
    assert leaves_equal(nnx.state(trainer.model, nnx.Param), snapshots[0])
    assert stopper.state_dict() == {
        "best": history.epochs[0]["loss"],
        "best_epoch": 0,
        "best_step": 3,
        "wait": 2,
        "stopped_epoch": 2,
    }
    with pytest.raises(ValueError, match="monitors 'val_loss', but the epoch metrics are"):
        trainer.fit(data, epochs=11, batch_size=B, callbacks=[train.EarlyStopping()], progress=False)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda t, d: t.fit({"inputs": d["inputs"]}, batch_size=B), ValueError, "train_data has no 'targets'"),
        (lambda t, d: t.fit({**d, "targets": d["targets"][:5]}), ValueError, "share their leading"),
        (lambda t, d: t.fit(d, batch_size=0), ValueError, "batch_size must be a positive int"),
        (lambda t, d: t.evaluate(d, batch_size=0), ValueError, "batch_size must be a positive int"),
        (lambda t, d: t.fit(d, batch_size=64, drop_remainder=True), ValueError, "fewer than batch_size"),
        (lambda t, d: t.fit(d, resume=True), ValueError, "resume=True needs a checkpoint"),
        (lambda t, d: t.fit(d, callbacks=[print]), TypeError, "callbacks must be Callback instances"),
        (lambda t, d: t.fit([1, 2]), TypeError, "train_data must be a dict"),
        (lambda t, d: train.Trainer(t.model, None).fit(d), ValueError, "no optimizer"),
        (lambda t, d: train.Trainer(t.model, "adam"), TypeError, "optimizer must be an optax"),
        (lambda t, d: train.Trainer(object(), None), TypeError, "must be a flax.nnx.Module"),
        (lambda t, d: train.Trainer(t.model, None, loss_fn=len, metrics=["accuracy"]), ValueError, "not both"),
        (lambda t, d: train.Trainer(t.model, None, metrics={"grad_norm": train.mse}), ValueError, "clash"),
        (lambda t, d: train.Trainer(t.model, None, tbptt=0), ValueError, "chunk_size must be a positive int"),
    ],
)
def test_bad_fit_arguments(call, error, match):
    trainer = train.Trainer(Regressor(nnx.Rngs(0)), optax.sgd(0.1))
    with pytest.raises(error, match=match):
        call(trainer, regression_data())
