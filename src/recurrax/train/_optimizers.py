"""An optimizer builder that only composes optax parts.

The chain, from the gradient to the update::

    apply_if_finite(                      # skip_nonfinite: drop NaN/Inf gradients, count them
      MultiSteps(                         # accumulate_steps=k: mean over k micro-batches
        chain(snapshot(norm before clip), # read back by gradient_diagnostics
              clip(clip_value),           # element-wise
              clip_by_global_norm(clip_norm),
              adaptive_grad_clip(adaptive_clip),
              snapshot(norm after clip),
              optimizer(learning_rate))))  # any optax optimizer, any optax schedule

The guard sits outside the accumulation so that one bad micro-batch is
dropped (and counted) instead of poisoning the whole accumulated gradient.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

# Names under which the chain records gradient norms, read with optax.tree.get.
NORM_BEFORE_CLIP = "recurrax_grad_norm_before_clip"
NORM_AFTER_CLIP = "recurrax_grad_norm_after_clip"


def build_optimizer(
    optimizer: str | Callable[..., optax.GradientTransformation] | optax.GradientTransformation = "adam",
    learning_rate: float | optax.Schedule | None = 1e-3,
    *,
    clip_value: float | None = None,
    clip_norm: float | None = None,
    adaptive_clip: float | None = None,
    accumulate_steps: int = 1,
    skip_nonfinite: bool = False,
    max_consecutive_nonfinite: int = 100,
    **optimizer_kwargs: Any,
) -> optax.GradientTransformation:
    """Builds a plain ``optax.GradientTransformation`` with clipping, accumulation and a NaN guard.

    Args:
      optimizer: the name of any optax optimizer that takes a learning rate
        (``"adam"``, ``"adamw"``, ``"sgd"``, ``"lion"``, ...), a factory called as
        ``optimizer(learning_rate, **optimizer_kwargs)``, or a ready transformation
        (then ``learning_rate`` must be None and no kwargs given).
      learning_rate: a float or any optax schedule (``optax.warmup_cosine_decay_schedule(...)``).
      clip_value: clip each gradient element to ``[-clip_value, clip_value]`` (``optax.clip``).
      clip_norm: rescale the gradient to global norm at most ``clip_norm``
        (``optax.clip_by_global_norm``, Pascanu et al., 2013).
      adaptive_clip: unit-wise clip to ``adaptive_clip * ‖param‖`` (``optax.adaptive_grad_clip``,
        Brock et al., 2021).
      accumulate_steps: average gradients over this many micro-batches before
        one update (``optax.MultiSteps``); in between, updates are zero.
      skip_nonfinite: skip (and count) updates whose gradient has a NaN or Inf
        (``optax.apply_if_finite``); ``optax.tree.get(state, "total_notfinite")`` is the count.
      max_consecutive_nonfinite: after this many bad gradients in a row the
        guard gives up and applies them (so a diverged run fails loudly).
      **optimizer_kwargs: passed to the optimizer (``b1=0.9``, ``weight_decay=1e-4``, ...).

    Returns:
      An ``optax.GradientTransformation``; its ``update`` needs ``params`` when
      ``adaptive_clip`` is set (and for optimizers such as ``adamw``).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = build_optimizer("sgd", 0.1, clip_norm=1.0)
      >>> params = {"w": jnp.zeros(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([3.0, 4.0])}, state, params)
      >>> [round(float(u), 4) for u in updates["w"]]
      [-0.06, -0.08]
    """
    base = _base_optimizer(optimizer, learning_rate, optimizer_kwargs)
    for name, value in (("clip_value", clip_value), ("clip_norm", clip_norm), ("adaptive_clip", adaptive_clip)):
        if value is not None and not (_is_number(value) and value > 0):
            raise ValueError(f"{name} must be a positive number or None, got {value!r}")
    if isinstance(accumulate_steps, bool) or not isinstance(accumulate_steps, int) or accumulate_steps < 1:
        raise ValueError(f"accumulate_steps must be a positive int, got {accumulate_steps!r}")
    if not isinstance(max_consecutive_nonfinite, int) or max_consecutive_nonfinite < 0:
        raise ValueError(f"max_consecutive_nonfinite must be an int >= 0, got {max_consecutive_nonfinite!r}")

    parts = [_norm_snapshot(NORM_BEFORE_CLIP)]
    if clip_value is not None:
        parts.append(optax.clip(clip_value))
    if clip_norm is not None:
        parts.append(optax.clip_by_global_norm(clip_norm))
    if adaptive_clip is not None:
        parts.append(optax.adaptive_grad_clip(adaptive_clip))
    parts += [_norm_snapshot(NORM_AFTER_CLIP), base]
    tx: optax.GradientTransformation = optax.chain(*parts)
    if accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accumulate_steps).gradient_transformation()
    if skip_nonfinite:
        tx = optax.apply_if_finite(tx, max_consecutive_errors=max_consecutive_nonfinite)
    return standard_promotion(tx)


def _base_optimizer(optimizer: Any, learning_rate: Any, kwargs: dict[str, Any]) -> optax.GradientTransformation:
    if isinstance(optimizer, optax.GradientTransformation):
        if learning_rate is not None or kwargs:
            raise ValueError(
                "optimizer is already a GradientTransformation: pass learning_rate=None and no optimizer kwargs "
                f"(got learning_rate={learning_rate!r}, kwargs {sorted(kwargs)})"
            )
        return optimizer
    if learning_rate is None:
        raise ValueError("learning_rate is required unless optimizer is a ready GradientTransformation")
    check_learning_rate(learning_rate)
    if isinstance(optimizer, str):
        factory = getattr(optax, optimizer, None)
        if factory is None or not callable(factory) or "learning_rate" not in _parameters(factory):
            raise ValueError(
                f"optimizer {optimizer!r} is not an optax optimizer that takes a learning_rate "
                "(e.g. 'adam', 'adamw', 'sgd', 'rmsprop', 'lion')"
            )
    elif callable(optimizer):
        factory = optimizer
    else:
        raise TypeError(
            f"optimizer must be an optax optimizer name, a factory or a GradientTransformation, got {optimizer!r}"
        )
    return factory(learning_rate, **kwargs)


# Steps at which a schedule is probed: a warmup may start at 0, but no step may be negative or NaN.
_SCHEDULE_PROBES = (0, 1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


def check_learning_rate(learning_rate: Any) -> None:
    """Refuses a learning rate that would not train: not a number, not finite, or not positive.

    A negative rate trains by gradient ascent without any error. A schedule is
    probed at a few steps from 0 to 10⁶; it may be 0 (a warmup's start, a decay's
    end) but never negative or non-finite.
    """
    if callable(learning_rate):
        for step in _SCHEDULE_PROBES:
            try:
                value = float(learning_rate(jnp.asarray(step)))
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"learning_rate must be a number or an optax schedule step -> rate; calling it with step={step} "
                    f"failed: {err}"
                ) from err
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"learning_rate schedule gives {value} at step {step}; it must be finite and >= 0")
        return
    if not _is_number(learning_rate):
        raise TypeError(
            f"learning_rate must be a positive number or an optax schedule, got "
            f"{type(learning_rate).__name__} {learning_rate!r}"
        )
    if not (math.isfinite(float(learning_rate)) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive finite number, got {learning_rate!r}")


def _is_number(value: Any) -> bool:
    """A real scalar: a Python/numpy number or a 0-d real array, not a bool."""
    if isinstance(value, (jax.Array, np.ndarray)):
        return value.ndim == 0 and bool(jnp.issubdtype(value.dtype, jnp.number)) and value.dtype != jnp.bool_
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _parameters(fn: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()


def standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Runs ``tx`` under JAX's standard dtype promotion, whatever the caller's setting.

    optax mixes int32 step counters with float arrays (Adam's bias correction
    ``b ** count``, MultiSteps' running mean), which ``jax_numpy_dtype_promotion="strict"``
    (recurrax's tests, careful users) rejects.
    """

    def init(params: Any) -> Any:
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates: Any, state: Any, params: Any = None, **extra: Any) -> Any:
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra)

    return optax.GradientTransformationExtraArgs(init, update)


def _norm_snapshot(name: str) -> optax.GradientTransformation:
    """``optax.snapshot`` of the global norm, starting at zero instead of ‖params‖.

    With accumulation the inner state only changes when an update is made, so
    the first micro-steps would otherwise report the parameter norm.
    """
    snap = optax.snapshot(name, optax.tree.norm)

    def init(params: Any) -> Any:
        state = snap.init(params)
        return state._replace(measurement={name: jnp.zeros_like(state.measurement[name])})

    return snap._replace(init=init)
