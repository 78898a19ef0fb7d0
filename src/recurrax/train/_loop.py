"""The loop of :meth:`~recurrax.train.Trainer.fit`: batches in order, validation, progress bar.

Everything one ``fit`` call owns lives in a :class:`FitLoop`: the data, the
settings, the callbacks and the checkpoints. The step itself, the history and
the loop position (``trainer.step``, ``trainer.epoch``, ``trainer.position``)
belong to the trainer, so a later call or a resume continues where it stopped.

The loop runs in *periods*, each ending with an evaluation row in
``history.epochs`` and ``on_epoch_end``: an epoch of the data with
``epochs=``, ``eval_every`` optimizer steps with ``steps=``. In step mode the
data read by a step follows from ``trainer.step`` alone (array data: epoch
``g // batches_per_epoch`` of the shuffled orders; a source: ``batch(g)``,
``g`` the batch count), so a resumed run reads what an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np

from recurrax.train._callback_list import CallbackList
from recurrax.train._callbacks import Callback
from recurrax.train._checkpoint import Checkpointer
from recurrax.train._data import (
    BatchSource,
    Data,
    as_data,
    epoch_order,
    is_source,
    num_examples,
    source_batch,
    stack,
    take,
)
from recurrax.train._distributed import is_primary, process_local_batch
from recurrax.train._fit_checkpoints import FitCheckpoints
from recurrax.train._history import History
from recurrax.train._pipeline import ArrayBatches, GrainPipeline, PipelineReader, SourceBatches
from recurrax.train._tbptt import check_streaming_batch

if TYPE_CHECKING:
    from recurrax.train._trainer import Trainer

logger = logging.getLogger(__name__)

# A batch's key: (data epoch, batch index in that epoch's order) for arrays; the batch index for a source.
BatchKey = tuple[int, int] | int


class FitLoop:
    """One call of ``trainer.fit(...)``: its arguments (checked here), data, callbacks and checkpoints.

    Building one also points ``trainer.checkpointer`` at this call's
    checkpointer and clears ``trainer.stop_training``; :meth:`run` trains.
    """

    def __init__(
        self,
        trainer: Trainer,
        train_data: Data | BatchSource,
        *,
        epochs: int | None,
        steps: int | None,
        eval_every: int | None,
        steps_per_call: int,
        batch_size: int,
        validation_data: Data | None,
        validation_batch_size: int | None,
        validation_every: int | None,
        shuffle: bool,
        seed: int,
        drop_remainder: bool,
        callbacks: Iterable[Callback],
        checkpoint: Checkpointer | str | os.PathLike[str] | None,
        async_checkpointing: bool = True,
        input_pipeline: GrainPipeline | None = None,
        resume: bool,
        progress: bool,
        log_every: int,
        history_dir: str | os.PathLike[str] | None,
    ):
        epochs, eval_every, validation_every = _check_length(epochs, steps, eval_every, validation_every)
        _check_counts(batch_size=batch_size, steps_per_call=steps_per_call, log_every=log_every)
        self.trainer = trainer
        objective = trainer.objective
        self.valid = None if validation_data is None else as_data(validation_data, "validation_data", objective)
        self.source: BatchSource | None = None
        self.train: dict[str, Any] | None = None
        self.num_examples: int | None = None
        if is_source(train_data):
            if steps is None:
                raise ValueError(
                    f"train_data is an endless batch source ({train_data!r}): it has no epochs; "
                    "train it for steps=N (validating every eval_every=K steps)"
                )
            self.source = train_data
            self.batches_per_epoch = 0
        else:
            self.train = as_data(train_data, "train_data", objective)
            n = self.num_examples = num_examples(self.train, "train_data")
            self.batches_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
            if self.batches_per_epoch == 0:
                raise ValueError(f"train_data has {n} examples, fewer than batch_size={batch_size} with drop_remainder")
        if trainer.partitioning is not None:  # checked here, before anything compiles or trains
            trainer.partitioning.check_batch_size(batch_size, f"batch_size={batch_size}")
            last = 0 if drop_remainder or self.num_examples is None else self.num_examples % batch_size
            trainer.partitioning.check_batch_size(
                last,
                f"the last batch of each epoch ({last} examples: train_data has {self.num_examples}, "
                f"batch_size={batch_size})",
                ", or pass drop_remainder=True",
            )
        self.epochs, self.steps, self.eval_every, self.validation_every = epochs, steps, eval_every, validation_every
        self.batch_size, self.steps_per_call = batch_size, steps_per_call
        self.validation_batch_size = validation_batch_size or batch_size
        self.shuffle, self.seed = shuffle, seed
        # Several processes train as one run: process 0 alone draws the bar and writes the history files.
        self.primary = is_primary()
        self.progress, self.log_every, self.history_dir = progress and self.primary, log_every, history_dir
        self._orders: dict[int, np.ndarray] = {}
        self._first = self._batch((0, 0) if self.source is None else 0)
        if trainer.tbptt is not None:
            assert objective is not None
            check_streaming_batch(objective, self._first if self.train is None else self.train)
        self.steps_per_batch = self._check_steps_per_batch()
        if checkpoint is not None and not isinstance(checkpoint, Checkpointer):
            checkpoint = Checkpointer(checkpoint)
        trainer.checkpointer = checkpoint
        self.callbacks = CallbackList(callbacks)
        trainer.stop_training = False  # a new call trains on; a resumed run takes the flag from its checkpoint
        settings: dict[str, Any] = {
            "num_examples": self.num_examples,
            "batch_size": batch_size,
            "shuffle": bool(shuffle),
            "seed": int(seed),
            "drop_remainder": bool(drop_remainder),
            "tbptt": trainer.tbptt,
            "tbptt_update": trainer.tbptt_update,
        }
        if steps is not None:  # absent in epoch mode, so that checkpoints of earlier versions still resume
            settings["eval_every"] = eval_every
        if self.source is not None:
            settings["train_source"] = repr(self.source)
        if resume and checkpoint is None:
            raise ValueError("resume=True needs a checkpoint (a Checkpointer or a directory)")
        if not isinstance(async_checkpointing, bool):
            raise TypeError(f"async_checkpointing must be True or False, got {async_checkpointing!r}")
        self.resume = resume
        self.checkpoints = None
        if checkpoint is not None:
            self.checkpoints = FitCheckpoints(checkpoint, self.callbacks, settings, asynchronous=async_checkpointing)
        self.pipeline = self._check_pipeline(input_pipeline)
        self.reader: PipelineReader | None = None
        # The next call's batches, put on the device right after the current call is dispatched (see _run_call).
        self._ahead: _Ahead | None = None
        self.tqdm = _progress_bar()

    def output_check_data(self) -> dict[str, Any]:
        """What the model's outputs are checked against: all training arrays, or a source's first batch."""
        return self._first if self.train is None else self.train

    def run(self) -> History:
        """Trains until the epochs or steps are done or a callback stops; returns the trainer's history."""
        trainer = self.trainer
        if self.resume:
            assert self.checkpoints is not None
            saved = self.checkpoints.checkpointer.latest_step()
            self.checkpoints.resume(trainer)
            if saved is None:
                logger.info("no checkpoint in %s yet: training from the start", self.checkpoints.checkpointer.directory)
            else:
                logger.info(
                    "resumed from the checkpoint of step %d (epoch %d, %d batches into it)",
                    trainer.step,
                    trainer.epoch + 1,
                    trainer.position,
                )
        try:
            if self.pipeline is not None:
                self._open_pipeline()
            self.callbacks.on_train_begin(trainer)
            if self.steps is None:
                while trainer.epoch < self.epochs and not trainer.stop_training:
                    self._run_epoch()
            else:
                self._run_steps()
            self._finish()
        finally:  # also when a callback or a non-finite loss stops the run: the save in flight completes
            if self.checkpoints is not None:
                self.checkpoints.finish()
            if self.reader is not None:
                self.reader.close()
        return trainer.history

    # ------------------------------------------------------------ epoch mode
    def _run_epoch(self) -> None:
        """The rest of the current epoch, from ``trainer.position`` (a resume may start mid-epoch)."""
        trainer, epoch = self.trainer, self.trainer.epoch
        self._begin_period()
        bar = self.tqdm(
            total=self.batches_per_epoch,
            initial=trainer.position,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=True,
        )
        try:
            while trainer.epoch == epoch and not trainer.stop_training:  # the epoch's end resets position to 0
                keys = self._call_keys((epoch, i) for i in range(trainer.position, self.batches_per_epoch))
                before = trainer.step
                self._run_call(keys)
                bar.update(len(keys))
                self._log_or_end(before, trainer.position == self.batches_per_epoch, bar)
        finally:
            bar.close()

    # ------------------------------------------------------------- step mode
    def _run_steps(self) -> None:
        """Periods of ``eval_every`` steps (the last one may be shorter) until ``steps``."""
        trainer, every, last = self.trainer, self.eval_every, self.steps
        assert every is not None and last is not None
        bar = self.tqdm(
            total=last,
            initial=min(trainer.step, last),
            desc="steps",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=True,
        )
        try:
            while trainer.step < last and not trainer.stop_training:
                end = min((trainer.step // every + 1) * every, last)
                self._begin_period()
                while trainer.step < end and not trainer.stop_training:
                    first = trainer.step // self.steps_per_batch
                    keys = self._call_keys(self._step_key(g) for g in range(first, end // self.steps_per_batch))
                    before = trainer.step
                    self._run_call(keys)
                    bar.update(trainer.step - before)
                    self._log_or_end(before, trainer.step == end, bar)
        finally:
            bar.close()

    def _step_key(self, g: int) -> BatchKey:
        """The key of the ``g``-th batch of a step-mode run (0-based)."""
        if self.source is not None:
            return g
        return divmod(g, self.batches_per_epoch)

    # ---------------------------------------------------------------- shared
    def _begin_period(self) -> None:
        trainer = self.trainer
        if trainer.position == 0:
            trainer._epoch_totals = {}
        self.callbacks.on_epoch_begin(trainer, trainer.epoch)

    def _call_keys(self, keys: Iterable[BatchKey]) -> list[BatchKey]:
        """The batches of the next device call: of ``keys``, those up to the next multiple of
        ``steps_per_call`` in the step count, all of one size.

        Calls end at multiples of ``steps_per_call`` (or earlier, at a period's
        end or a smaller batch), so a run resumed from any checkpoint makes the
        same calls as an uninterrupted one.
        """
        room = self.steps_per_call - self.trainer.step % self.steps_per_call
        out: list[BatchKey] = []
        for key in keys:
            if len(out) == room or (out and self._size(key) != self._size(out[0])):
                break
            out.append(key)
        return out

    def _run_call(self, keys: list[BatchKey]) -> None:
        """One device call over the batches ``keys``, then ``on_step_end`` for each of its steps."""
        trainer = self.trainer
        before = trainer.step
        if len(keys) == 1:
            batch = self._call_batch(keys)
            metrics = trainer._run_step(batch, _BatchLabel(self, keys[0]))
            trainer.position += 1
            self._put_ahead()
            self.callbacks.on_step_end(trainer, trainer.step, metrics)
            return
        batches = self._call_batch(keys)
        stacked = trainer._run_steps(batches, [_BatchLabel(self, k) for k in keys])
        trainer.position += len(keys)
        self._put_ahead()
        if self.callbacks.callbacks:
            for i in range(len(keys)):
                self.callbacks.on_step_end(trainer, before + i + 1, _StepMetrics(stacked, i))

    def _log_or_end(self, before: int, ends_period: bool, bar: Any) -> None:
        """After a call from step ``before``: the host reads the metrics every ``log_every`` steps
        (and checks the loss); the period's end; a save."""
        trainer = self.trainer
        logs = None
        if ends_period:
            logs = self._end_period()
            if self.progress:
                bar.set_postfix(_postfix(logs, list(logs)), refresh=True)
        elif trainer.step // self.log_every > before // self.log_every:
            trainer._flush()
            if self.progress and trainer.history.steps:
                bar.set_postfix(_postfix(trainer.history.steps[-1], trainer._stat_names()), refresh=False)
        if self.checkpoints is not None:
            self.checkpoints.after_step(trainer, before, logs)

    def _end_period(self) -> dict[str, float]:
        """Logs the period's exact train means and validation metrics; returns its history row."""
        trainer = self.trainer
        trainer._flush()
        epoch = trainer.epoch
        logs: dict[str, float] = {"epoch": epoch + 1, "step": trainer.step}
        logs.update({k: (t / c if c else math.nan) for k, (t, c) in trainer._epoch_totals.items()})
        if self.valid is not None and (self.steps is not None or (epoch + 1) % self.validation_every == 0):
            scores = trainer._evaluate_arrays(self.valid, self.validation_batch_size)
            logs.update({f"val_{k}": v for k, v in scores.items()})
        trainer.history.log_epoch(logs)
        trainer.epoch += 1
        trainer.position = 0
        trainer._epoch_totals = {}
        trainer.sync_model()
        if self.primary and logger.isEnabledFor(logging.INFO):
            logger.info("%s", self._period_line(trainer.history.epochs[-1]))
        self.callbacks.on_epoch_end(trainer, epoch, trainer.history.epochs[-1])
        if self.history_dir is not None and self.primary:
            trainer.history.save(self.history_dir)
        return trainer.history.epochs[-1]

    def _period_line(self, row: Mapping[str, float]) -> str:
        """One line per evaluation row, as Keras's ``verbose=2``: ``epoch 3/20 (step 60): loss 0.4123, ...``."""
        if self.steps is None:
            where = f"epoch {row['epoch']}/{self.epochs} (step {row['step']})"
        else:
            where = f"step {row['step']}/{self.steps}"
        values = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step"))
        return f"{where}: {values}"

    def _finish(self) -> None:
        """After the last period or a stop: the last save, ``on_train_end``, the model and history files up to date."""
        trainer = self.trainer
        trainer._flush()
        if self.checkpoints is not None:
            self.checkpoints.at_end(trainer)
        self.callbacks.on_train_end(trainer)
        trainer.sync_model()
        if self.history_dir is not None and self.primary:
            trainer.history.save(self.history_dir)

    # ------------------------------------------------------------------ data
    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            assert self.num_examples is not None
            self._orders = {epoch: epoch_order(self.num_examples, epoch, self.seed, self.shuffle)}
        return self._orders[epoch]

    def _index(self, key: BatchKey) -> np.ndarray:
        epoch, i = key  # type: ignore[misc]
        return self._order(epoch)[i * self.batch_size : (i + 1) * self.batch_size]

    def _size(self, key: BatchKey) -> int:
        if self.source is not None:
            return self.batch_size
        assert self.num_examples is not None
        return min(self.batch_size, self.num_examples - key[1] * self.batch_size)  # type: ignore[index]

    def _batch(self, key: BatchKey) -> dict[str, Any]:
        if self.source is not None:
            return source_batch(self.source, key, self.batch_size, self.trainer.objective)  # type: ignore[arg-type]
        assert self.train is not None
        return take(self.train, self._index(key))

    # ------------------------------------------------- one device batch ahead
    def _call_batch(self, keys: list[BatchKey]) -> dict[str, Any]:
        """The device batch of the call over ``keys``: the one put on the device ahead, else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead.keys == keys:
            return ahead.batch
        return self._read_call(keys)

    def _put_ahead(self) -> None:
        """Reads the next call's batches and starts their transfer while the device runs the call just
        dispatched, before the host waits on anything (the metric reads, a checkpoint), so that the
        next step's dispatch never waits for host work. A batch read for a step that a stop never runs
        is dropped; the pipeline state saved with a checkpoint is the one from before it."""
        keys = self._next_call_keys()
        if keys:
            state = None if self.reader is None else self.reader.state()
            self._ahead = _Ahead(keys, self._read_call(keys), state)

    def _next_call_keys(self) -> list[BatchKey]:
        """The keys of the call that the loop makes next, if it goes on (the same rule as the loop's)."""
        trainer = self.trainer
        if self.steps is None:
            epoch, position = trainer.epoch, trainer.position
            if position == self.batches_per_epoch:
                epoch, position = epoch + 1, 0
            if epoch >= self.epochs:
                return []
            return self._call_keys((epoch, i) for i in range(position, self.batches_per_epoch))
        assert self.eval_every is not None
        if trainer.step >= self.steps:
            return []
        end = min((trainer.step // self.eval_every + 1) * self.eval_every, self.steps)
        first = trainer.step // self.steps_per_batch
        return self._call_keys(self._step_key(g) for g in range(first, end // self.steps_per_batch))

    def _read_call(self, keys: list[BatchKey]) -> dict[str, Any]:
        """The batches of ``keys`` on the device(s): from the grain pipeline, if there is one."""
        if self.reader is None:
            return self._device_batch(keys)
        local = [self.reader.read(self._batch_number(k)) for k in keys]
        stacked = len(keys) > 1
        batch = stack(local) if stacked else local[0]
        if self.pipeline is not None and self.pipeline.shard()[1] > 1:  # this process's block of the rows
            assert self.trainer.partitioning is not None
            sharding = self.trainer.partitioning.batch_sharding(stacked=stacked)
            return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
        return self.trainer._device_batch(batch, "a training batch", stacked=stacked)

    # ------------------------------------------------------- grain pipeline
    def _check_pipeline(self, pipeline: GrainPipeline | None) -> GrainPipeline | None:
        if pipeline is None:
            return None
        if not isinstance(pipeline, GrainPipeline):
            raise TypeError(f"input_pipeline must be a recurrax.train.GrainPipeline or None, got {pipeline!r}")
        processes = pipeline.shard()[1]
        if processes > 1 and self.trainer.partitioning is None:
            raise ValueError(
                f"input_pipeline reads this process's share of each batch (process_count={processes}): the "
                "trainer needs a partitioning over every process's devices to join the shares"
            )
        if processes != jax.process_count():
            raise ValueError(
                f"input_pipeline has process_count={processes}, but this run has {jax.process_count()} process(es)"
            )
        return pipeline

    def _batch_number(self, key: BatchKey) -> int:
        """``g``: how many batches the run reads before the batch ``key``."""
        if isinstance(key, int):
            return key
        epoch, i = key
        return epoch * self.batches_per_epoch + i

    def _open_pipeline(self) -> None:
        """Starts the grain reader at the trainer's batch, from a resumed checkpoint's iterator state if it has one."""
        trainer, pipeline = self.trainer, self.pipeline
        assert pipeline is not None
        read: Any
        if self.source is not None:
            source, objective, size = self.source, trainer.objective, self.batch_size
            read = SourceBatches(lambda g: source_batch(source, g, size, objective), size, pipeline)
        else:
            assert self.train is not None and self.num_examples is not None
            read = ArrayBatches(
                self.train,
                num_examples=self.num_examples,
                batch_size=self.batch_size,
                per_epoch=self.batches_per_epoch,
                seed=self.seed,
                shuffle=self.shuffle,
                pipeline=pipeline,
            )
        if self.steps is None:
            total, now = self.epochs * self.batches_per_epoch, trainer.epoch * self.batches_per_epoch + trainer.position
        else:
            total, now = self.steps // self.steps_per_batch, trainer.step // self.steps_per_batch
        self.reader = PipelineReader(read, max(total, now), pipeline)  # a resume past the end trains nothing
        saved = None if self.checkpoints is None else self.checkpoints.restored_input
        if saved is not None:
            assert self.checkpoints is not None
            self.reader.restore(saved, now, f"the checkpoint of step {trainer.step}")
        else:
            self.reader.seek(now)
        if self.checkpoints is not None:
            self.checkpoints.input_state = self._pipeline_state

    def _pipeline_state(self) -> dict[str, Any] | None:
        """The grain iterator's state at the trainer's position (before a batch read ahead)."""
        if self._ahead is not None:
            return self._ahead.state
        return None if self.reader is None else self.reader.state()

    def _device_batch(self, keys: list[BatchKey]) -> dict[str, Any]:
        """The batch of ``keys`` on the device(s), stacked ``[S, B, ...]`` when there are several.

        With a partitioning and array data, each device's rows are read for it
        alone (:func:`process_local_batch`): a process of a multi-process run
        never holds the rows of another process's devices.
        """
        stacked = len(keys) > 1
        part = self.trainer.partitioning
        if part is None or self.train is None:
            batch = self._stacked(keys) if stacked else self._batch(keys[0])
            return self.trainer._device_batch(batch, "a training batch", stacked=stacked)
        rows = np.stack([self._index(k) for k in keys]) if stacked else self._index(keys[0])
        return process_local_batch(self.train, rows, part.batch_sharding(stacked=stacked))

    def _stacked(self, keys: list[BatchKey]) -> dict[str, Any]:
        """The batches ``keys`` stacked, ``[S, B, ...]``."""
        if self.source is not None:
            return stack([self._batch(k) for k in keys])
        assert self.train is not None
        return take(self.train, np.stack([self._index(k) for k in keys]))

    def describe(self, key: BatchKey) -> str:
        """The batch ``key`` in words, for an error: enough to find it again."""
        if self.source is not None:
            return f"batch index {key} of the source (train_data.batch({key}, {self.batch_size}))"
        epoch, i = key  # type: ignore[misc]
        return f"batch index {i} of epoch {epoch + 1} (examples {self._index(key).tolist()})"

    def _check_steps_per_batch(self) -> int:
        """Optimizer steps per batch (more than 1 for streaming TBPTT), checked against the step settings."""
        trainer = self.trainer
        assert trainer._config is not None
        per_batch = trainer._config.steps_per_batch(self._first)
        if per_batch > 1 and self.steps_per_call > 1:
            raise ValueError(
                f"steps_per_call={self.steps_per_call} needs one optimizer step per batch; tbptt_update='chunk' "
                "already runs a batch's chunk steps in one device call (use steps_per_call=1)"
            )
        for name in ("steps", "eval_every"):
            value = getattr(self, name)
            if self.steps is not None and value % per_batch:
                raise ValueError(
                    f"{name}={value} must be a multiple of the {per_batch} optimizer steps each batch takes "
                    f"with tbptt_update='chunk'"
                )
        return per_batch


class _Ahead(NamedTuple):
    """A call's batches read and put on the device ahead of it, and the pipeline state from before them."""

    keys: list[BatchKey]
    batch: dict[str, Any]
    state: dict[str, Any] | None


class _BatchLabel:
    """A batch named for an error message; the words are made only if the message is."""

    def __init__(self, loop: FitLoop, key: BatchKey):
        self._loop, self._key = loop, key

    def __str__(self) -> str:
        return self._loop.describe(self._key)


class _StepMetrics(Mapping[str, Any]):
    """Step ``i``'s metrics of a multi-step call, sliced from the ``[S]`` arrays only when read."""

    def __init__(self, metrics: Mapping[str, Any], i: int):
        self._metrics, self._i = metrics, i

    def __getitem__(self, key: str) -> Any:
        return self._metrics[key][self._i]

    def __iter__(self) -> Iterator[str]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)


def _check_length(
    epochs: int | None, steps: int | None, eval_every: int | None, validation_every: int | None
) -> tuple[int, int | None, int]:
    """``(epochs, eval_every, validation_every)`` with defaults, checked: ``epochs`` or ``steps``, not both."""
    if epochs is not None and steps is not None:
        raise ValueError(f"pass epochs or steps, not both (got epochs={epochs!r}, steps={steps!r})")
    if steps is None:
        if eval_every is not None:
            raise ValueError(
                f"eval_every counts steps and goes with steps=N (got eval_every={eval_every!r} and no steps); "
                "with epochs, validation_every counts epochs"
            )
        epochs = 1 if epochs is None else epochs
        validation_every = 1 if validation_every is None else validation_every
        _check_counts(epochs=epochs, validation_every=validation_every)
        return epochs, None, validation_every
    if validation_every is not None:
        raise ValueError(
            f"validation_every counts epochs (got {validation_every!r}); with steps=N validation runs every "
            "eval_every steps"
        )
    eval_every = steps if eval_every is None else eval_every
    _check_counts(steps=steps, eval_every=eval_every)
    return 0, eval_every, 1


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
