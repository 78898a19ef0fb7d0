"""Losses and metrics as per-example (or per-step) values, reduced with a mask.

Every loss and metric here maps ``(predictions, targets)`` to *unreduced*
values shaped ``[B]`` (one per sequence) or ``[B, T]`` (one per time step); the
reduction is :func:`masked_total`, so padded steps past each example's length
never count and an epoch's mean is exact (total / count summed over batches,
not a mean of batch means). The element-wise maths is optax's.

Class labels follow PyTorch's convention: a label of ``IGNORE_INDEX`` (-1)
marks an entry that counts in neither the loss nor the metrics (its value is 0
and :func:`masked_total` leaves it out of the count). Any other label outside
``[0, C)`` is refused with a ``ValueError`` when the labels are concrete; under
``jit`` (where it cannot be) its value is NaN, so the loss is NaN and the
training loop's non-finite checks see it, instead of silently reading another
class. Binary targets outside ``[0, 1]`` are treated the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from recurrax._ops import padding_mask
from recurrax._validation import is_concrete

Array = jax.Array
ValueFn = Callable[[Array, Array], Array]

#: The class label that marks an entry to ignore (PyTorch's ``ignore_index``, here fixed at -1).
IGNORE_INDEX = -1


def mse(predictions: Array, targets: Array) -> Array:
    """Squared error averaged over the feature axis: ``[B, (T,) O] → [B, (T)]``.

    Example:
      >>> import jax.numpy as jnp
      >>> mse(jnp.array([[1.0, 3.0]]), jnp.array([[0.0, 0.0]])).tolist()
      [5.0]
    """
    _check_same_shape(predictions, targets, "mse")
    return jnp.mean(optax.losses.squared_error(predictions, targets), axis=-1)


def binary_cross_entropy_with_logits(logits: Array, targets: Array) -> Array:
    """Sigmoid cross-entropy averaged over the feature axis: ``[B, (T,) O] → [B, (T)]``.

    ``targets`` are probabilities in ``[0, 1]`` (usually 0/1 labels) with the
    shape of ``logits``.
    """
    _check_same_shape(logits, targets, "binary_cross_entropy")
    targets = targets.astype(logits.dtype)
    outside = (targets < 0) | (targets > 1)
    if is_concrete(targets) and bool(jnp.any(outside)):
        raise ValueError(
            f"binary_cross_entropy: targets must be probabilities in [0, 1], got values in "
            f"[{float(jnp.min(targets))}, {float(jnp.max(targets))}]"
        )
    values = jnp.mean(optax.losses.sigmoid_binary_cross_entropy(logits, targets), axis=-1)
    return jnp.where(jnp.any(outside, axis=-1), jnp.nan, values)


def softmax_cross_entropy(logits: Array, targets: Array) -> Array:
    """Softmax cross-entropy: logits ``[B, (T,) C]`` → ``[B, (T)]``.

    ``targets`` are integer class labels ``[B, (T)]`` (``IGNORE_INDEX`` = -1:
    ignored, value 0), or class probabilities (one-hot) with the shape of ``logits``.

    Example:
      >>> import jax.numpy as jnp
      >>> softmax_cross_entropy(jnp.zeros((3, 2)), jnp.array([0, -1, 1])).tolist()  # ln 2, ignored, ln 2
      [0.6931471824645996, 0.0, 0.6931471824645996]
    """
    if jnp.issubdtype(targets.dtype, jnp.integer):
        if targets.shape != logits.shape[:-1]:
            raise ValueError(
                f"softmax_cross_entropy: integer labels must have shape {logits.shape[:-1]} "
                f"(logits {logits.shape} without the class axis), got {targets.shape}"
            )
        ignored, outside = _label_problems(targets, logits.shape[-1], "softmax_cross_entropy")
        safe = jnp.where(ignored | outside, 0, targets)
        values = optax.losses.softmax_cross_entropy_with_integer_labels(logits, safe)
        return jnp.where(outside, jnp.nan, jnp.where(ignored, jnp.zeros_like(values), values))
    _check_same_shape(logits, targets, "softmax_cross_entropy (probability targets)")
    losses: Array = optax.losses.softmax_cross_entropy(logits, targets.astype(logits.dtype))
    return losses


def accuracy(logits: Array, targets: Array) -> Array:
    """1.0 where ``argmax(logits)`` is the target class, else 0.0: ``[B, (T)]``.

    ``targets`` are integer labels ``[B, (T)]`` (-1: ignored) or one-hot ``[B, (T,) C]``.
    """
    labels = targets if jnp.issubdtype(targets.dtype, jnp.integer) else jnp.argmax(targets, axis=-1)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"accuracy: labels must have shape {logits.shape[:-1]}, got {targets.shape}")
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        return correct
    ignored, outside = _label_problems(labels, logits.shape[-1], "accuracy")
    return jnp.where(outside, jnp.nan, jnp.where(ignored, 0.0, correct))


def binary_accuracy(logits: Array, targets: Array) -> Array:
    """Fraction of features where ``logits > 0`` agrees with ``targets > 0.5``: ``[B, (T)]``."""
    _check_same_shape(logits, targets, "binary_accuracy")
    correct = (logits > 0) == (targets > 0.5)
    return jnp.mean(correct.astype(jnp.float32), axis=-1)


LOSSES: dict[str, ValueFn] = {
    "mse": mse,
    "binary_cross_entropy": binary_cross_entropy_with_logits,
    "softmax_cross_entropy": softmax_cross_entropy,
}
METRICS: dict[str, ValueFn] = {
    **LOSSES,
    "accuracy": accuracy,
    "binary_accuracy": binary_accuracy,
}


def sequence_mask(lengths: Array, num_steps: int) -> Array:
    """Boolean ``[B, T]`` mask, True on each example's first ``lengths[b]`` steps."""
    return padding_mask(lengths, num_steps)


def label_mask(targets: Array) -> Array | None:
    """True where integer class labels count (are not ``IGNORE_INDEX``); None for other targets."""
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        return None
    return targets != IGNORE_INDEX


def masked_total(values: Array, lengths: Array | None = None, valid: Array | None = None) -> tuple[Array, Array]:
    """Sums per-example ``[B]`` or per-step ``[B, T]`` values over the valid entries.

    Returns ``(total, count)`` as float32 (or wider) scalars, so the mean is
    ``total / count`` and means over many batches combine exactly. With
    ``lengths[B]``, steps ``t >= lengths[b]`` of per-step values are left out;
    with ``valid`` (``values``' shape), the entries where it is False too.

    Example:
      >>> import jax.numpy as jnp
      >>> total, count = masked_total(jnp.ones((2, 4)), jnp.array([4, 1]))
      >>> float(total), float(count)
      (5.0, 5.0)
    """
    if values.ndim not in (1, 2):
        raise ValueError(
            f"loss/metric values must be per example [B] or per step [B, T], got shape {values.shape}; "
            "reduce any feature axes inside the loss function"
        )
    dtype = jnp.promote_types(values.dtype, jnp.float32)
    values = values.astype(dtype)
    mask = None if lengths is None or values.ndim == 1 else sequence_mask(lengths, values.shape[1])
    if valid is not None and valid.shape == values.shape:
        mask = valid if mask is None else mask & valid
    if mask is None:
        return jnp.sum(values), jnp.asarray(values.size, dtype)
    return jnp.sum(jnp.where(mask, values, jnp.zeros_like(values))), jnp.sum(mask.astype(dtype))


def resolve(fn: str | ValueFn, what: str, table: dict[str, ValueFn]) -> ValueFn:
    """Looks a loss/metric up by name, or passes a callable through."""
    if callable(fn):
        return fn
    if isinstance(fn, str) and fn in table:
        return table[fn]
    raise ValueError(f"{what} must be a callable or one of {sorted(table)}, got {fn!r}")


def _label_problems(labels: Array, num_classes: int, name: str) -> tuple[Array, Array]:
    """``(ignored, outside)`` masks of integer ``labels``; concrete labels outside ``[0, C)`` other than -1 raise."""
    ignored = labels == IGNORE_INDEX
    outside = ~ignored & ((labels < 0) | (labels >= num_classes))
    if is_concrete(labels) and bool(jnp.any(outside)):
        bad = sorted({int(v) for v in jnp.asarray(labels)[outside].tolist()})[:5]
        raise ValueError(
            f"{name}: labels must be class indices in [0, {num_classes}) or {IGNORE_INDEX} (ignored), got {bad}"
        )
    return ignored, outside


def _check_same_shape(a: Array, b: Array, name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: predictions have shape {a.shape} but targets have shape {b.shape}")
