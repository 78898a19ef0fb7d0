"""Metric writers: callbacks that send the history's rows to TensorBoard, Weights & Biases or MLflow.

A writer reads only what ``fit`` has already brought to the host (the rows of
``trainer.history``), so it adds no device round trip: step rows arrive every
``log_every`` steps, evaluation rows at the end of each epoch or period.
Every row is written at its optimizer step, so step and epoch curves share an
axis: step rows under ``step/<name>`` (``step/loss``, ``step/grad_norm/rnn``),
evaluation rows under ``epoch/<name>`` (``epoch/loss``, ``epoch/val_accuracy``).

The backends are optional: each is imported when its writer is constructed,
and a missing one raises ``ImportError`` naming the extra to install.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from recurrax.train._callbacks import Callback

if TYPE_CHECKING:
    from recurrax.train._trainer import Trainer

# Row keys that place a row (its x value), not metrics to plot.
_COUNTERS = ("step", "epoch")


class MetricWriter(Callback):
    """Base class of the metric writers: writes each new history row as scalars at its step.

    A subclass implements :meth:`write_scalars` (and :meth:`open`,
    :meth:`flush`, :meth:`close` where its backend needs them); this class
    decides which rows are new. Rows logged before ``fit`` started (an earlier
    call's, or those a resumed run restored from its checkpoint) count as
    written already, so a resumed run writes each step once.

    Args:
      steps: write the step rows (``step/<name>``: loss, metrics, gradient diagnostics).
      epochs: write the evaluation rows (``epoch/<name>``: exact train means and ``val_*``).
    """

    def __init__(self, *, steps: bool = True, epochs: bool = True):
        if not isinstance(steps, bool) or not isinstance(epochs, bool):
            raise TypeError(f"steps and epochs must be bools, got steps={steps!r}, epochs={epochs!r}")
        self.steps, self.epochs = steps, epochs
        self._steps_written = 0
        self._epochs_written = 0

    # -------------------------------------------------------- for subclasses
    def open(self, trainer: Trainer, resumed_at: int) -> None:
        """Called once per ``fit`` before anything is written; ``resumed_at`` is the step
        training continues from (0 for a fresh run), past which older events are stale."""

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Writes ``{tag: value}`` at optimizer ``step``."""
        raise NotImplementedError(f"{type(self).__name__} must implement write_scalars(step, scalars)")

    def flush(self) -> None:
        """Makes what was written so far visible (called after every epoch or period)."""

    def close(self) -> None:
        """Flushes and releases the backend (called at the end of ``fit``)."""

    # ------------------------------------------------------------ the hooks
    def on_train_begin(self, trainer: Trainer) -> None:
        self._steps_written = len(trainer.history.steps)
        self._epochs_written = len(trainer.history.epochs)
        self.open(trainer, trainer.step)

    def on_step_end(self, trainer: Trainer, step: int, metrics: Mapping[str, Any]) -> None:
        self._write_new(trainer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        self._write_new(trainer)
        self.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        self._write_new(trainer)
        self.close()

    def _write_new(self, trainer: Trainer) -> None:
        """The rows logged since the last call: step rows first, then evaluation rows (steps never go back)."""
        history = trainer.history
        if self.steps:
            for row in history.steps[self._steps_written :]:
                self.write_scalars(int(row["step"]), _scalars("step", row))
        if self.epochs:
            for row in history.epochs[self._epochs_written :]:
                self.write_scalars(int(row["step"]), _scalars("epoch", row))
        self._steps_written, self._epochs_written = len(history.steps), len(history.epochs)


class TensorBoardWriter(MetricWriter):
    """Writes the run to TensorBoard event files in ``logdir``, with the ``tensorboard`` package's own writer.

    A resumed run purges the events past the step it resumed from (those an
    interrupted run wrote after its last checkpoint), so TensorBoard shows one
    curve. Install with ``pip install "recurrax[tensorboard]"`` (the package
    that also shows the logs: ``tensorboard --logdir <logdir>``).

    Args:
      logdir: the directory of the event files (created if missing).
      steps, epochs: which rows to write (see :class:`MetricWriter`).
      flush_secs: seconds between background flushes (the writer also
        flushes after every epoch or period and at the end).

    Example:
      >>> import tempfile
      >>> writer = TensorBoardWriter(tempfile.mkdtemp())  # fit(..., callbacks=[writer])
    """

    # Events are written with tensorboard's EventFileWriter, the writer under
    # torch.utils.tensorboard, rather than tensorboardX: `import tensorboardX`
    # imports torch whenever torch is installed (6.3 s against 0.6 s for
    # tensorboard's writer, measured on a busy 2-core machine with torch 2.13),
    # and tensorboard is needed anyway to view the logs and to read them back.
    def __init__(
        self, logdir: str | os.PathLike[str], *, steps: bool = True, epochs: bool = True, flush_secs: int = 30
    ):
        super().__init__(steps=steps, epochs=epochs)
        if not isinstance(logdir, (str, os.PathLike)):
            raise TypeError(f"logdir must be a path, got {logdir!r}")
        if isinstance(flush_secs, bool) or not isinstance(flush_secs, int) or flush_secs < 1:
            raise ValueError(f"flush_secs must be a positive int, got {flush_secs!r}")
        writer = _require("tensorboard.summary.writer.event_file_writer", "tensorboard", type(self).__name__)
        self._file_writer_class = writer.EventFileWriter
        self._event_pb2 = importlib.import_module("tensorboard.compat.proto.event_pb2")
        self._summary_pb2 = importlib.import_module("tensorboard.compat.proto.summary_pb2")
        self.logdir, self.flush_secs = os.fspath(logdir), flush_secs
        self._writer: Any = None

    def open(self, trainer: Trainer, resumed_at: int) -> None:
        self.close()
        self._writer = self._file_writer_class(self.logdir, flush_secs=self.flush_secs)
        if resumed_at > 0:
            # TensorBoard's purge marker: a SessionLog.START at step s hides the events at steps >= s
            # written before it (in this file or an older one).
            log = self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START)
            self._writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=resumed_at + 1, session_log=log))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        summary = self._summary_pb2.Summary
        values = [summary.Value(tag=tag, simple_value=value) for tag, value in scalars.items()]
        self._writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary(value=values)))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class WandbWriter(MetricWriter):
    """Logs the run to Weights & Biases.

    Uses ``run`` if given, else the active run (``wandb.run``), else starts one
    with ``wandb.init(**init_kwargs)`` and finishes it at the end of ``fit``
    (pass ``mode="offline"`` to write locally and ``wandb sync`` later).
    W&B ignores steps below one it has seen: resume a W&B run with W&B's own
    ``resume=`` settings. Install with ``pip install "recurrax[wandb]"``.

    Args:
      run: a ``wandb`` run to log to (it is not finished here).
      steps, epochs: which rows to write (see :class:`MetricWriter`).
      **init_kwargs: passed to ``wandb.init`` (``project=``, ``name=``, ``config=``, ``mode=``...).
    """

    def __init__(self, run: Any = None, *, steps: bool = True, epochs: bool = True, **init_kwargs: Any):
        super().__init__(steps=steps, epochs=epochs)
        self._wandb = _require("wandb", "wandb", type(self).__name__)
        self._given_run, self.init_kwargs = run, init_kwargs
        self.run: Any = None
        self._owns_run = False

    def open(self, trainer: Trainer, resumed_at: int) -> None:
        self.run = self._given_run or self._wandb.run
        self._owns_run = self.run is None
        if self.run is None:
            self.run = self._wandb.init(**self.init_kwargs)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self.run.log(dict(scalars), step=step)

    def close(self) -> None:
        if self._owns_run and self.run is not None:
            self.run.finish()
        self.run, self._owns_run = None, False


class MLflowWriter(MetricWriter):
    """Logs the run's metrics to MLflow.

    Logs to the active MLflow run, or starts one (and ends it at the end of
    ``fit``). A ``/`` inside a metric's name becomes ``.`` (``step/grad_norm.rnn``):
    MLflow's file store cannot hold both ``grad_norm`` and ``grad_norm/rnn``.
    Install with ``pip install "recurrax[mlflow]"``.

    Args:
      tracking_uri: where MLflow stores runs (``mlflow.set_tracking_uri``);
        None keeps MLflow's setting (``MLFLOW_TRACKING_URI``).
      experiment: the experiment name (``mlflow.set_experiment``), or None for MLflow's current one.
      run_name: the name of a run started here.
      steps, epochs: which rows to write (see :class:`MetricWriter`).
    """

    def __init__(
        self,
        *,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        run_name: str | None = None,
        steps: bool = True,
        epochs: bool = True,
    ):
        super().__init__(steps=steps, epochs=epochs)
        self._mlflow = _require("mlflow", "mlflow", type(self).__name__)
        self.tracking_uri, self.experiment, self.run_name = tracking_uri, experiment, run_name
        self._owns_run = False

    def open(self, trainer: Trainer, resumed_at: int) -> None:
        mlflow = self._mlflow
        if self.tracking_uri is not None:
            mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.active_run() is None:
            if self.experiment is not None:
                mlflow.set_experiment(self.experiment)
            mlflow.start_run(run_name=self.run_name)
            self._owns_run = True

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._mlflow.log_metrics({_mlflow_name(tag): value for tag, value in scalars.items()}, step=step)

    def close(self) -> None:
        if self._owns_run:
            self._mlflow.end_run()
        self._owns_run = False


def _mlflow_name(tag: str) -> str:
    """``step/grad_norm/rnn`` -> ``step/grad_norm.rnn``: MLflow's file store keeps each metric in a file
    at its name's path, where ``step/grad_norm`` (a file) and ``step/grad_norm/rnn`` cannot both live."""
    prefix, _, name = tag.partition("/")
    return f"{prefix}/{name.replace('/', '.')}"


def _scalars(prefix: str, row: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in row.items() if k not in _COUNTERS}


def _require(module: str, extra: str, writer: str) -> ModuleType:
    """Imports ``module`` for ``writer``, or raises ``ImportError`` naming the extra that installs it
    (each extra is named after the package it installs)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f'{writer} needs the {extra} package: pip install "recurrax[{extra}]"') from err
