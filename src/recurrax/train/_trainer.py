"""The Trainer: an NNX model trained by a jitted step, evaluated and predicted in eval mode.

The model is split once into a graph definition and pure states (parameters
and "the rest": dropout RNG counts, batch statistics); the step is a pure
function of those states, jitted once. ``trainer.model`` is brought up to date
at the end of every epoch and on :meth:`Trainer.sync_model`. The epoch loop
of :meth:`Trainer.fit` is in ``_loop.py``, its checkpoints in ``_fit_checkpoints.py``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import numpy as np
import optax
from flax import nnx

from recurrax._precision import Precision, precision_policy
from recurrax.nn._precision import apply_precision
from recurrax.train._callbacks import Callback
from recurrax.train._checkpoint import Checkpointer
from recurrax.train._data import BatchSource, Data, as_data, device_batch, in_order, num_examples, take
from recurrax.train._diagnostics import layer_names
from recurrax.train._distributed import fully_addressable
from recurrax.train._history import History
from recurrax.train._local_sgd import check_local_sgd
from recurrax.train._loop import FitLoop
from recurrax.train._loss_scale import with_loss_scaling
from recurrax.train._losses import ValueFn
from recurrax.train._objective import (
    LossFn,
    Objective,
    ObjectiveFn,
    Stats,
    as_objective,
    split_params,
    stats_from_loss_fn,
)
from recurrax.train._optimizers import standard_promotion
from recurrax.train._partitioning import Partitioning, on_one_device
from recurrax.train._pipeline import GrainPipeline
from recurrax.train._step import StepConfig, eval_batch, predict_batch, train_batch, train_batches
from recurrax.train._tbptt import check_chunk_size, check_streaming_batch

Array = jax.Array
_DIAGNOSTIC_KEYS = (
    "grad_norm",
    "update_norm",
    "param_norm",
    "nonfinite",
    "clipped_grad_norm",
    "clipped",
    "nonfinite_count",
    "loss_scale",
    "loss_scale_skipped",
)


class _Pending(NamedTuple):
    """A device call's results not yet read by the host: steps ``first..last``, run in ``epoch``."""

    first: int
    last: int
    epoch: int
    metrics: dict[str, Array]
    stats: Stats
    stacked: bool  # stats per batch (leading axis), from a multi-step call
    labels: tuple[object, ...]  # the batches, named (by str()) for an error


def _check_finite_loss(entry: _Pending) -> None:
    """Raises ``FloatingPointError`` naming the step and batch of ``entry``'s first non-finite loss."""
    if "loss" not in entry.stats:
        return
    totals = np.atleast_1d(np.asarray(entry.stats["loss"][0], np.float64))
    bad = np.flatnonzero(~np.isfinite(totals))
    if not bad.size:
        return
    i = int(bad[0])
    if entry.stacked:
        where, label = f"step {entry.first + i}", entry.labels[i]
    elif entry.first == entry.last:
        where, label = f"step {entry.first}", entry.labels[0]
    else:  # streaming TBPTT: one batch, one step per chunk
        where, label = f"steps {entry.first}-{entry.last} (the chunks of one batch)", entry.labels[0]
    raise FloatingPointError(
        f"the training loss is {float(totals[i])} at {where}, on {label}; training stopped (the parameters "
        "hold the steps run so far). Lower the learning rate or clip the gradients (build_optimizer(..., "
        "clip_norm=...)), or skip such steps with build_optimizer(..., skip_nonfinite=True)"
    )


class Trainer:
    """Trains an NNX model with an optax optimizer; evaluates and predicts with it.

    Args:
      model: an ``nnx.Module``. Trained in train mode (``model.train()``:
        dropout on, drawing from its ``"dropout"`` RNG stream), evaluated in
        eval mode; the module is left in eval mode, its weights updated in place.
      optimizer: an ``optax.GradientTransformation`` (e.g. from
        :func:`~recurrax.train.build_optimizer`), or None to only evaluate/predict.
      loss: a loss name, a function ``(predictions, targets) -> [B] or [B, T]``,
        or an :class:`~recurrax.train.Objective`.
      metrics: metric names or ``{name: function}``, reported with the loss.
      loss_fn: instead of ``loss``/``metrics``, any ``loss_fn(model, batch) ->
        loss | (loss, {name: value})`` (batch means).
      tbptt: a chunk size for truncated backpropagation through time; the model
        must be a streaming model (see :func:`~recurrax.train.tbptt_value_and_grad`).
      tbptt_update: ``"chunk"``: one optimizer step per chunk (streaming
        training: the weights move as the sequence goes); ``"sequence"``: one
        step per batch with the chunk gradients summed.
      diagnostics: compute the gradient diagnostics every step (and per layer).
      partitioning: a :class:`~recurrax.train.Partitioning` to train data
        parallel (or FSDP) over a device mesh; None: one device. Each training
        batch is split over its axis (batch sizes must be multiples of the axis
        size); the loss, metrics and diagnostics are those of the whole batch.
        ``trainer.model`` gets ordinary one-device arrays on :meth:`sync_model`.
      precision: a mixed-precision policy (a :class:`~recurrax.Precision`, a
        name such as ``"bf16"`` or ``"fp16"``, or a jmp-style string): put on
        every layer of ``model`` (:func:`~recurrax.nn.apply_precision`), the
        predictions cast to its output dtype before the loss; with float16
        compute the optimizer gets :func:`~recurrax.train.dynamic_loss_scale`
        unless it has it already (the history then logs ``loss_scale`` and
        ``loss_scale_skipped``). None: the model as it is.

    Example:
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> from flax import nnx
      >>> model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
      >>> data = {"inputs": np.ones((8, 3), np.float32), "targets": np.zeros((8, 1), np.float32)}
      >>> trainer = Trainer(model, optax.sgd(0.1))
      >>> history = trainer.fit(data, epochs=2, batch_size=4, progress=False)
      >>> len(history.steps), len(history.epochs)
      (4, 2)
    """

    def __init__(
        self,
        model: nnx.Module,
        optimizer: optax.GradientTransformation | None,
        *,
        loss: str | ValueFn | Objective = "mse",
        metrics: Sequence[str] | Mapping[str, ValueFn] = (),
        loss_fn: LossFn | None = None,
        tbptt: int | None = None,
        tbptt_update: Literal["chunk", "sequence"] = "chunk",
        diagnostics: bool = True,
        partitioning: Partitioning | None = None,
        precision: str | Precision | None = None,
    ):
        if not isinstance(model, nnx.Module):
            raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"optimizer must be an optax.GradientTransformation or None, got {optimizer!r}")
        self.objective, self._objective_fn = _objective_of(loss, metrics, loss_fn, tbptt, diagnostics)
        self.precision = None if precision is None else precision_policy(precision)
        if self.precision is not None:
            apply_precision(model, self.precision)
            if self.objective is not None:
                self.objective = dataclasses.replace(self.objective, output_dtype=self.precision.output_dtype)
                self._objective_fn = self.objective
        if tbptt is not None:
            check_chunk_size(tbptt)
        if tbptt_update not in ("chunk", "sequence"):
            raise ValueError(f"tbptt_update must be 'chunk' or 'sequence', got {tbptt_update!r}")
        if partitioning is not None and not isinstance(partitioning, Partitioning):
            raise TypeError(f"partitioning must be a recurrax.train.Partitioning or None, got {partitioning!r}")
        self.partitioning = partitioning
        self.model = model
        self.optimizer = optimizer
        self.tbptt, self.tbptt_update, self.diagnostics = tbptt, tbptt_update, diagnostics

        model.train()
        self._graphdef_train, params, rest = split_params(model)
        model.eval()
        self._graphdef_eval = nnx.split(model, nnx.Param, ...)[0]
        self.params, self.rest = self._placed(nnx.as_pure(params), nnx.as_pure(rest))
        check_local_sgd(
            optimizer, tbptt=tbptt, loss_scaling=self.precision is not None and self.precision.needs_loss_scaling
        )
        if optimizer is not None and self.precision is not None and self.precision.needs_loss_scaling:
            if tbptt is not None:
                raise ValueError(
                    f"precision {self.precision} (float16 compute) needs loss scaling, which truncated BPTT "
                    "(tbptt=...) does not support yet; use precision='bf16'"
                )
            optimizer = self.optimizer = with_loss_scaling(optimizer, self.params)
        self.opt_state = None
        self._config: StepConfig | None = None
        if optimizer is not None:
            init = standard_promotion(optimizer).init
            self.opt_state = init(self.params) if partitioning is None else partitioning.init_state(init, self.params)
            layers = tuple(layer_names(model)) if diagnostics else None
            self._config = StepConfig(
                self._graphdef_train, optimizer, self._objective_fn, layers, tbptt, tbptt_update, partitioning
            )

        self.step = 0
        self.epoch = 0
        self.position = 0
        self.history = History()
        self.stop_training = False
        self.checkpointer: Checkpointer | None = None
        # The epoch means are exact: the jitted step returns each batch's (total, count) (masked_total,
        # the math of flax.nnx.metrics.Average.update(values, mask)) and the host adds them as Python
        # floats. Kept over nnx.metrics (benchmarks/metric_aggregation.py, on the 2-core CPU machine):
        # eager Average updates cost 2.2 ms per batch and jitted ones 1.8 ms, against 0.8 us here and
        # ~1.2 ms for a whole tiny-GRU step; Average's float32 total drifts (2.8e-6 relative over an
        # epoch of 164M tokens) where these sums keep the history's means and resumes bit-exact; and
        # Average.compute() raises under strict dtype promotion (float32 / int32).
        # tests/train/test_train_metric_aggregation.py holds the last two.
        self._epoch_totals: dict[str, list[float]] = {}
        self._pending: list[_Pending] = []
        # optax.apply_if_finite (build_optimizer's skip_nonfinite) skips NaN/Inf updates; without it a
        # non-finite loss stops training (see _flush).
        self._guarded = self.opt_state is not None and optax.tree.get(self.opt_state, "total_notfinite") is not None

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, Array]:
        """One jitted optimizer step (or one per chunk with ``tbptt``) on ``batch``; returns its metrics.

        For research loops that do their own batching; the step is counted and
        logged to the history like a step of :meth:`fit`.
        """
        self._require_optimizer()
        batch = self._device_batch(batch, "the batch given to train_step")
        if self.tbptt is not None:
            assert self.objective is not None
            check_streaming_batch(self.objective, batch)
        metrics = self._run_step(batch)
        self._flush()
        return metrics

    def _device_batch(self, batch: Mapping[str, Any], name: str, *, stacked: bool = False) -> dict[str, Array]:
        """A training batch (``[S, B, ...]`` stacked) on the device(s): split over the partitioning's axis,
        whose size must divide ``B`` (else a ``ValueError`` naming ``name``)."""
        if self.partitioning is None:
            return device_batch(batch)
        return self.partitioning.place_batch(batch, name, stacked=stacked)

    def _eval_batches(self, data: Mapping[str, Any], batch_size: int) -> Iterable[dict[str, Array]]:
        n = num_examples(data, "data")
        if self.partitioning is None:
            return in_order(data, n, batch_size)
        part = self.partitioning
        return (part.place_eval_batch(b) for b in in_order(data, n, batch_size))

    def _placed(self, params: Any, rest: Any) -> tuple[Any, Any]:
        """``(params, rest)`` onto the partitioning's shardings (unchanged without one)."""
        if self.partitioning is None:
            return params, rest
        return self.partitioning.place_state(params), self.partitioning.place_replicated(rest)

    def _set_opt_state(self, opt_state: Any) -> None:
        part = self.partitioning
        self.opt_state = opt_state if part is None or opt_state is None else part.place_state(opt_state)

    def _run_step(self, batch: dict[str, Array], label: object = "the batch given to train_step") -> dict[str, Array]:
        """One batch's optimizer step(s); ``label`` names the batch in a non-finite-loss error."""
        assert self._config is not None
        metrics: dict[str, Array]
        self.params, self.rest, self.opt_state, metrics, stats = train_batch(
            self._config, self.params, self.rest, self.opt_state, batch
        )
        first = self.step + 1
        self.step += self._config.steps_per_batch(batch)
        self._pending.append(_Pending(first, self.step, self.epoch, metrics, stats, False, (label,)))
        return metrics

    def _run_steps(self, batches: dict[str, Array], labels: Sequence[object]) -> dict[str, Array]:
        """One optimizer step per batch of the stacked ``batches`` ``[S, B, ...]``, in one device call.

        Returns the metrics per step, ``[S]`` each; ``labels`` name the batches.
        """
        assert self._config is not None
        metrics: dict[str, Array]
        self.params, self.rest, self.opt_state, metrics, stats = train_batches(
            self._config, self.params, self.rest, self.opt_state, batches
        )
        first = self.step + 1
        self.step += len(labels)
        self._pending.append(_Pending(first, self.step, self.epoch, metrics, stats, True, tuple(labels)))
        return metrics

    def _flush(self) -> None:
        """Moves pending device metrics into the history and the epoch sums (one device transfer).

        Without a non-finite guard in the optimizer, a NaN/Inf training loss
        raises ``FloatingPointError`` here, after its rows are logged.
        """
        if not self._pending:
            return
        pending, self._pending = jax.device_get(self._pending), []
        for entry in pending:
            metrics = entry.metrics
            for i, step in enumerate(range(entry.first, entry.last + 1)):
                row: dict[str, Any] = {"step": step, "epoch": entry.epoch + 1}  # epochs count from 1, as epoch rows
                for k in [*(n for n in self._stat_names() if n in metrics), *metrics]:
                    row.setdefault(k, metrics[k][i] if np.ndim(metrics[k]) else metrics[k])
                self.history.log_step(row)
            # Per batch, in order, so that the sums do not depend on how many batches one call ran.
            per_batch = [entry.stats]
            if entry.stacked:
                per_batch = [jax.tree.map(lambda a, i=i: a[i], entry.stats) for i in range(len(entry.labels))]
            for stats in per_batch:
                for name, (total, count) in stats.items():
                    acc = self._epoch_totals.setdefault(name, [0.0, 0.0])
                    acc[0] += float(total)
                    acc[1] += float(count)
        if not self._guarded:
            for entry in pending:
                _check_finite_loss(entry)

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        train_data: Data | BatchSource,
        *,
        epochs: int | None = None,
        steps: int | None = None,
        eval_every: int | None = None,
        steps_per_call: int = 1,
        batch_size: int = 32,
        validation_data: Data | None = None,
        validation_batch_size: int | None = None,
        validation_every: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = False,
        callbacks: Iterable[Callback] = (),
        checkpoint: Checkpointer | str | os.PathLike[str] | None = None,
        async_checkpointing: bool = True,
        input_pipeline: GrainPipeline | None = None,
        resume: bool = False,
        progress: bool = True,
        log_every: int = 10,
        history_dir: str | os.PathLike[str] | None = None,
    ) -> History:
        """Trains until ``epochs`` epochs or ``steps`` steps are done (counting any done before a resume).

        Args:
          train_data: ``{"inputs": [N, T, D], "targets": [N, ...], "lengths": [N]}``
            (lengths optional), or an object with those attributes (a task split),
            or an endless :class:`~recurrax.train.BatchSource` (fresh data per
            batch; needs ``steps``).
          epochs: the total number of epochs (1 when neither ``epochs`` nor ``steps`` is given).
          steps: instead of ``epochs``, the total number of optimizer steps.
          eval_every: with ``steps``: validate (and log an evaluation row to
            ``history.epochs``, call ``on_epoch_end``) every ``eval_every`` steps
            and at the last step; default ``steps``.
          steps_per_call: optimizer steps per device call (a ``lax.scan`` over
            that many batches), so a small model is not held back by one host
            round trip per step. The same computation as ``steps_per_call=1``
            (parameters bit-identical in the tests on jax 0.10 and 0.12;
            XLA may fuse a reported diagnostic differently, by an ulp).
          batch_size: examples per step.
          validation_data: evaluated after every ``validation_every`` epochs
            (default 1; with ``steps``: every ``eval_every`` steps); its metrics
            are logged as ``val_<name>``.
          shuffle, seed: the example order of epoch ``e`` is a permutation drawn
            from ``(seed, e)``, so it is the same after a resume.
          drop_remainder: skip the last, smaller batch of each epoch.
          callbacks: :class:`~recurrax.train.Callback` objects (e.g. :class:`EarlyStopping`).
          checkpoint: a :class:`~recurrax.train.Checkpointer` (or a directory for
            one with default settings): saves every ``every_steps``, at each new
            best ``monitor`` value, and at the end.
          async_checkpointing: a save returns once the state is copied off the
            device and its files are written while training goes on; the next
            save and the end of ``fit`` wait for it. A run killed mid-write
            resumes from the newest complete checkpoint. False: each save
            blocks until it is on disk.
          input_pipeline: a :class:`~recurrax.train.GrainPipeline` to read the
            training batches through grain: the same batches in the same order,
            gathered ahead by background threads, this process's rows only,
            and the reader's state saved with each checkpoint. None: read in
            this thread (the batches of one call ahead of the device either way).
          resume: continue from the checkpointer's latest checkpoint, if any;
            the result is bit-identical to a run that was never interrupted.
          progress: show a tqdm bar with the live loss and metrics.
          log_every: steps between progress-bar updates and reads of the
            metrics by the host (each one waits for the device). Without
            ``skip_nonfinite`` in the optimizer, a NaN/Inf loss found there
            raises ``FloatingPointError`` naming its step and batch.
          history_dir: write ``history.json`` and CSVs there after every epoch.

        Returns:
          The :class:`~recurrax.train.History` (also ``trainer.history``).
        """
        self._require_optimizer()
        loop = FitLoop(
            self,
            train_data,
            epochs=epochs,
            steps=steps,
            eval_every=eval_every,
            steps_per_call=steps_per_call,
            batch_size=batch_size,
            validation_data=validation_data,
            validation_batch_size=validation_batch_size,
            validation_every=validation_every,
            shuffle=shuffle,
            seed=seed,
            drop_remainder=drop_remainder,
            callbacks=callbacks,
            checkpoint=checkpoint,
            async_checkpointing=async_checkpointing,
            input_pipeline=input_pipeline,
            resume=resume,
            progress=progress,
            log_every=log_every,
            history_dir=history_dir,
        )
        self.check_outputs(loop.output_check_data(), batch_size)
        return loop.run()

    def check_outputs(self, data: Mapping[str, Any], batch_size: int) -> None:
        """Checks the model's output shape on ``data``'s first batch against the loss and all targets.

        The model is traced (``jax.eval_shape``), not run, and nothing is compiled.
        """
        if self.objective is None:
            return
        batch = device_batch(take(data, np.arange(min(batch_size, num_examples(data, "train_data")))))
        outputs = jax.eval_shape(
            lambda params, rest, b: predict_batch(self._graphdef_eval, self.objective, params, rest, b),
            self.params,
            self.rest,
            batch,
        )
        self.objective.check_outputs(outputs, data[self.objective.targets_key])

    # ------------------------------------------------------- evaluate/predict
    def evaluate(self, data: Data, *, batch_size: int = 256) -> dict[str, float]:
        """The loss and metrics over all of ``data`` (exact means, in eval mode)."""
        return self._evaluate_arrays(as_data(data, "data", self.objective), batch_size)

    def _evaluate_arrays(self, data: dict[str, Any], batch_size: int) -> dict[str, float]:
        totals: dict[str, list[float]] = {}
        results = [
            eval_batch(self._graphdef_eval, self._objective_fn, self.params, self.rest, batch)
            for batch in self._eval_batches(data, batch_size)
        ]
        for stats in jax.device_get(results):
            for name, (total, count) in stats.items():
                acc = totals.setdefault(name, [0.0, 0.0])
                acc[0] += float(total)
                acc[1] += float(count)
        return {k: (t / c if c else math.nan) for k, (t, c) in totals.items()}

    def predict(self, data: Data | Array, *, batch_size: int = 256) -> np.ndarray:
        """The model's predictions (eval mode) for ``data`` (a dict, a split, or inputs ``[N, T, D]``)."""
        if isinstance(data, (np.ndarray, jax.Array)):
            data = {(self.objective or Objective()).inputs_key: data}
        else:
            data = as_data(data, "data", None)
        predictor = self.objective or Objective()
        outs = [
            predict_batch(self._graphdef_eval, predictor, self.params, self.rest, batch)
            for batch in self._eval_batches(data, batch_size)
        ]
        return np.concatenate([np.asarray(o) for o in jax.device_get(fully_addressable(outs))], axis=0)

    # --------------------------------------------------------- state handling
    def sync_model(self) -> nnx.Module:
        """Writes the current weights (and RNG state) into ``trainer.model`` and returns it.

        With a ``partitioning`` they are gathered into ordinary arrays on one
        device (``jax.devices()[0]``); the trainer keeps its sharded copy.
        """
        if self.partitioning is None:
            nnx.update(self.model, self.params, self.rest)
        else:
            nnx.update(self.model, *on_one_device((self.params, self.rest)))
        return self.model

    def _model_state(self) -> Any:
        """The model's state (parameters and the rest) as the trainer holds it: sharded, with a partitioning."""
        return nnx.merge_state(self.params, self.rest)

    def training_state(self) -> tuple[Any, Any, Any]:
        """``(params, rest, opt_state)``: pure states, immutable arrays (safe to keep)."""
        return self.params, self.rest, self.opt_state

    def load_training_state(self, state: tuple[Any, Any, Any], *, weights_only: bool = False) -> None:
        """Puts back what :meth:`training_state` returned (only params and rest with ``weights_only``)."""
        self.params, self.rest = self._placed(state[0], state[1])
        if not weights_only:
            self._set_opt_state(state[2])
        self.sync_model()

    def load_checkpoint_weights(self, step: int | Literal["latest", "best"] = "best") -> None:
        """Loads the model weights of one of this run's checkpoints."""
        if self.checkpointer is None:
            raise ValueError("no checkpointer: fit(..., checkpoint=...) first")
        restored = self.checkpointer.restore(model_target=nnx.as_pure(nnx.state(self.sync_model())), step=step)
        self._set_model_state(restored.model_state)

    def _set_model_state(self, model_state: Any) -> None:
        nnx.update(self.model, model_state)
        _, params, rest = split_params(self.model)
        self.params, self.rest = self._placed(nnx.as_pure(params), nnx.as_pure(rest))

    def _require_optimizer(self) -> None:
        if self.optimizer is None:
            raise ValueError("this Trainer has no optimizer (optimizer=None); it can only evaluate and predict")

    def _stat_names(self) -> list[str]:
        names = ["loss"]
        if self.objective is not None:
            names += list(self.objective.metric_functions())
        return names


# ----------------------------------------------------------------- functions
def fit(
    model: nnx.Module,
    optimizer: optax.GradientTransformation,
    train_data: Data,
    *,
    loss: str | ValueFn | Objective = "mse",
    metrics: Sequence[str] | Mapping[str, ValueFn] = (),
    loss_fn: LossFn | None = None,
    tbptt: int | None = None,
    tbptt_update: Literal["chunk", "sequence"] = "chunk",
    diagnostics: bool = True,
    partitioning: Partitioning | None = None,
    precision: str | Precision | None = None,
    **fit_kwargs: Any,
) -> History:
    """Trains ``model`` in place and returns its :class:`~recurrax.train.History`.

    ``Trainer(model, optimizer, loss=..., ...).fit(train_data, **fit_kwargs)``;
    see :class:`Trainer` and :meth:`Trainer.fit` for every argument.

    Example:
      >>> import numpy as np, optax
      >>> from flax import nnx
      >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
      >>> data = {"inputs": np.tile(np.eye(2, dtype=np.float32), (4, 1)), "targets": np.array([0, 1] * 4)}
      >>> history = fit(model, optax.adam(0.1), data, loss="softmax_cross_entropy", metrics=["accuracy"],
      ...               epochs=20, batch_size=4, progress=False)
      >>> history.epochs[-1]["accuracy"]
      1.0
    """
    trainer = Trainer(
        model,
        optimizer,
        loss=loss,
        metrics=metrics,
        loss_fn=loss_fn,
        tbptt=tbptt,
        tbptt_update=tbptt_update,
        diagnostics=diagnostics,
        partitioning=partitioning,
        precision=precision,
    )
    return trainer.fit(train_data, **fit_kwargs)


def evaluate(
    model: nnx.Module,
    data: Data,
    *,
    loss: str | ValueFn | Objective = "mse",
    metrics: Sequence[str] | Mapping[str, ValueFn] = (),
    loss_fn: LossFn | None = None,
    batch_size: int = 256,
    precision: str | Precision | None = None,
) -> dict[str, float]:
    """The loss and metrics of ``model`` (eval mode) over all of ``data``: ``{"loss": ..., name: ...}``.

    Means are exact over examples (over valid steps for per-step targets); ``precision`` as in :class:`Trainer`.
    """
    trainer = Trainer(model, None, loss=loss, metrics=metrics, loss_fn=loss_fn, diagnostics=False, precision=precision)
    return trainer.evaluate(data, batch_size=batch_size)


def predict(model: nnx.Module, data: Data | Array, *, batch_size: int = 256) -> np.ndarray:
    """``model``'s predictions (eval mode) for ``data``: a dict or split with ``"inputs"``
    (and ``"lengths"``), or an inputs array ``[N, T, D]``; batched, concatenated as NumPy."""
    return Trainer(model, None, diagnostics=False).predict(data, batch_size=batch_size)


def _objective_of(
    loss: str | ValueFn | Objective,
    metrics: Sequence[str] | Mapping[str, ValueFn],
    loss_fn: LossFn | None,
    tbptt: int | None,
    diagnostics: bool,
) -> tuple[Objective | None, ObjectiveFn]:
    """``(objective, objective_fn)``: the Objective of ``loss``/``metrics`` as both, or None and ``loss_fn`` adapted."""
    if loss_fn is None:
        objective = as_objective(loss, metrics)
        clash = sorted(set(objective.metric_functions()) & set(_DIAGNOSTIC_KEYS))
        if clash and diagnostics:
            raise ValueError(f"metric names {clash} clash with the gradient diagnostics; rename them")
        return objective, objective
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")
    if metrics or isinstance(loss, Objective) or loss != "mse":
        raise ValueError("pass either loss_fn or loss/metrics, not both")
    if tbptt is not None:
        raise ValueError("tbptt needs loss/metrics (an Objective), not a loss_fn")
    return None, stats_from_loss_fn(loss_fn)
