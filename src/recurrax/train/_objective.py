"""What training minimises and reports: a loss and metrics of a model on a batch.

A batch is a dict of arrays with a leading example axis: ``"inputs"``
``[B, T, D]``, ``"targets"`` (``[B, ...]`` or per step ``[B, T, ...]``) and,
for padded sequences, ``"lengths"`` ``[B]``. Every objective returns its
numbers as ``(total, count)`` pairs ("stats") so that means over batches and
epochs are exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recurrax.train._losses import IGNORE_INDEX, LOSSES, METRICS, ValueFn, label_mask, masked_total, resolve

Array = jax.Array
Batch = Mapping[str, Any]
Stats = dict[str, tuple[Array, Array]]
LossFn = Callable[[nnx.Module, Batch], "Array | tuple[Array, Mapping[str, Array]]"]
ObjectiveFn = Callable[[Any, Batch], tuple[Array, Stats]]  # (model, batch) -> (loss, stats)


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """A supervised loss plus metrics over ``model(batch["inputs"])``.

    The model is called as ``model(inputs)``, or ``model(inputs, lengths=lengths)``
    when the batch has ``"lengths"``; a model that returns ``(predictions,
    carry)`` (a streaming model) has its carry ignored here. Predictions are
    ``[B, O]`` (one per sequence) or ``[B, T, O]`` (one per step; steps past
    ``lengths`` are masked out of the loss and the metrics).

    Args:
      loss: ``"mse"``, ``"binary_cross_entropy"`` (logits), ``"softmax_cross_entropy"``
        (logits; integer or one-hot targets), or a function
        ``(predictions, targets) -> values [B] or [B, T]``.
      metrics: names (the losses, ``"accuracy"``, ``"binary_accuracy"``) or a
        mapping from name to such a function.

    Example:
      >>> import jax.numpy as jnp
      >>> obj = Objective("softmax_cross_entropy", metrics=["accuracy"])
      >>> batch = {"targets": jnp.array([0, 1])}
      >>> stats = obj.stats(jnp.array([[2.0, 0.0], [3.0, 0.0]]), batch)
      >>> [float(stats["accuracy"][0]), float(stats["accuracy"][1])]
      [1.0, 2.0]
    """

    loss: str | ValueFn = "mse"
    metrics: Sequence[str] | Mapping[str, ValueFn] = ()
    inputs_key: str = "inputs"
    targets_key: str = "targets"
    lengths_key: str = "lengths"
    #: the dtype predictions are cast to before the loss and metrics (None: as the model returns them);
    #: ``Trainer(..., precision=...)`` sets it to the policy's output dtype.
    output_dtype: str | None = None

    def __post_init__(self) -> None:
        resolve(self.loss, "loss", LOSSES)
        for name, fn in self.metric_functions().items():
            if name == "loss":
                raise ValueError("metrics may not be named 'loss' (the loss is always reported under that name)")
            resolve(fn, f"metric {name!r}", METRICS)

    def metric_functions(self) -> dict[str, str | ValueFn]:
        """The metrics as a ``{name: function-or-name}`` dict."""
        if isinstance(self.metrics, Mapping):
            return dict(self.metrics)
        if isinstance(self.metrics, str):
            raise TypeError(f"metrics must be a sequence of names or a mapping, got the string {self.metrics!r}")
        out: dict[str, str | ValueFn] = {}
        for m in self.metrics:
            if not isinstance(m, str):
                raise TypeError(f"metrics given as a sequence must be names, got {m!r}; use a dict for functions")
            out[m] = m
        return out

    def lengths(self, batch: Batch) -> Array | None:
        """The batch's ``lengths`` ``[B]``, or None."""
        return batch.get(self.lengths_key)

    def apply(self, model: Any, inputs: Array, lengths: Array | None, **kwargs: Any) -> Any:
        """Calls the model, passing ``lengths`` only when there are some."""
        if lengths is not None:
            kwargs["lengths"] = lengths
        return model(inputs, **kwargs)

    def predict(self, model: Any, batch: Batch) -> Array:
        """The model's predictions for ``batch`` (the carry of a streaming model dropped)."""
        out = self.apply(model, batch[self.inputs_key], self.lengths(batch))
        predictions: Array = out[0] if isinstance(out, tuple) else out
        return self.cast_output(predictions)

    def cast_output(self, predictions: Array) -> Array:
        """``predictions`` in :attr:`output_dtype` (floating predictions only; unchanged when it is None)."""
        if self.output_dtype is not None and jnp.issubdtype(predictions.dtype, jnp.floating):
            return predictions.astype(self.output_dtype)
        return predictions

    def stats(self, predictions: Array, batch: Batch, lengths: Array | None = None) -> Stats:
        """``{"loss": (total, count), metric: (total, count), ...}`` for these predictions."""
        targets = batch[self.targets_key]
        lengths = self.lengths(batch) if lengths is None else lengths
        valid = label_mask(jnp.asarray(targets))  # class labels of -1 count nowhere
        out = {"loss": masked_total(resolve(self.loss, "loss", LOSSES)(predictions, targets), lengths, valid)}
        for name, fn in self.metric_functions().items():
            out[name] = masked_total(resolve(fn, name, METRICS)(predictions, targets), lengths, valid)
        return out

    def check_outputs(self, predictions: Any, targets: Any) -> None:
        """Checks the model's output shape against the loss, metrics and ``targets`` ``[N, ...]``.

        ``predictions`` is the model's output on a first batch, or its shape
        struct (``jax.eval_shape``); only its shape past the batch axis is
        compared. Run once by ``fit`` before any training: a one-logit model
        under ``softmax_cross_entropy`` would otherwise report loss 0 and
        accuracy 1. Functions given as the loss or a metric are the caller's to check.
        """
        shape, targets = tuple(predictions.shape), np.asarray(targets)
        names = [n for n in [self.loss, *self.metric_functions().values()] if isinstance(n, str)]
        roles = {n: "loss" if n == self.loss else "metric" for n in reversed(names)}
        classes = [n for n in roles if n in ("softmax_cross_entropy", "accuracy")]
        if classes and shape[-1] < 2:
            raise ValueError(
                f"{roles[classes[0]]}={classes[0]!r} needs class logits with at least 2 classes, but the model "
                f"outputs shape {shape}; for one logit use loss='binary_cross_entropy' and metrics=['binary_accuracy']"
            )
        for name, role in roles.items():
            where = f"{role}={name!r}: targets"
            if name in classes and np.issubdtype(targets.dtype, np.integer):
                if targets.shape[1:] != shape[1:-1]:
                    raise ValueError(
                        f"{where} are class labels of shape {targets.shape}, but the model outputs {shape}; "
                        f"labels need the shape [N{''.join(f', {d}' for d in shape[1:-1])}]"
                    )
                outside = (targets != IGNORE_INDEX) & ((targets < 0) | (targets >= shape[-1]))
                if outside.any():
                    raise ValueError(
                        f"{where} must be class indices in [0, {shape[-1]}) (the model's {shape[-1]} outputs) or "
                        f"{IGNORE_INDEX} (ignored), got {sorted(set(targets[outside].tolist()))[:5]}"
                    )
                continue
            # values, probabilities or one-hot classes: shaped like the outputs
            if targets.shape[1:] != shape[1:]:
                raise ValueError(
                    f"{where} have shape {targets.shape}, but the model outputs {shape}; "
                    f"they need the same shape past the example axis"
                )
            if name.startswith("binary") and targets.size and ((targets < 0) | (targets > 1)).any():
                raise ValueError(f"{where} must lie in [0, 1], got values in [{targets.min()}, {targets.max()}]")

    def __call__(self, model: Any, batch: Batch) -> tuple[Array, Stats]:
        """``(mean loss, stats)`` of ``model`` on ``batch``; the mean loss is what gets differentiated."""
        stats = self.stats(self.predict(model, batch), batch)
        total, count = stats["loss"]
        return total / count, stats

    def _key(self) -> tuple[Any, ...]:
        names = (self.inputs_key, self.targets_key, self.lengths_key)
        return (self.loss, tuple(self.metric_functions().items()), *names, self.output_dtype)

    # Equal objectives share jit caches (functions compare by identity).
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Objective) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def as_objective(loss: str | ValueFn | Objective, metrics: Sequence[str] | Mapping[str, ValueFn]) -> Objective:
    """Turns fit's ``loss=``/``metrics=`` arguments into an :class:`Objective`."""
    if isinstance(loss, Objective):
        if metrics:
            raise ValueError("pass metrics inside the Objective, not also as metrics=")
        return loss
    return Objective(loss, metrics)


_ADAPTED: dict[Any, ObjectiveFn] = {}


def stats_from_loss_fn(loss_fn: LossFn) -> ObjectiveFn:
    """Adapts a user ``loss_fn(model, batch) -> loss | (loss, metrics)`` to ``(loss, stats)``.

    Its loss and metrics are batch means, so each batch is weighted by its
    number of examples (the leading size of ``batch``'s arrays). The adapter is
    made once per ``loss_fn``, so jitted functions keyed on it are reused.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {loss_fn!r}")
    if loss_fn not in _ADAPTED:
        _ADAPTED[loss_fn] = _adapt(loss_fn)
    return _ADAPTED[loss_fn]


def _adapt(loss_fn: LossFn) -> ObjectiveFn:

    def objective(model: Any, batch: Batch) -> tuple[Array, Stats]:
        out = loss_fn(model, batch)
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        if not isinstance(metrics, Mapping):
            raise TypeError(f"loss_fn must return loss or (loss, dict of metrics), got metrics {type(metrics)}")
        loss = jnp.asarray(loss)
        if loss.shape != ():
            raise ValueError(f"loss_fn must return a scalar loss, got shape {loss.shape}")
        weight = jnp.asarray(batch_size(batch), jnp.promote_types(loss.dtype, jnp.float32))
        stats = {"loss": (loss.astype(weight.dtype) * weight, weight)}
        for name, value in metrics.items():
            stats[name] = (jnp.asarray(value).astype(weight.dtype) * weight, weight)
        return loss, stats

    return objective


def batch_size(batch: Batch) -> int:
    """The leading (example) size shared by every array in ``batch``."""
    sizes = {int(jnp.shape(leaf)[0]) for leaf in jax.tree.leaves(batch) if jnp.ndim(leaf) >= 1}
    if len(sizes) != 1:
        raise ValueError(f"every array in a batch must share its leading (example) size, got sizes {sorted(sizes)}")
    return sizes.pop()


def split_params(model: nnx.Module) -> tuple[nnx.GraphDef[Any], nnx.State[Any, Any], nnx.State[Any, Any]]:
    """``nnx.split(model, nnx.Param, ...)``: the graphdef, the parameters and the rest of the state.

    Flax types that call's result as ``(graphdef, state, *states)``, so a plain
    three-name unpacking does not type-check; this one does.
    """
    graphdef, params, *rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest[0]
