"""Metric writers: TensorBoard event files read back by TensorBoard's own reader, a resume purging stale
events; W&B and MLflow through recording stand-ins for their modules (the real packages take about a
minute each to install, too long for CI); a missing backend names the extra to install; the fit loop's
lines go to `logging`."""

from __future__ import annotations

import logging
import sys
import types
from types import SimpleNamespace

import numpy as np
import optax
import pytest
from flax import nnx

from recurrax import train
from train.train_helpers import B, Regressor, regression_data


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def fake_wandb(calls: list) -> types.ModuleType:
    """A stand-in for the ``wandb`` module: the calls WandbWriter makes, recorded."""
    module = types.ModuleType("wandb")

    class Run:
        def __init__(self, **kwargs):
            calls.append(("init", kwargs))

        def log(self, data, step=None):
            calls.append(("log", step, dict(data)))

        def finish(self):
            calls.append(("finish",))

    module.run = None
    module.init = lambda **kwargs: Run(**kwargs)
    module.Run = Run
    return module


def fake_mlflow(calls: list) -> types.ModuleType:
    """A stand-in for the ``mlflow`` module: the calls MLflowWriter makes, recorded."""
    module = types.ModuleType("mlflow")
    state = {"active": None}
    module.set_tracking_uri = lambda uri: calls.append(("set_tracking_uri", uri))
    module.set_experiment = lambda name: calls.append(("set_experiment", name))
    module.active_run = lambda: state["active"]

    def start_run(run_name=None):
        calls.append(("start_run", run_name))
        state["active"] = SimpleNamespace(name=run_name)

    def end_run():
        calls.append(("end_run",))
        state["active"] = None

    module.start_run, module.end_run = start_run, end_run
    module.log_metrics = lambda metrics, step=None: calls.append(("log", step, dict(metrics)))
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two fit calls on one trainer (2 epochs, then a third) with every writer and a log recorder."""
    logdir = tmp_path_factory.mktemp("tb")
    wandb_calls, mlflow_calls = [], []
    recorder = Recorder()
    logger = logging.getLogger("recurrax")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "wandb", fake_wandb(wandb_calls))
        mp.setitem(sys.modules, "mlflow", fake_mlflow(mlflow_calls))
        # setLevel, not an attribute write: it also clears the loggers' isEnabledFor caches, which
        # hold False for INFO once any earlier fit in this process asked.
        level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(recorder)
        try:
            data, valid = regression_data(), regression_data(8, seed=1)
            trainer = train.Trainer(Regressor(nnx.Rngs(0)), optax.adam(0.02), loss="mse")
            writers = [
                train.TensorBoardWriter(logdir),
                train.WandbWriter(project="p", mode="offline"),
                train.MLflowWriter(tracking_uri="file:///tmp/x", experiment="e", run_name="r"),
            ]
            kwargs = dict(batch_size=B, validation_data=valid, progress=False, log_every=2, callbacks=writers)
            first = trainer.fit(data, epochs=2, **kwargs).to_dict()
            history = trainer.fit(data, epochs=3, **kwargs)
        finally:
            logger.removeHandler(recorder)
            logger.setLevel(level)
    return SimpleNamespace(
        logdir=logdir,
        first=first,
        history=history,
        wandb=wandb_calls,
        mlflow=mlflow_calls,
        records=recorder.records,
    )


def expected_scalars(history) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every row of ``history``, as the writers name them."""
    want: dict[str, list[tuple[int, float]]] = {}
    for prefix, rows in (("step", history.steps), ("epoch", history.epochs)):
        for row in rows:
            for k, v in row.items():
                if k not in ("step", "epoch"):
                    want.setdefault(f"{prefix}/{k}", []).append((row["step"], v))
    return want


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_tensorboard_event_files_read_back_with_tags_steps_and_values(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    history = run.history
    assert len(history.steps) == 9 and [r["step"] for r in history.epochs] == [3, 6, 9]
    got: dict[str, list[tuple[int, float]]] = {}
    event_files = sorted(run.logdir.glob("events.out.tfevents.*"))
    assert len(event_files) == 2  # one per fit call
    for path in event_files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            got.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    want = expected_scalars(history)
    assert {"step/loss", "step/grad_norm", "step/grad_norm/rnn", "epoch/loss", "epoch/val_loss"} <= set(want)
    assert sorted(got) == sorted(want)
    for tag, points in want.items():  # each step once (the second call wrote only its own rows), float32 values
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        np.testing.assert_array_equal([v for _, v in got[tag]], np.float32([v for _, v in points]), err_msg=tag)


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: the scalars of ``logdir``'s event files, stale ones purged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_resumed_run_purges_the_events_written_after_its_checkpoint(tmp_path):
    def rows(first, last, scale):
        history = train.History()
        for step in range(first, last + 1):
            history.log_step({"step": step, "epoch": 1, "loss": scale * step})
        return history

    # The first run wrote steps 1-6 and died; its checkpoint was at step 4. The resumed run
    # restores rows 1-4 and writes 5-8 (other values: it ran on after the crash differently).
    crashed = SimpleNamespace(history=train.History(), step=0)
    writer = train.TensorBoardWriter(tmp_path)
    writer.on_train_begin(crashed)
    crashed.history, crashed.step = rows(1, 6, 1.0), 6
    writer.on_train_end(crashed)
    resumed = SimpleNamespace(history=rows(1, 4, 1.0), step=4)
    writer = train.TensorBoardWriter(tmp_path)
    writer.on_train_begin(resumed)
    resumed.history, resumed.step = rows(1, 4, 1.0), 8
    for step in range(5, 9):
        resumed.history.log_step({"step": step, "epoch": 1, "loss": 2.0 * step})
    writer.on_train_end(resumed)
    assert read_scalars(tmp_path) == {
        "step/loss": [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), *((s, 2.0 * s) for s in range(5, 9))]
    }


def test_wandb_writer_logs_every_row_once_at_its_step_and_finishes_its_run(run):
    inits = [c for c in run.wandb if c[0] == "init"]
    assert inits == [("init", {"project": "p", "mode": "offline"})] * 2  # one run per fit call, finished at its end
    assert [c[0] for c in run.wandb if c[0] != "log"] == ["init", "finish", "init", "finish"]
    logged: dict[str, list[tuple[int, float]]] = {}
    steps = []
    for call in run.wandb:
        if call[0] == "log":
            steps.append(call[1])
            for tag, value in call[2].items():
                logged.setdefault(tag, []).append((call[1], value))
    assert steps == sorted(steps)  # W&B drops a step below one it has seen
    assert logged == expected_scalars(run.history)


def test_wandb_writer_leaves_a_given_run_open():
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "wandb", fake_wandb(calls))
        run = sys.modules["wandb"].Run(project="mine")
        writer = train.WandbWriter(run)
        trainer = SimpleNamespace(history=train.History(), step=0)
        writer.on_train_begin(trainer)
        trainer.history.log_step({"step": 1, "epoch": 1, "loss": 0.5})
        writer.on_train_end(trainer)
    assert calls == [("init", {"project": "mine"}), ("log", 1, {"step/loss": 0.5})]


def test_mlflow_writer_starts_logs_and_ends_its_run(run):
    control = [c for c in run.mlflow if c[0] != "log"]
    once = [("set_tracking_uri", "file:///tmp/x"), ("set_experiment", "e"), ("start_run", "r"), ("end_run",)]
    assert control == once * 2
    logged: dict[str, list[tuple[int, float]]] = {}
    for call in run.mlflow:
        if call[0] == "log":
            for tag, value in call[2].items():
                logged.setdefault(tag, []).append((call[1], value))
    # A "/" inside a metric's name becomes "." (MLflow's file store keeps a metric in a file at that path).
    want = {tag.replace("/", ".").replace(".", "/", 1): points for tag, points in expected_scalars(run.history).items()}
    assert "step/grad_norm.rnn" in want and logged == want


def test_fit_logs_one_line_per_epoch_to_the_recurrax_logger(run):
    lines = [r.getMessage() for r in run.records if r.name == "recurrax.train._loop"]
    assert len(lines) == 3 and all(r.levelno == logging.INFO for r in run.records)
    row = run.history.epochs[0]
    assert lines[0] == f"epoch 1/2 (step 3): loss {row['loss']:.4g}, val_loss {row['val_loss']:.4g}"
    assert lines[2].startswith("epoch 3/3 (step 9): loss ")


def test_library_is_silent_unless_the_application_configures_logging():
    logger = logging.getLogger("recurrax")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    # With no handler configured, Python's last resort would print a WARNING to stderr; the NullHandler stops it.
    assert logging.getLogger("recurrax.train._loop").hasHandlers()


def test_early_stopping_says_why_it_stopped(caplog):
    stopper = train.EarlyStopping("val_loss", patience=2)
    trainer = SimpleNamespace(step=0, stop_training=False)
    with caplog.at_level(logging.INFO, logger="recurrax"):
        for epoch, value in enumerate([0.5, 0.7, 0.6]):
            trainer.step += 3
            stopper.on_epoch_end(trainer, epoch, {"val_loss": value})
    assert trainer.stop_training
    assert caplog.messages == ["early stopping after epoch 3: val_loss has not improved on 0.5 (epoch 1) for 2 epochs"]


@pytest.mark.parametrize(
    "make, module, extra",
    [
        (lambda: train.TensorBoardWriter("runs"), "tensorboard.summary.writer.event_file_writer", "tensorboard"),
        (lambda: train.WandbWriter(project="p"), "wandb", "wandb"),
        (lambda: train.MLflowWriter(), "mlflow", "mlflow"),
    ],
)
def test_a_missing_backend_names_the_extra_to_install(monkeypatch, make, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` (and its submodules) now raises ImportError
    with pytest.raises(ImportError, match=rf'needs the {extra} package: pip install "recurrax\[{extra}\]"'):
        make()


def test_bad_writer_arguments():
    with pytest.raises(TypeError, match="logdir must be a path"):
        train.TensorBoardWriter(3)
    with pytest.raises(ValueError, match="flush_secs must be a positive int"):
        train.TensorBoardWriter("runs", flush_secs=0)
    with pytest.raises(TypeError, match="steps and epochs must be bools"):
        train.TensorBoardWriter("runs", steps="yes")
