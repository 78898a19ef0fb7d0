"""The fit loop: a jitted train step over an NNX model, validation, history, checkpoints.

The model is split once into a graph definition and pure states (parameters
and "the rest": dropout RNG counts, batch statistics); the step is a pure
function of those states, jitted once. ``trainer.model`` is brought up to date
at the end of every epoch and on :meth:`Trainer.sync_model`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from recurrax.train._callbacks import Callback
from recurrax.train._checkpoint import Checkpointer
from recurrax.train._diagnostics import layer_names
from recurrax.train._history import History
from recurrax.train._losses import ValueFn
from recurrax.train._objective import LossFn, Objective, Stats, as_objective, stats_from_loss_fn
from recurrax.train._optimizers import standard_promotion
from recurrax.train._step import StepConfig, train_batch
from recurrax.train._tbptt import check_chunk_size, check_streaming_batch, num_chunks

Array = jax.Array
Data = Mapping[str, Any] | Any  # a dict of arrays [N, ...], or an object with .inputs/.targets/.lengths
_DIAGNOSTIC_KEYS = (
    "grad_norm",
    "update_norm",
    "param_norm",
    "nonfinite",
    "clipped_grad_norm",
    "clipped",
    "nonfinite_count",
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
    ):
        if not isinstance(model, nnx.Module):
            raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"optimizer must be an optax.GradientTransformation or None, got {optimizer!r}")
        if loss_fn is not None:
            if not callable(loss_fn):
                raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")
            if metrics or isinstance(loss, Objective) or loss != "mse":
                raise ValueError("pass either loss_fn or loss/metrics, not both")
            if tbptt is not None:
                raise ValueError("tbptt needs loss/metrics (an Objective), not a loss_fn")
            self.objective: Objective | None = None
            self._objective_fn: Callable[[Any, Any], tuple[Array, Stats]] = stats_from_loss_fn(loss_fn)
        else:
            self.objective = as_objective(loss, metrics)
            self._objective_fn = self.objective
            clash = sorted(set(self.objective.metric_functions()) & set(_DIAGNOSTIC_KEYS))
            if clash and diagnostics:
                raise ValueError(f"metric names {clash} clash with the gradient diagnostics; rename them")
        if tbptt is not None:
            check_chunk_size(tbptt)
        if tbptt_update not in ("chunk", "sequence"):
            raise ValueError(f"tbptt_update must be 'chunk' or 'sequence', got {tbptt_update!r}")
        self.model = model
        self.optimizer = optimizer
        self.tbptt, self.tbptt_update, self.diagnostics = tbptt, tbptt_update, diagnostics

        model.train()
        self._graphdef_train, params, rest = nnx.split(model, nnx.Param, ...)
        model.eval()
        self._graphdef_eval = nnx.split(model, nnx.Param, ...)[0]
        self.params, self.rest = nnx.as_pure(params), nnx.as_pure(rest)
        self.opt_state = None
        self._config: StepConfig | None = None
        if optimizer is not None:
            self.opt_state = standard_promotion(optimizer).init(self.params)
            layers = tuple(layer_names(model)) if diagnostics else None
            self._config = StepConfig(self._graphdef_train, optimizer, self._objective_fn, layers, tbptt, tbptt_update)

        self.step = 0
        self.epoch = 0
        self.position = 0
        self.history = History()
        self.stop_training = False
        self.checkpointer: Checkpointer | None = None
        self._epoch_totals: dict[str, list[float]] = {}
        self._pending: list[tuple[int, int, int, dict[str, Array], Stats]] = []

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, Array]:
        """One jitted optimizer step (or one per chunk with ``tbptt``) on ``batch``; returns its metrics.

        For research loops that do their own batching; the step is counted and
        logged to the history like a step of :meth:`fit`.
        """
        self._require_optimizer()
        batch = _device_batch(batch)
        if self.tbptt is not None:
            assert self.objective is not None
            check_streaming_batch(self.objective, batch)
        metrics = self._run_step(batch)
        self._flush()
        return metrics

    def _run_step(self, batch: dict[str, Array]) -> dict[str, Array]:
        assert self._config is not None
        self.params, self.rest, self.opt_state, metrics, stats = train_batch(
            self._config, self.params, self.rest, self.opt_state, batch
        )
        first = self.step + 1
        self.step += self._steps_per_batch(batch)
        self._pending.append((first, self.step, self.epoch, metrics, stats))
        return metrics

    def _steps_per_batch(self, batch: Mapping[str, Array]) -> int:
        if self.tbptt is None or self.tbptt_update == "sequence":
            return 1
        assert self.objective is not None
        return num_chunks(int(jnp.shape(batch[self.objective.inputs_key])[1]), self.tbptt)

    def _flush(self) -> None:
        """Moves pending device metrics into the history and the epoch sums (one device transfer)."""
        if not self._pending:
            return
        pending, self._pending = jax.device_get(self._pending), []
        for first, last, epoch, metrics, stats in pending:
            for i, step in enumerate(range(first, last + 1)):
                row: dict[str, Any] = {"step": step, "epoch": epoch + 1}  # epochs count from 1, as in the epoch rows
                for k in [*(n for n in self._stat_names() if n in metrics), *metrics]:
                    row.setdefault(k, metrics[k][i] if np.ndim(metrics[k]) else metrics[k])
                self.history.log_step(row)
            for name, (total, count) in stats.items():
                acc = self._epoch_totals.setdefault(name, [0.0, 0.0])
                acc[0] += float(total)
                acc[1] += float(count)

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        train_data: Data,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        validation_data: Data | None = None,
        validation_batch_size: int | None = None,
        validation_every: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = False,
        callbacks: Iterable[Callback] = (),
        checkpoint: Checkpointer | str | os.PathLike[str] | None = None,
        resume: bool = False,
        progress: bool = True,
        log_every: int = 10,
        history_dir: str | os.PathLike[str] | None = None,
    ) -> History:
        """Trains until ``epochs`` epochs are done (counting any done before a resume).

        Args:
          train_data: ``{"inputs": [N, T, D], "targets": [N, ...], "lengths": [N]}``
            (lengths optional), or an object with those attributes (a task split).
          epochs: the total number of epochs.
          batch_size: examples per step.
          validation_data: evaluated after every ``validation_every`` epochs;
            its metrics are logged as ``val_<name>``.
          shuffle, seed: the example order of epoch ``e`` is a permutation drawn
            from ``(seed, e)``, so it is the same after a resume.
          drop_remainder: skip the last, smaller batch of each epoch.
          callbacks: :class:`~recurrax.train.Callback` objects (e.g. :class:`EarlyStopping`).
          checkpoint: a :class:`~recurrax.train.Checkpointer` (or a directory for
            one with default settings): saves every ``every_steps``, at each new
            best ``monitor`` value, and at the end.
          resume: continue from the checkpointer's latest checkpoint, if any;
            the result is bit-identical to a run that was never interrupted.
          progress: show a tqdm bar with the live loss and metrics.
          log_every: steps between progress-bar updates (each one waits for the device).
          history_dir: write ``history.json`` and CSVs there after every epoch.

        Returns:
          The :class:`~recurrax.train.History` (also ``trainer.history``).
        """
        self._require_optimizer()
        for name, value in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("validation_every", validation_every),
            ("log_every", log_every),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        train = _as_data(train_data, "train_data", self.objective)
        valid = None if validation_data is None else _as_data(validation_data, "validation_data", self.objective)
        n = _num_examples(train, "train_data")
        if self.tbptt is not None:
            assert self.objective is not None
            check_streaming_batch(self.objective, train)
        batches_per_epoch = n // batch_size if drop_remainder else -(-n // batch_size)
        if batches_per_epoch == 0:
            raise ValueError(f"train_data has {n} examples, fewer than batch_size={batch_size} with drop_remainder")
        if checkpoint is not None and not isinstance(checkpoint, Checkpointer):
            checkpoint = Checkpointer(checkpoint)
        self.checkpointer = checkpoint
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        self.stop_training = False  # a new call trains on; a resumed run takes the flag from its checkpoint
        fit_config = {
            "num_examples": n,
            "batch_size": batch_size,
            "shuffle": bool(shuffle),
            "seed": int(seed),
            "drop_remainder": bool(drop_remainder),
            "tbptt": self.tbptt,
            "tbptt_update": self.tbptt_update,
        }
        if resume:
            if checkpoint is None:
                raise ValueError("resume=True needs a checkpoint (a Checkpointer or a directory)")
            if checkpoint.latest_step() is not None:
                self._resume(checkpoint, callbacks, fit_config)

        tqdm = _progress_bar()
        for cb in callbacks:
            cb.on_train_begin(self)
        last_saved = self.step if resume and checkpoint is not None else None
        while self.epoch < epochs and not self.stop_training:
            epoch = self.epoch
            order = _epoch_order(n, epoch, seed, shuffle)
            starts = range(0, batches_per_epoch * batch_size, batch_size)
            if self.position == 0:
                self._epoch_totals = {}
            for cb in callbacks:
                cb.on_epoch_begin(self, epoch)
            bar = tqdm(
                total=batches_per_epoch,
                initial=self.position,
                desc=f"epoch {epoch + 1}/{epochs}",
                disable=not progress,
                dynamic_ncols=True,
                leave=True,
            )
            try:
                for i in range(self.position, batches_per_epoch):
                    index = order[starts[i] : starts[i] + batch_size]
                    step_before = self.step
                    metrics = self._run_step(_device_batch(_take(train, index)))
                    self.position = i + 1
                    for cb in callbacks:
                        cb.on_step_end(self, self.step, metrics)
                    bar.update(1)
                    if progress and (self.position % log_every == 0 or self.position == batches_per_epoch):
                        bar.set_postfix(_postfix(metrics, self._stat_names()), refresh=False)
                    metric = None
                    if self.position == batches_per_epoch:
                        logs = self._end_epoch(
                            valid, validation_batch_size or batch_size, validation_every, callbacks, history_dir
                        )
                        if progress:
                            bar.set_postfix(_postfix(logs, list(logs)), refresh=True)
                        if checkpoint is not None and checkpoint.monitor is not None:
                            metric = logs.get(checkpoint.monitor)
                    if checkpoint is not None and self._should_save(checkpoint, step_before, metric):
                        self._save(checkpoint, callbacks, fit_config, metric)
                        last_saved = self.step
                    if self.stop_training:
                        break
            finally:
                bar.close()
        self._flush()
        if checkpoint is not None and last_saved != self.step and self.step not in [0, *checkpoint.all_steps()]:
            self._save(checkpoint, callbacks, fit_config, None)
        for cb in callbacks:
            cb.on_train_end(self)
        self.sync_model()
        if history_dir is not None:
            self.history.save(history_dir)
        return self.history

    def _end_epoch(
        self,
        valid: dict[str, Any] | None,
        batch_size: int,
        every: int,
        callbacks: list[Callback],
        history_dir: str | os.PathLike[str] | None,
    ) -> dict[str, float]:
        self._flush()
        epoch = self.epoch
        logs: dict[str, float] = {"epoch": epoch + 1, "step": self.step}
        logs.update({k: (t / c if c else math.nan) for k, (t, c) in self._epoch_totals.items()})
        if valid is not None and (epoch + 1) % every == 0:
            logs.update({f"val_{k}": v for k, v in self._evaluate_arrays(valid, batch_size).items()})
        self.history.log_epoch(logs)
        self.epoch += 1
        self.position = 0
        self._epoch_totals = {}
        self.sync_model()
        for cb in callbacks:
            cb.on_epoch_end(self, epoch, self.history.epochs[-1])
        if history_dir is not None:
            self.history.save(history_dir)
        return self.history.epochs[-1]

    def _should_save(self, checkpoint: Checkpointer, step_before: int, metric: float | None) -> bool:
        every = checkpoint.every_steps
        if every is not None and self.step // every > step_before // every:
            return True
        return metric is not None and checkpoint.is_improvement(float(metric))

    # ------------------------------------------------------- evaluate/predict
    def evaluate(self, data: Data, *, batch_size: int = 256) -> dict[str, float]:
        """The loss and metrics over all of ``data`` (exact means, in eval mode)."""
        return self._evaluate_arrays(_as_data(data, "data", self.objective), batch_size)

    def _evaluate_arrays(self, data: dict[str, Any], batch_size: int) -> dict[str, float]:
        n = _num_examples(data, "data")
        totals: dict[str, list[float]] = {}
        results = [
            _eval_batch(self._graphdef_eval, self._objective_fn, self.params, self.rest, batch)
            for batch in _in_order(data, n, batch_size)
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
            data = _as_data(data, "data", None)
        n = _num_examples(data, "data")
        predictor = self.objective or Objective()
        outs = [
            _predict_batch(self._graphdef_eval, predictor, self.params, self.rest, batch)
            for batch in _in_order(data, n, batch_size)
        ]
        return np.concatenate([np.asarray(o) for o in jax.device_get(outs)], axis=0)

    # --------------------------------------------------------- state handling
    def sync_model(self) -> nnx.Module:
        """Writes the current weights (and RNG state) into ``trainer.model`` and returns it."""
        nnx.update(self.model, self.params, self.rest)
        return self.model

    def training_state(self) -> tuple[Any, Any, Any]:
        """``(params, rest, opt_state)``: pure states, immutable arrays (safe to keep)."""
        return self.params, self.rest, self.opt_state

    def load_training_state(self, state: tuple[Any, Any, Any], *, weights_only: bool = False) -> None:
        """Puts back what :meth:`training_state` returned (only params and rest with ``weights_only``)."""
        self.params, self.rest = state[0], state[1]
        if not weights_only:
            self.opt_state = state[2]
        self.sync_model()

    def load_checkpoint_weights(self, step: int | Literal["latest", "best"] = "best") -> None:
        """Loads the model weights of one of this run's checkpoints."""
        if self.checkpointer is None:
            raise ValueError("no checkpointer: fit(..., checkpoint=...) first")
        restored = self.checkpointer.restore(model_target=nnx.as_pure(nnx.state(self.sync_model())), step=step)
        self._set_model_state(restored.model_state)

    def _set_model_state(self, model_state: Any) -> None:
        nnx.update(self.model, model_state)
        _, params, rest = nnx.split(self.model, nnx.Param, ...)
        self.params, self.rest = nnx.as_pure(params), nnx.as_pure(rest)

    def _save(
        self, checkpoint: Checkpointer, callbacks: list[Callback], fit_config: dict[str, Any], metric: float | None
    ) -> None:
        self._flush()
        meta = {
            "trainer": {
                "step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "stop_training": self.stop_training,
                "epoch_totals": self._epoch_totals,
                "history": self.history.to_dict(),
                "callbacks": [(key, cb.state_dict()) for key, cb in _callback_keys(callbacks)],
                "fit": fit_config,
            }
        }
        state = nnx.as_pure(nnx.state(self.sync_model()))
        checkpoint.save(self.step, model_state=state, opt_state=self.opt_state, meta=meta, metric=metric)

    def _resume(self, checkpoint: Checkpointer, callbacks: list[Callback], fit_config: dict[str, Any]) -> None:
        target = nnx.as_pure(nnx.state(self.sync_model()))
        restored = checkpoint.restore(model_target=target, opt_target=self.opt_state, step="latest")
        saved = restored.meta.get("trainer")
        if saved is None:
            raise ValueError(f"checkpoint {restored.path} holds no trainer state (it was not written by fit)")
        changed = {k: (saved["fit"].get(k), v) for k, v in fit_config.items() if saved["fit"].get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in changed.items())
            raise ValueError(f"cannot resume exactly from {restored.path}: the run's settings changed ({detail})")
        self._set_model_state(restored.model_state)
        self.opt_state = restored.opt_state
        self.step, self.epoch, self.position = saved["step"], saved["epoch"], saved["position"]
        self.stop_training = saved["stop_training"]
        self._epoch_totals = {k: list(v) for k, v in saved["epoch_totals"].items()}
        self.history = History.from_dict(saved["history"])
        self._pending = []
        states = dict(saved["callbacks"])
        for key, cb in _callback_keys(callbacks):
            if key in states:
                cb.load_state_dict(states[key])
        # The best value seen by this run up to the checkpoint, not a later one
        # an interrupted run may have written to the index.
        if checkpoint.monitor is not None:
            values = [
                (row["step"], row[checkpoint.monitor])
                for row in self.history.epochs
                if checkpoint.monitor in row and not math.isnan(row[checkpoint.monitor])
            ]
            checkpoint.best_step, checkpoint.best_value = None, None
            for step, value in values:
                if checkpoint.is_improvement(value):
                    checkpoint.best_step, checkpoint.best_value = int(step), value

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
) -> dict[str, float]:
    """The loss and metrics of ``model`` (eval mode) over all of ``data``: ``{"loss": ..., name: ...}``.

    Means are exact over examples (over valid steps for per-step targets).
    """
    trainer = Trainer(model, None, loss=loss, metrics=metrics, loss_fn=loss_fn, diagnostics=False)
    return trainer.evaluate(data, batch_size=batch_size)


def predict(model: nnx.Module, data: Data | Array, *, batch_size: int = 256) -> np.ndarray:
    """``model``'s predictions (eval mode) for ``data``: a dict or split with ``"inputs"``
    (and ``"lengths"``), or an inputs array ``[N, T, D]``; batched, concatenated as NumPy."""
    return Trainer(model, None, diagnostics=False).predict(data, batch_size=batch_size)


def _callback_keys(callbacks: Sequence[Callback]) -> list[tuple[str, Callback]]:
    """``"EarlyStopping#0"``-style keys: a callback's saved state finds it again by class and order."""
    seen: dict[str, int] = {}
    out = []
    for cb in callbacks:
        name = type(cb).__qualname__
        out.append((f"{name}#{seen.get(name, 0)}", cb))
        seen[name] = seen.get(name, 0) + 1
    return out


# Shared by every Trainer with the same model structure and objective (one compile).
@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_batch(graphdef: nnx.GraphDef, objective: Callable[..., Any], params: Any, rest: Any, batch: Any) -> Stats:
    return objective(nnx.merge(graphdef, params, rest), batch)[1]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _predict_batch(graphdef: nnx.GraphDef, objective: Objective, params: Any, rest: Any, batch: Any) -> Array:
    return objective.predict(nnx.merge(graphdef, params, rest), batch)


# ---------------------------------------------------------------- data plumbing
def _as_data(data: Any, name: str, objective: Objective | None) -> dict[str, Any]:
    if isinstance(data, Mapping):
        out = {k: v for k, v in data.items() if v is not None}
    elif hasattr(data, "inputs"):
        out = {k: getattr(data, k) for k in ("inputs", "targets", "lengths") if getattr(data, k, None) is not None}
    else:
        raise TypeError(f"{name} must be a dict of arrays or have .inputs/.targets, got {type(data).__name__}")
    if objective is not None:
        for key in (objective.inputs_key, objective.targets_key):
            if key not in out:
                raise ValueError(f"{name} has no {key!r} array (has {sorted(out)})")
    return out


def _num_examples(data: Mapping[str, Any], name: str) -> int:
    sizes = {k: int(np.shape(v)[0]) for k, v in data.items() if np.ndim(v) >= 1}
    if not sizes:
        raise ValueError(f"{name} has no arrays")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{name}'s arrays must share their leading (example) size, got {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError(f"{name} has no examples")
    return n


def _epoch_order(n: int, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def _take(data: Mapping[str, Any], index: np.ndarray) -> dict[str, Any]:
    return {k: v[index] for k, v in data.items()}


def _in_order(data: Mapping[str, Any], n: int, batch_size: int) -> Iterable[dict[str, Array]]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    for start in range(0, n, batch_size):
        yield _device_batch(_take(data, np.arange(start, min(start + batch_size, n))))


def _device_batch(batch: Mapping[str, Any]) -> dict[str, Array]:
    return {k: jnp.asarray(v) for k, v in batch.items()}


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
