"""Checkpoints: exact resume, atomic writes, retention, restore for inference, clear errors."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from recurrax import train
from recurrax.train._history import write_atomic
from train.train_helpers import B, Regressor, leaves_equal, regression_data

# One optimizer object for every run: equal trainers share one compiled step.
TX = train.build_optimizer("adam", 0.02, clip_norm=1.0, accumulate_steps=2, skip_nonfinite=True)
DATA, VALID = regression_data(), regression_data(8, seed=1)
# Validation targets of the opposite sign: val_loss is best after epoch 1 and worse after, so the best
# checkpoint is not the latest and restoring the best weights is a real change.
VALID["targets"] = -VALID["targets"]


class InterruptError(Exception):
    pass


class InterruptAt(train.Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            raise InterruptError(f"killed after step {step}")


def run(directory, *, resume=False, interrupt_at=None, snapshots=None):
    """3 epochs of 3 steps, dropout on, Adam with accumulation: every kind of state matters."""
    trainer = train.Trainer(Regressor(nnx.Rngs(0, dropout=1), dropout=0.3), TX)
    callbacks = [train.EarlyStopping("val_loss", patience=5, restore_best=True)]
    if snapshots is not None:
        callbacks.append(train.LambdaCallback(on_epoch_end=lambda t, e, logs: snapshots.__setitem__(t.step, t.params)))
    if interrupt_at is not None:
        callbacks.append(InterruptAt(interrupt_at))
    ckpt = train.Checkpointer(directory, every_steps=2, keep=2, monitor="val_loss")
    with contextlib.suppress(InterruptError):
        trainer.fit(
            DATA,
            epochs=3,
            batch_size=B,
            validation_data=VALID,
            callbacks=callbacks,
            checkpoint=ckpt,
            resume=resume,
            progress=False,
            seed=5,
        )
    return trainer, ckpt


@pytest.mark.slow
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    snapshots = {}
    full, full_ckpt = run(tmp_path / "full", snapshots=snapshots)
    assert full.step == 9 and len(full.history.epochs) == 3

    # Killed mid-epoch 2 (latest checkpoint: step 4, mid-epoch), resumed and killed again early in epoch 3
    # (step 6, an epoch end), resumed to the end: each resume continues from what the one before saved.
    directory = tmp_path / "cut"
    for interrupt_at, latest in [(5, 4), (7, 6)]:
        cut, cut_ckpt = run(directory, resume=interrupt_at != 5, interrupt_at=interrupt_at, snapshots={})
        assert cut.step == interrupt_at and cut_ckpt.latest_step() == latest
    resumed, resumed_ckpt = run(directory, resume=True)

    assert resumed.step == 9
    assert leaves_equal(resumed.params, full.params)
    assert leaves_equal(resumed.rest, full.rest)  # the dropout RNG state
    assert leaves_equal(resumed.opt_state, full.opt_state)
    assert resumed.history == full.history
    assert json.dumps(resumed.history.to_dict()) == json.dumps(full.history.to_dict())
    assert resumed_ckpt.all_steps() == full_ckpt.all_steps()  # the same saves were made and kept

    # Retention: the last 2 steps plus the best val_loss, which orbax reads back from the steps' metrics.
    val = [(row["step"], row["val_loss"]) for row in full.history.epochs]
    best_step = int(min(val, key=lambda sv: sv[1])[0])
    assert best_step == 3 and full_ckpt.all_steps() == [3, 8, 9]
    with train.Checkpointer(tmp_path / "full", monitor="val_loss") as reopened:
        assert (reopened.best_step, reopened.best_value) == (best_step, dict(val)[best_step])
        assert reopened.latest_step() == 9

    # EarlyStopping(restore_best=True) ended both runs on the best epoch's weights (the resumed one read
    # them back from the checkpoint of that step).
    assert leaves_equal(full.params, snapshots[best_step])

    # Restore for inference, into a freshly built model.
    fresh = train.restore_model(tmp_path / "full", Regressor(nnx.Rngs(42), dropout=0.3), step="best")
    assert leaves_equal(nnx.state(fresh, nnx.Param), snapshots[best_step])
    np.testing.assert_array_equal(train.predict(fresh, VALID), full.predict(VALID))
    fresh = train.restore_model(tmp_path / "full", Regressor(nnx.Rngs(42), dropout=0.3))  # latest: step 9
    assert leaves_equal(nnx.state(fresh, nnx.Param), snapshots[9])


def test_the_best_step_is_orbaxs_from_the_metric_saved_with_each_step(tmp_path):
    def save(ckpt, step, value):
        ckpt.save(step, model_state={"w": jnp.full(2, float(step))}, opt_state=(), meta={}, metric=value)

    with train.Checkpointer(tmp_path, monitor="val_loss", keep=1) as ckpt:
        for step, value in [(3, 0.5), (6, 0.25), (9, 0.125)]:
            save(ckpt, step, value)
        # A tie and a NaN are not improvements: the first best stays (as EarlyStopping's does), and is kept.
        save(ckpt, 10, 0.125)
        save(ckpt, 11, float("nan"))
        assert (ckpt.best_step, ckpt.best_value) == (9, 0.125) and ckpt.all_steps() == [9, 11]
    with train.Checkpointer(tmp_path, monitor="val_loss") as ckpt:  # a new process: read from the steps
        assert (ckpt.best_step, ckpt.best_value) == (9, 0.125)
        assert ckpt.restore(model_target={"w": jnp.zeros(2)}, step="best").step == 9
    # Another monitor or mode has no best here; restore_model finds the recorded one by itself.
    assert train.Checkpointer(tmp_path, monitor="val_loss", mode="max").best_step is None
    assert train.Checkpointer(tmp_path, monitor="val_accuracy").best_step is None
    assert train.Checkpointer(tmp_path).best_step is None


def test_a_best_step_set_aside_as_corrupt_is_no_longer_the_best(tmp_path):
    # The best lives in its step's metrics, so it leaves with the step: an index file beside the steps
    # went on naming step 6 after the fallback had set it aside, and "best" failed.
    with train.Checkpointer(tmp_path, monitor="val_loss") as ckpt:
        for step, value in [(3, 0.5), (6, 0.25)]:
            ckpt.save(step, model_state={"w": jnp.full(2, float(step))}, opt_state=(), meta={}, metric=value)
    _corrupt_array_data(tmp_path / "6")
    with train.Checkpointer(tmp_path, monitor="val_loss", on_corrupt="fallback") as ckpt:
        with pytest.warns(UserWarning, match="resuming from step 3"):
            assert ckpt.restore(model_target={"w": jnp.zeros(2)}).step == 3
        assert (ckpt.best_step, ckpt.best_value) == (3, 0.5)
        assert ckpt.restore(model_target={"w": jnp.zeros(2)}, step="best").step == 3
    # orbax reads every step's metrics when it opens the directory: an unreadable one is one clear error.
    for path in (tmp_path / "3" / "metrics").rglob("*"):
        if path.is_file():
            path.write_text("{not json")
    with pytest.raises(train.CheckpointError, match=f"cannot open the checkpoints in {tmp_path}: .*JSONDecodeError"):
        train.Checkpointer(tmp_path).all_steps()


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_resume_refuses_changed_settings(tmp_path):
    run(tmp_path, interrupt_at=3)  # checkpoint at step 2
    trainer = train.Trainer(Regressor(nnx.Rngs(0, dropout=1), dropout=0.3), TX)
    with pytest.raises(ValueError, match=r"settings changed \(batch_size: 4 then, 3 now\)"):
        trainer.fit(
            DATA,
            epochs=3,
            batch_size=3,
            callbacks=[train.EarlyStopping("val_loss", patience=5)],
            checkpoint=train.Checkpointer(tmp_path),
            resume=True,
            progress=False,
            seed=5,
        )


CHILD = textwrap.dedent(
    """
    import sys, time
    import jax.numpy as jnp
    from orbax.checkpoint._src.path import atomicity
    from recurrax.train import Checkpointer

    ckpt = Checkpointer(sys.argv[1], keep=5)
    ckpt.save(1, model_state={"w": jnp.ones(3)}, opt_state=(), meta={"n": 1})

    async def stall(self, *args, **kwargs):  # the step is fully written but not yet renamed into place
        print("SAVING", flush=True)
        time.sleep(600)

    atomicity.AtomicRenameTemporaryPath.finalize = stall
    ckpt.save(2, model_state={"w": jnp.full(3, 2.0)}, opt_state=(), meta={"n": 2})
    """
)


def test_a_process_killed_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    directory = tmp_path / "ckpt"
    # The child saves on the CPU: on a GPU machine this test also restores onto another device.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with subprocess.Popen(
        [sys.executable, str(script), str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        try:
            line = child.stdout.readline()
            leftovers = [p.name for p in directory.iterdir() if p.name.startswith("2.") and "tmp" in p.name]
        finally:
            child.send_signal(signal.SIGKILL)
            _, err = child.communicate()
    assert line == "SAVING\n", err
    assert leftovers  # killed while step 2 sat in orbax's temporary directory

    ckpt = train.Checkpointer(directory)
    assert ckpt.all_steps() == [1]
    restored = ckpt.restore(model_target={"w": jnp.zeros(3)}, opt_target=())
    assert restored.step == 1 and restored.meta == {"n": 1}
    np.testing.assert_array_equal(restored.model_state["w"], np.ones(3))
    ckpt.save(2, model_state={"w": jnp.full(3, 3.0)}, opt_state=(), meta={"n": 3})
    assert ckpt.all_steps() == [1, 2] and ckpt.restore(model_target={"w": jnp.zeros(3)}).meta == {"n": 3}
    assert not [p.name for p in directory.iterdir() if "tmp" in p.name]  # orbax cleared the leftover


def test_an_interrupted_metadata_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "index.json"
    write_atomic(path, '{"old": true}')

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, '{"new": true}')
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]  # no temporary file left behind


def saved(tmp_path):
    """A checkpoint of a Regressor (H=8) and its Adam state, written without training."""
    model = Regressor(nnx.Rngs(0))
    state = nnx.as_pure(nnx.state(model))
    opt_state = optax.adam(0.1).init(nnx.as_pure(nnx.state(model, nnx.Param)))
    with train.Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(7, model_state=state, opt_state=opt_state, meta={"note": "x"})
    return tmp_path / "ckpt", state, opt_state


def test_checkpoint_round_trip_including_rng_keys(tmp_path):
    directory, state, opt_state = saved(tmp_path)
    restored = train.Checkpointer(directory).restore(model_target=state, opt_target=opt_state, step=7)
    assert leaves_equal(restored.model_state, state) and leaves_equal(restored.opt_state, opt_state)
    keys = [x for x in jax.tree.leaves(restored.model_state) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key)]
    assert keys and restored.meta == {"note": "x"}


def test_missing_mismatched_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no checkpoint directory at {tmp_path / 'nowhere'}"):
        train.restore_model(tmp_path / "nowhere", Regressor(nnx.Rngs(0)))
    directory, state, _ = saved(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for step 3 .* steps: \[7\]"):
        train.restore_model(directory, Regressor(nnx.Rngs(0)), step=3)
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        train.restore_model(directory, Regressor(nnx.Rngs(0)), step="best")

    with pytest.raises(train.CheckpointError) as err:
        train.restore_model(directory, Regressor(nnx.Rngs(0), hidden=16))
    message = str(err.value)
    assert str(directory / "7") in message
    assert "'rnn/params/recurrent_kernel' has shape (8, 8) in the checkpoint but (16, 16) now" in message
    assert "'head/kernel' has shape (8, 1) in the checkpoint but (16, 1) now" in message
    with pytest.raises(train.CheckpointError, match="'drop/rngs/count' is in the checkpoint but not in the model"):
        train.Checkpointer(directory).restore(model_target={k: v for k, v in state.items() if k != "drop"})
    with pytest.raises(train.CheckpointError, match="the checkpoint has 11 arrays, the optimizer state has 0"):
        train.Checkpointer(directory).restore(model_target=state, opt_target=optax.sgd(0.1).init(jnp.zeros(2)))

    # Corrupt array data: every file of the model item overwritten.
    for path in (directory / "7" / "model").rglob("*"):
        if path.is_file():
            path.write_bytes(b"garbage")
    with pytest.raises(train.CheckpointError, match=f"checkpoint {directory / '7'} is corrupt or incomplete"):
        train.restore_model(directory, Regressor(nnx.Rngs(0)))
    for path in (directory / "7" / "meta").rglob("*"):
        if path.is_file():
            path.write_text("{not json")
    with pytest.raises(train.CheckpointError, match="cannot read its metadata"):
        train.restore_model(directory, Regressor(nnx.Rngs(0)))


def _corrupt_array_data(step_dir):
    """Overwrites the array chunks of a step (its metadata stays readable, so orbax starts every read)."""
    chunks = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    assert chunks
    for path in chunks:
        path.write_bytes(b"garbage")


def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one_when_asked(tmp_path):
    state = {"w": jnp.zeros(3)}
    with train.Checkpointer(tmp_path) as ckpt:
        for step in (1, 2, 3):
            ckpt.save(step, model_state={"w": jnp.full(3, float(step))}, opt_state=(), meta={"n": step})
    _corrupt_array_data(tmp_path / "3")

    with pytest.raises(train.CheckpointError, match=r"3 is corrupt .*on_corrupt='fallback'"):
        train.Checkpointer(tmp_path).restore(model_target=state)
    with pytest.raises(train.CheckpointError, match="corrupt") as err:  # an explicit step does not fall back
        train.Checkpointer(tmp_path, on_corrupt="fallback").restore(model_target=state, step=3)
    assert "on_corrupt" not in str(err.value)

    ckpt = train.Checkpointer(tmp_path, on_corrupt="fallback")
    with pytest.warns(UserWarning, match=r"resuming from step 2, the newest intact checkpoint .*/3 is corrupt"):
        restored = ckpt.restore(model_target=state)
    assert restored.step == 2 and restored.meta == {"n": 2}
    np.testing.assert_array_equal(restored.model_state["w"], np.full(3, 2.0))
    assert ckpt.all_steps() == [1, 2] and (tmp_path / "3.corrupt").is_dir()  # set aside, kept for inspection
    ckpt.save(3, model_state={"w": jnp.ones(3)}, opt_state=(), meta={"n": 3})  # the run can save step 3 again
    assert ckpt.restore(model_target=state).meta == {"n": 3}
    ckpt.close()
    with pytest.raises(ValueError, match="on_corrupt must be 'raise' or 'fallback', got 'skip'"):
        train.Checkpointer(tmp_path, on_corrupt="skip")


STRAGGLERS = textwrap.dedent(
    """
    import sys, time, jax.numpy as jnp
    from recurrax import train

    try:
        train.Checkpointer(sys.argv[1]).restore(model_target={f"w{i}": jnp.zeros(1000) for i in range(20)})
    except train.CheckpointError as err:
        print("refused:", str(err)[:60])
    time.sleep(0.5)  # the program goes on; the abandoned reads finish meanwhile
    """
)


def test_a_failed_restore_leaves_no_event_loop_tracebacks(tmp_path):
    # Orbax reads the 20 arrays concurrently and closes its event loop at the first failure; the other
    # reads then reported "RuntimeError: Event loop is closed" on stderr, one traceback each.
    with train.Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(1, model_state={f"w{i}": jnp.ones(1000) for i in range(20)}, opt_state=(), meta={})
    _corrupt_array_data(tmp_path / "ckpt" / "1")
    script = tmp_path / "child.py"
    script.write_text(STRAGGLERS)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "ckpt")], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0 and result.stdout.startswith("refused: checkpoint"), result.stderr
    assert "Event loop is closed" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_asyncio_reports_of_abandoned_orbax_reads_are_dropped_and_others_kept():
    """The report a CI run printed once (jax 0.12): a sibling read's failure, never retrieved."""
    from recurrax.train._checkpoint import _AbandonedOrbaxReadFilter

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    abandoned = (
        "Task exception was never retrieved\nfuture: <Task finished name='Task-48' coro=<async_deserialize() done, "
        "defined at /venv/site-packages/orbax/checkpoint/_src/serialization/serialization.py:394> "
        "exception=ValueError('OUT_OF_RANGE: Error opening \"cast\" driver')>"
    )
    keep = _AbandonedOrbaxReadFilter()
    assert not keep.filter(record(abandoned))
    assert keep.filter(record(abandoned.replace("async_deserialize", "user_coroutine")))
    assert keep.filter(record("Task exception was never retrieved\nfuture: <Task finished coro=<main() done>>"))
