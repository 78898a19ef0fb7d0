"""Dynamic loss scaling for float16 training, as an optax wrapper whose state is the scale.

float16 has 5 exponent bits: gradients below ~6e-8 flush to zero. Training
multiplies the loss by a large scale ``S`` (so the backward pass runs in
float16's range), divides the float32 gradient by ``S`` again, and adapts
``S``: halve it and skip the update when the gradient overflowed (Inf/NaN),
double it after ``growth_interval`` finite steps in a row (Micikevicius et
al., 2018; jmp's ``DynamicLossScale``, PyTorch's ``GradScaler`` and Keras'
``LossScaleOptimizer`` do the same). Kept in the optimizer state, the scale
is checkpointed with it, so a resumed run continues with the same scale.

The train step reads the scale with :func:`current_loss_scale`, multiplies
the loss by it and hands the optimizer the *unscaled* gradient: clipping,
accumulation and the gradient diagnostics all see true gradient norms.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from recurrax.train._optimizers import standard_promotion

Array = jax.Array


class LossScaleState(NamedTuple):
    """The state of :func:`dynamic_loss_scale` (field names are read by ``optax.tree.get``).

    Attributes:
      loss_scale: the current scale ``S`` (float32 scalar).
      loss_scale_good_steps: finite steps since the scale last changed (int32).
      loss_scale_skipped: updates skipped for an overflow so far (int32).
      inner_state: the wrapped optimizer's state (untouched by a skipped step).
    """

    loss_scale: Array
    loss_scale_good_steps: Array
    loss_scale_skipped: Array
    inner_state: Any


def dynamic_loss_scale(
    inner: optax.GradientTransformation,
    *,
    initial_scale: float = 2.0**15,
    growth_interval: int = 2000,
    factor: float = 2.0,
    min_scale: float = 1.0,
) -> optax.GradientTransformationExtraArgs:
    """Wraps ``inner`` with dynamic loss scaling: overflowed steps are skipped and the scale adapts.

    ``update(grads, state, params)`` takes the **unscaled** gradient (the train
    step divides by :func:`current_loss_scale` first). When any leaf holds a
    NaN or Inf the update is zero, ``inner``'s state stays as it was, the scale
    is divided by ``factor`` (not below ``min_scale``) and the skip is counted;
    otherwise ``inner`` updates as usual and, after ``growth_interval`` finite
    steps in a row, the scale is multiplied by ``factor``. At ``min_scale`` a
    non-finite gradient is no longer an overflow that a smaller scale cures:
    it goes to ``inner`` (whose non-finite guard, if any, counts it, or which
    makes the loss non-finite, and the Trainer stops).

    Outermost in the chain, it drops one overflowed micro-batch under gradient
    accumulation (as ``skip_nonfinite`` does) rather than the whole update.

    Args:
      inner: the optimizer (e.g. from :func:`~recurrax.train.build_optimizer`).
      initial_scale: ``S`` at the start (a power of two keeps the unscaling exact).
      growth_interval: finite steps in a row before the scale grows.
      factor: the growth and back-off factor.
      min_scale: the smallest scale.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = dynamic_loss_scale(optax.sgd(1.0), initial_scale=8.0, growth_interval=2)
      >>> params = {"w": jnp.zeros(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([jnp.inf, 1.0])}, state, params)
      >>> updates["w"].tolist(), float(state.loss_scale), int(state.loss_scale_skipped)
      ([0.0, 0.0], 4.0, 1)
      >>> for _ in range(2):
      ...     updates, state = tx.update({"w": jnp.ones(2)}, state, params)
      >>> updates["w"].tolist(), float(state.loss_scale)
      ([-1.0, -1.0], 8.0)
    """
    for name, value, low in (("initial_scale", initial_scale, 0.0), ("min_scale", min_scale, 0.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
        raise ValueError(f"factor must be a number > 1, got {factor!r}")
    if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
        raise ValueError(f"growth_interval must be a positive int, got {growth_interval!r}")
    if initial_scale < min_scale:
        raise ValueError(f"initial_scale ({initial_scale}) must be at least min_scale ({min_scale})")

    def init(params: Any) -> LossScaleState:
        return LossScaleState(
            loss_scale=jnp.asarray(initial_scale, jnp.float32),
            loss_scale_good_steps=jnp.zeros([], jnp.int32),
            loss_scale_skipped=jnp.zeros([], jnp.int32),
            inner_state=inner.init(params),
        )

    def update(updates: Any, state: LossScaleState, params: Any = None, **extra: Any) -> Any:
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(updates)]))
        skip = jnp.logical_and(jnp.logical_not(finite), state.loss_scale > min_scale)
        inner_updates, inner_state = optax.with_extra_args_support(inner).update(
            updates, state.inner_state, params, **extra
        )
        new_updates = jax.tree.map(lambda u: jnp.where(skip, jnp.zeros_like(u), u), inner_updates)
        new_inner = jax.tree.map(lambda old, new: jnp.where(skip, old, new), state.inner_state, inner_state)
        good = jnp.where(finite, state.loss_scale_good_steps + 1, 0)
        grown = state.loss_scale * factor
        grow = jnp.logical_and(good >= growth_interval, jnp.isfinite(grown))
        scale = jnp.where(grow, grown, state.loss_scale)
        scale = jnp.where(skip, jnp.maximum(state.loss_scale / factor, min_scale), scale)
        return new_updates, LossScaleState(
            loss_scale=scale.astype(jnp.float32),
            loss_scale_good_steps=jnp.where(grow, 0, good).astype(jnp.int32),
            loss_scale_skipped=(state.loss_scale_skipped + skip.astype(jnp.int32)).astype(jnp.int32),
            inner_state=new_inner,
        )

    # Under standard promotion, as build_optimizer's chains: optax mixes int32 counters with floats.
    return standard_promotion(optax.GradientTransformationExtraArgs(init, update))


def current_loss_scale(opt_state: Any) -> Array | None:
    """The loss scale held in ``opt_state`` (by :func:`dynamic_loss_scale`), or None without loss scaling."""
    scale: Array | None = optax.tree.get(opt_state, "loss_scale")
    return scale


_ADDED: dict[optax.GradientTransformation, optax.GradientTransformation] = {}


def with_loss_scaling(optimizer: optax.GradientTransformation, params: Any) -> optax.GradientTransformation:
    """``optimizer`` wrapped in :func:`dynamic_loss_scale` (default settings) unless its state already has a scale.

    The wrapper is made once per optimizer object, so Trainers over the same
    optimizer share one compiled step (a resumed run does not compile again).
    """
    with jax.numpy_dtype_promotion("standard"):
        if current_loss_scale(jax.eval_shape(optimizer.init, params)) is not None:
            return optimizer
    if optimizer not in _ADDED:
        _ADDED[optimizer] = dynamic_loss_scale(optimizer)
    return _ADDED[optimizer]
