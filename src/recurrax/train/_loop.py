"""The epoch loop of :meth:`~recurrax.train.Trainer.fit`: batches in each epoch's order, validation, progress bar.

Everything one ``fit`` call owns lives in a :class:`FitLoop`: the data, the
settings, the callbacks and the checkpoints. The step itself, the history and
the loop position (``trainer.step``, ``trainer.epoch``, ``trainer.position``)
belong to the trainer, so a later call or a resume continues where it stopped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recurrax.train._callback_list import CallbackList
from recurrax.train._callbacks import Callback
from recurrax.train._checkpoint import Checkpointer
from recurrax.train._data import Data, as_data, device_batch, epoch_order, num_examples, take
from recurrax.train._fit_checkpoints import FitCheckpoints
from recurrax.train._history import History
from recurrax.train._tbptt import check_streaming_batch

if TYPE_CHECKING:
    from recurrax.train._trainer import Trainer


class FitLoop:
    """One call of ``trainer.fit(...)``: its arguments (checked here), data, callbacks and checkpoints.

    Building one also points ``trainer.checkpointer`` at this call's
    checkpointer and clears ``trainer.stop_training``; :meth:`run` trains.
    """

    def __init__(
        self,
        trainer: Trainer,
        train_data: Data,
        *,
        epochs: int,
        batch_size: int,
        validation_data: Data | None,
        validation_batch_size: int | None,
        validation_every: int,
        shuffle: bool,
        seed: int,
        drop_remainder: bool,
        callbacks: Iterable[Callback],
        checkpoint: Checkpointer | str | os.PathLike[str] | None,
        resume: bool,
        progress: bool,
        log_every: int,
        history_dir: str | os.PathLike[str] | None,
    ):
        _check_counts(epochs=epochs, batch_size=batch_size, validation_every=validation_every, log_every=log_every)
        self.trainer = trainer
        self.train, self.valid, n = _fit_data(trainer, train_data, validation_data)
        self.num_examples, self.batches_per_epoch = n, n // batch_size if drop_remainder else -(-n // batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"train_data has {n} examples, fewer than batch_size={batch_size} with drop_remainder")
        self.epochs, self.batch_size, self.validation_every = epochs, batch_size, validation_every
        self.validation_batch_size = validation_batch_size or batch_size
        self.shuffle, self.seed = shuffle, seed
        self.progress, self.log_every, self.history_dir = progress, log_every, history_dir
        if checkpoint is not None and not isinstance(checkpoint, Checkpointer):
            checkpoint = Checkpointer(checkpoint)
        trainer.checkpointer = checkpoint
        self.callbacks = CallbackList(callbacks)
        trainer.stop_training = False  # a new call trains on; a resumed run takes the flag from its checkpoint
        settings = {
            "num_examples": self.num_examples,
            "batch_size": batch_size,
            "shuffle": bool(shuffle),
            "seed": int(seed),
            "drop_remainder": bool(drop_remainder),
            "tbptt": trainer.tbptt,
            "tbptt_update": trainer.tbptt_update,
        }
        if resume and checkpoint is None:
            raise ValueError("resume=True needs a checkpoint (a Checkpointer or a directory)")
        self.resume = resume
        self.checkpoints = None if checkpoint is None else FitCheckpoints(checkpoint, self.callbacks, settings)
        self.tqdm = _progress_bar()

    def run(self) -> History:
        """Trains until ``epochs`` epochs are done or a callback stops; returns the trainer's history."""
        trainer = self.trainer
        if self.resume:
            assert self.checkpoints is not None
            self.checkpoints.resume(trainer)
        self.callbacks.on_train_begin(trainer)
        while trainer.epoch < self.epochs and not trainer.stop_training:
            self._run_epoch()
        self._finish()
        return trainer.history

    def _run_epoch(self) -> None:
        """The rest of the current epoch, from ``trainer.position`` (a resume may start mid-epoch)."""
        trainer, epoch, size = self.trainer, self.trainer.epoch, self.batch_size
        order = epoch_order(self.num_examples, epoch, self.seed, self.shuffle)
        if trainer.position == 0:
            trainer._epoch_totals = {}
        self.callbacks.on_epoch_begin(trainer, epoch)
        bar = self.tqdm(
            total=self.batches_per_epoch,
            initial=trainer.position,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=True,
        )
        try:
            for i in range(trainer.position, self.batches_per_epoch):
                self._run_batch(i, order[i * size : (i + 1) * size], bar)
                if trainer.stop_training:
                    break
        finally:
            bar.close()

    def _run_batch(self, i: int, index: np.ndarray, bar: Any) -> None:
        """Batch ``i`` of the epoch (examples ``index``), then the epoch's end if it was the last, then a save."""
        trainer = self.trainer
        step_before = trainer.step
        metrics = trainer._run_step(device_batch(take(self.train, index)))
        trainer.position = i + 1
        self.callbacks.on_step_end(trainer, trainer.step, metrics)
        bar.update(1)
        last = trainer.position == self.batches_per_epoch
        if self.progress and (trainer.position % self.log_every == 0 or last):
            bar.set_postfix(_postfix(metrics, trainer._stat_names()), refresh=False)
        logs = None
        if last:
            logs = self._end_epoch()
            if self.progress:
                bar.set_postfix(_postfix(logs, list(logs)), refresh=True)
        if self.checkpoints is not None:
            self.checkpoints.after_step(trainer, step_before, logs)

    def _end_epoch(self) -> dict[str, float]:
        """Logs the epoch's exact train means and validation metrics; returns its history row."""
        trainer = self.trainer
        trainer._flush()
        epoch = trainer.epoch
        logs: dict[str, float] = {"epoch": epoch + 1, "step": trainer.step}
        logs.update({k: (t / c if c else math.nan) for k, (t, c) in trainer._epoch_totals.items()})
        if self.valid is not None and (epoch + 1) % self.validation_every == 0:
            scores = trainer._evaluate_arrays(self.valid, self.validation_batch_size)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        trainer.history.log_epoch(logs)
        trainer.epoch += 1
        trainer.position = 0
        trainer._epoch_totals = {}
        trainer.sync_model()
        self.callbacks.on_epoch_end(trainer, epoch, trainer.history.epochs[-1])
        if self.history_dir is not None:
            trainer.history.save(self.history_dir)
        return trainer.history.epochs[-1]

    def _finish(self) -> None:
        """After the last epoch or a stop: the last save, ``on_train_end``, the model and history files up to date."""
        trainer = self.trainer
        trainer._flush()
        if self.checkpoints is not None:
            self.checkpoints.at_end(trainer)
        self.callbacks.on_train_end(trainer)
        trainer.sync_model()
        if self.history_dir is not None:
            trainer.history.save(self.history_dir)


def _fit_data(
    trainer: Trainer, train_data: Data, validation_data: Data | None
) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
    """``(train, valid, N)``: the data as dicts of arrays, checked for the trainer's objective."""
    objective = trainer.objective
    train = as_data(train_data, "train_data", objective)
    valid = None if validation_data is None else as_data(validation_data, "validation_data", objective)
    n = num_examples(train, "train_data")
    if trainer.tbptt is not None:
        assert objective is not None
        check_streaming_batch(objective, train)
    return train, valid, n


def _check_counts(**counts: Any) -> None:
    """Every count is a positive int (``epochs=0`` would train nothing and return an empty history)."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _progress_bar() -> Any:
    """tqdm's notebook bar where it can draw (ipywidgets installed), else the console bar.

    ``tqdm.auto`` in a notebook without ipywidgets warns and falls back; this
    falls back without the warning.
    """
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        from tqdm.std import tqdm

        return tqdm
    from tqdm.auto import tqdm

    return tqdm


def _postfix(metrics: Mapping[str, Any], names: Sequence[str]) -> dict[str, str]:
    out = {}
    for k in names:
        if k in metrics and k not in ("epoch", "step"):
            v = np.asarray(metrics[k])
            out[k] = f"{float(v.reshape(-1)[-1]):.4g}"
    return out
