"""Step-based training: fit(steps=N, eval_every=K), several steps per device call, endless batch sources,
and the stop on a non-finite training loss."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from flax import nnx

from recurrax import train
from train.train_helpers import B, Regressor, leaves_equal, regression_data

# One optimizer object for every run: equal trainers share one compiled step.
TX = train.build_optimizer("adam", 0.02, clip_norm=1.0)
GUARDED = train.build_optimizer("adam", 0.02, clip_norm=1.0, skip_nonfinite=True)
DATA, VALID = regression_data(), regression_data(8, seed=1)  # 12 examples: 3 batches of B = 4 per epoch
RAGGED = regression_data(10, seed=2)  # batches of 4, 4, 2


def trainer(tx=TX, dropout=0.3):
    return train.Trainer(Regressor(nnx.Rngs(0, dropout=1), dropout=dropout), tx)


def same_run(a, b, *, exact_history=True):
    """Bit-identical parameters, RNG and optimizer state; the same history (to float32 round-off if not exact)."""
    assert a.step == b.step
    assert leaves_equal(a.params, b.params) and leaves_equal(a.rest, b.rest)
    assert leaves_equal(a.opt_state, b.opt_state)
    if exact_history:
        assert a.history == b.history
        return
    for rows_a, rows_b in [(a.history.steps, b.history.steps), (a.history.epochs, b.history.epochs)]:
        assert [sorted(r) for r in rows_a] == [sorted(r) for r in rows_b]
        for row_a, row_b in zip(rows_a, rows_b, strict=True):
            assert (row_a["step"], row_a["epoch"]) == (row_b["step"], row_b["epoch"])
            np.testing.assert_allclose([row_a[k] for k in row_a], [row_b[k] for k in row_a], rtol=1e-6)


def test_steps_mode_reads_the_data_of_the_epoch_mode_and_validates_every_k_steps():
    by_epoch, by_step = trainer(), trainer()
    by_epoch.fit(DATA, epochs=3, batch_size=B, validation_data=VALID, seed=3, progress=False)
    by_step.fit(DATA, steps=9, eval_every=3, batch_size=B, validation_data=VALID, seed=3, progress=False)
    same_run(by_epoch, by_step)  # 9 steps every 3 = 3 epochs of 3 batches: the same run, row for row

    odd = trainer()
    history = odd.fit(DATA, steps=9, eval_every=4, batch_size=B, validation_data=VALID, seed=3, progress=False)
    assert [row["step"] for row in history.epochs] == [4, 8, 9]  # every 4 steps and at the last
    assert all("val_loss" in row for row in history.epochs)
    assert leaves_equal(odd.params, by_step.params)  # where validation runs does not change the training
    previous = 0
    for row in history.epochs:  # each row's train loss is the mean over its own steps (equal batches)
        losses = [r["loss"] for r in history.steps if previous < r["step"] <= row["step"]]
        np.testing.assert_allclose(row["loss"], np.mean(losses), rtol=1e-6)
        previous = row["step"]

    odd.fit(DATA, steps=12, eval_every=4, batch_size=B, validation_data=VALID, seed=3, progress=False)
    assert odd.step == 12 and [row["step"] for row in odd.history.epochs] == [4, 8, 9, 12]  # a later call extends


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_several_steps_per_call_equal_one_step_per_call():
    for data, kwargs in [(DATA, {"epochs": 3}), (RAGGED, {"steps": 8, "eval_every": 5})]:
        one, many = trainer(), trainer()
        one.fit(data, batch_size=B, validation_data=VALID, progress=False, **kwargs)
        many.fit(data, batch_size=B, validation_data=VALID, progress=False, steps_per_call=4, log_every=5, **kwargs)
        # XLA may fuse a step's diagnostics differently inside the scan: jax 0.12 reports a gradient norm
        # 1 ulp apart at one step (the updates themselves stay bit-identical).
        same_run(one, many, exact_history=False)


class Steps(train.Callback):
    def __init__(self):
        self.seen = []

    def on_step_end(self, trainer, step, metrics):
        self.seen.append((step, float(metrics["loss"])))


def test_callbacks_see_every_step_of_a_multi_step_call():
    one, many = Steps(), Steps()
    trainer().fit(DATA, steps=7, batch_size=B, callbacks=[one], progress=False)
    trainer().fit(DATA, steps=7, batch_size=B, callbacks=[many], steps_per_call=3, progress=False)
    assert [s for s, _ in many.seen] == list(range(1, 8)) and many.seen == one.seen


class InterruptError(Exception):
    pass


class InterruptAt(train.Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            raise InterruptError(step)


def test_step_mode_resumes_exactly_with_several_steps_per_call(tmp_path):
    def run(directory, interrupt_at=None, resume=False):
        t = trainer()
        callbacks = [] if interrupt_at is None else [InterruptAt(interrupt_at)]
        with contextlib.suppress(InterruptError):
            t.fit(
                DATA,
                steps=10,
                eval_every=4,
                steps_per_call=2,
                batch_size=B,
                validation_data=VALID,
                callbacks=callbacks,
                checkpoint=train.Checkpointer(directory, every_steps=3),
                resume=resume,
                progress=False,
            )
        return t

    full = run(tmp_path / "full")
    cut = run(tmp_path / "cut", interrupt_at=8)  # saved at step 4 (crossing 3) and 6; killed in the call 7-8
    assert train.Checkpointer(tmp_path / "cut").latest_step() == 6
    same_run(run(tmp_path / "cut", resume=True), full)
    assert cut.step == 8


class Batches:
    """An endless source: batch i is examples [4i, 4i + 4) of DATA, cyclically."""

    def __init__(self, size=None):
        self.size = size

    def batch(self, index, batch_size):
        rows = (np.arange(self.size or batch_size) + index * batch_size) % len(DATA["inputs"])
        return {k: v[rows] for k, v in DATA.items()}

    def __repr__(self):
        return "Batches()"


def test_an_endless_source_trains_for_steps():
    from_source, from_arrays = trainer(), trainer()
    from_source.fit(
        Batches(), steps=6, eval_every=3, steps_per_call=2, batch_size=B, validation_data=VALID, progress=False
    )
    from_arrays.fit(DATA, steps=6, eval_every=3, batch_size=B, validation_data=VALID, shuffle=False, progress=False)
    same_run(from_source, from_arrays, exact_history=False)

    with pytest.raises(ValueError, match=r"endless batch source .*steps=N"):
        trainer().fit(Batches(), epochs=2, batch_size=B, progress=False)
    with pytest.raises(ValueError, match=r"train_data.batch\(0, 4\) returned 3 examples, expected 4"):
        trainer().fit(Batches(size=3), steps=2, batch_size=B, progress=False)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_fresh_adding_problem_batches_train():
    from recurrax import nn
    from recurrax.tasks import adding_problem

    data = adding_problem(6, infinite=True, num_validation=8, num_test=8)

    class Model(nnx.Module):
        def __init__(self, rngs):
            self.rnn, self.head = nn.GRU(2, 8, rngs=rngs), nnx.Linear(8, 1, rngs=rngs)

        def __call__(self, xs, lengths=None):
            return self.head(self.rnn(xs, lengths=lengths)[:, -1])

    history = train.fit(
        Model(nnx.Rngs(0)), TX, data.train, steps=4, batch_size=B, validation_data=data.validation, progress=False
    )
    assert [row["step"] for row in history.epochs] == [4] and np.isfinite(history.epochs[0]["val_loss"])


def poisoned(data, example):
    data = {k: v.copy() for k, v in data.items()}
    data["inputs"][example, 0, 0] = np.nan  # a valid step, not padding: the loss is NaN
    return data


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
@pytest.mark.parametrize("steps_per_call", [1, 3])
def test_a_non_finite_loss_stops_training_naming_the_step_and_batch(steps_per_call):
    bad = poisoned(DATA, 5)
    t = trainer(dropout=0.0)
    message = r"training loss is nan at step 2, on batch index 1 of epoch 1 \(examples \[4, 5, 6, 7\]\)"
    with pytest.raises(FloatingPointError, match=message):
        t.fit(bad, epochs=2, batch_size=B, shuffle=False, steps_per_call=steps_per_call, progress=False)
    assert [row["step"] for row in t.history.steps][:2] == [1, 2]  # the rows up to it are logged

    guarded = trainer(GUARDED, dropout=0.0)  # skip_nonfinite: the step is skipped and training goes on
    guarded.fit(bad, epochs=2, batch_size=B, shuffle=False, steps_per_call=steps_per_call, progress=False)
    assert guarded.step == 6 and [r["nonfinite"] for r in guarded.history.steps] == [0, 1, 0, 0, 1, 0]


def test_step_settings_are_checked():
    data = DATA
    cases = [
        ({"epochs": 2, "steps": 4}, "pass epochs or steps, not both"),
        ({"eval_every": 2}, "eval_every counts steps and goes with steps=N"),
        ({"steps": 4, "validation_every": 2}, "validation_every counts epochs"),
        ({"steps": 0}, "steps must be a positive int, got 0"),
        ({"steps": 4, "eval_every": 1.5}, "eval_every must be a positive int, got 1.5"),
        ({"steps_per_call": 0}, "steps_per_call must be a positive int, got 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            trainer().fit(data, batch_size=B, progress=False, **kwargs)
