"""Asynchronous checkpoints: the step loop goes on while a save is written; nothing is lost or half-read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from orbax.checkpoint._src.path import atomicity

from recurrax import train
from train.train_helpers import ADAM, B, Regressor, regression_data

TX = ADAM  # one optimizer object: these trainers share one compiled step
DATA = regression_data()


class _HeldRename:
    """Holds orbax's final rename of each step (the step is written, not yet in place) until released."""

    def __init__(self, monkeypatch):
        self.release, self.held = threading.Event(), threading.Event()
        finalize = atomicity.AtomicRenameTemporaryPath.finalize

        async def held_finalize(path, *args, **kwargs):
            self.held.set()
            assert self.release.wait(60), "the test never released the save"
            return await finalize(path, *args, **kwargs)

        monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", held_finalize)


def _complete_steps(directory) -> list[int]:
    """Steps renamed into place on disk (what a process started now would see)."""
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


@pytest.mark.parametrize("asynchronous", [True, False])
def test_training_goes_on_while_a_save_is_written(tmp_path, monkeypatch, asynchronous):
    rename = _HeldRename(monkeypatch)
    seen = {}

    def at_step_end(trainer, step, metrics):
        if step == 3:  # step 2's save was started; the loop has run another step since
            seen["on_disk"] = _complete_steps(tmp_path)
            rename.release.set()

    if not asynchronous:
        rename.release.set()  # a blocking save would otherwise never return to the loop
    trainer = train.Trainer(Regressor(nnx.Rngs(0)), TX, diagnostics=False)
    ckpt = train.Checkpointer(tmp_path, every_steps=2, keep=5)
    trainer.fit(
        DATA,
        steps=4,
        batch_size=B,
        checkpoint=ckpt,
        async_checkpointing=asynchronous,
        callbacks=[train.LambdaCallback(on_step_end=at_step_end)],
        progress=False,
    )
    # Asynchronous: step 3 ran while step 2 sat unrenamed; synchronous: step 2 was on disk before step 3.
    assert seen["on_disk"] == ([] if asynchronous else [2])
    assert rename.held.is_set()
    assert _complete_steps(tmp_path) == [2, 4]  # fit returned with every save on disk
    restored = ckpt.restore(model_target=nnx.as_pure(nnx.state(trainer.model)))
    assert restored.step == 4 and restored.meta["trainer"]["step"] == 4


def test_a_read_waits_for_the_save_in_flight_and_its_meta_is_a_copy(tmp_path, monkeypatch):
    rename = _HeldRename(monkeypatch)
    ckpt = train.Checkpointer(tmp_path, keep=5)
    meta = {"sums": [1.0, 2.0]}
    ckpt.save(7, model_state={"w": jnp.ones(3)}, opt_state=(), meta=meta, wait=False)
    assert rename.held.wait(30) and _complete_steps(tmp_path) == []
    meta["sums"][0] = 99.0  # the loop's running sums change while the save is written
    threading.Timer(0.2, rename.release.set).start()
    restored = ckpt.restore(model_target={"w": jnp.zeros(3)}, opt_target=())
    assert restored.step == 7 and restored.meta == {"sums": [1.0, 2.0]}
    np.testing.assert_array_equal(restored.model_state["w"], np.ones(3))
    ckpt.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    import jax.numpy as jnp
    from orbax.checkpoint._src.path import atomicity
    from recurrax.train import Checkpointer

    ckpt = Checkpointer(sys.argv[1], keep=5)
    ckpt.save(1, model_state={"w": jnp.ones(3)}, opt_state=(), meta={"n": 1})

    async def stall(self, *args, **kwargs):  # step 2 is written but not yet renamed into place
        time.sleep(600)

    atomicity.AtomicRenameTemporaryPath.finalize = stall
    ckpt.save(2, model_state={"w": jnp.full(3, 2.0)}, opt_state=(), meta={"n": 2}, wait=False)
    print("TRAINING ON", flush=True)  # save(2) returned: its write goes on in the background
    time.sleep(600)
    """
)


@pytest.mark.slow
def test_a_process_killed_during_an_asynchronous_save_resumes_from_the_last_complete_step(tmp_path):
    script, directory = tmp_path / "child.py", tmp_path / "ckpt"
    script.write_text(CHILD)
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
            leftovers = [p.name for p in directory.iterdir() if not p.name.isdigit()]
        finally:
            child.send_signal(signal.SIGKILL)
            _, err = child.communicate()
    assert line == "TRAINING ON\n", err
    assert any(name.startswith("2.") for name in leftovers), leftovers  # killed mid-write of step 2

    with train.Checkpointer(directory) as ckpt:
        assert ckpt.all_steps() == [1] and ckpt.latest_step() == 1
        restored = ckpt.restore(model_target={"w": jnp.zeros(3)}, opt_target=())
        assert restored.step == 1 and restored.meta == {"n": 1}
        ckpt.save(2, model_state={"w": jnp.full(3, 3.0)}, opt_state=(), meta={"n": 3}, wait=False)
    assert _complete_steps(directory) == [1, 2]  # close() finished the save; the leftover is gone
    assert sorted(p.name for p in directory.iterdir()) == ["1", "2"]


def test_async_checkpointing_must_be_a_bool(tmp_path):
    trainer = train.Trainer(Regressor(nnx.Rngs(0)), TX, diagnostics=False)
    with pytest.raises(TypeError, match="async_checkpointing must be True or False, got 'yes'"):
        trainer.fit(DATA, steps=1, batch_size=B, checkpoint=tmp_path, async_checkpointing="yes", progress=False)


class _ReachedFitError(Exception):
    pass


@pytest.mark.parametrize("flags, expected", [([], True), (["--sync-checkpoints"], False)])
def test_recurrax_train_saves_in_the_background_unless_told_to_wait(tmp_path, monkeypatch, flags, expected):
    from recurrax import cli

    def fake_fit(self, train_data, **kwargs):
        raise _ReachedFitError(kwargs["async_checkpointing"])

    monkeypatch.setattr(train.Trainer, "fit", fake_fit)
    tiny = ["--task", "adding", "--seq-len", "4", "--num-train", "8", "--num-validation", "4", "--num-test", "4"]
    with pytest.raises(_ReachedFitError) as reached:
        cli.main(
            ["train", *tiny, "--hidden", "2", "--batch-size", "4", "--no-progress", "--out", str(tmp_path), *flags]
        )
    assert reached.value.args == (expected,)
