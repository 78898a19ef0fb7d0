"""The jitted step functions: a train step (gradient, optimizer update, diagnostics), an eval and a predict step.

Each is a pure function of the model's graph definition and states. The
train step's static part (:class:`StepConfig`: graph definition, optimizer,
objective, TBPTT settings) is hashable, so every Trainer with an equal
configuration (the same model structure, the same optimizer object) shares one
compiled step: a resumed run does not compile again.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from recurrax.train._diagnostics import gradient_diagnostics
from recurrax.train._local_sgd import LocalSGD, replica_gradients
from recurrax.train._loss_scale import current_loss_scale
from recurrax.train._objective import Objective, Stats, split_params
from recurrax.train._partitioning import Partitioning
from recurrax.train._tbptt import chunk_loss, num_chunks, run_chunks, sequence_grad

Array = jax.Array
# (params, rest, opt_state, metrics, stats) after a train step.
StepResult = tuple[Any, Any, Any, dict[str, Array], Stats]


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Everything static about a train step (hashable: the jit cache key)."""

    graphdef: nnx.GraphDef[Any]
    optimizer: optax.GradientTransformation
    objective: Callable[[Any, Any], tuple[Array, Stats]]
    layers: tuple[str, ...] | None
    tbptt: int | None
    tbptt_update: str
    partitioning: Partitioning | None = None  # None: one device, and the step is exactly the unpartitioned one

    def steps_per_batch(self, batch: Mapping[str, Array]) -> int:
        """How many optimizer steps :func:`train_batch` takes on ``batch``: one per chunk for streaming TBPTT."""
        if self.tbptt is None or self.tbptt_update == "sequence":
            return 1
        assert isinstance(self.objective, Objective)
        return num_chunks(int(jnp.shape(batch[self.objective.inputs_key])[1]), self.tbptt)


@functools.partial(jax.jit, static_argnums=0)
def train_batch(config: StepConfig, params: Any, rest: Any, opt_state: Any, batch: dict[str, Array]) -> StepResult:
    """One batch: ``(params, rest, opt_state, metrics, stats)`` after its optimizer step(s).

    ``metrics`` are batch means and diagnostics (each ``[num_chunks]`` for
    streaming TBPTT, one optimizer step per chunk); ``stats`` are the batch's
    ``(total, count)`` sums for the epoch means.
    """
    if config.tbptt is not None and config.tbptt_update == "chunk":
        return _pinned(config, _train_chunks(config, params, rest, opt_state, batch))
    if config.tbptt is not None:
        assert isinstance(config.objective, Objective)
        (_, stats, _), grads, rest = sequence_grad(config.graphdef, config.objective, config.tbptt, params, rest, batch)
    else:
        # float16 training: the loss is multiplied by the optimizer state's loss scale (dynamic_loss_scale)
        # and the gradient divided by it again, so the optimizer and the diagnostics see true gradients.
        scale = current_loss_scale(opt_state)

        def loss_of(p: Any, r: Any, b: dict[str, Array]) -> tuple[Array, tuple[Stats, Any]]:
            model = nnx.merge(config.graphdef, p, r)
            loss, stats = config.objective(model, b)
            r = split_params(model)[2]
            return (loss if scale is None else loss * scale.astype(loss.dtype)), (stats, nnx.as_pure(r))

        if isinstance(config.optimizer, LocalSGD):  # each replica's gradient [R, ...] at its own parameters
            grads, stats, rest = replica_gradients(
                config.optimizer, loss_of, opt_state, rest, batch, config.partitioning
            )
        else:
            (_, (stats, rest)), grads = jax.value_and_grad(loss_of, has_aux=True)(params, rest, batch)
        if scale is not None:
            grads = jax.tree.map(lambda g: g / scale.astype(g.dtype), grads)
    params, opt_state, diag = _apply_gradient(config, grads, params, opt_state)
    return _pinned(config, (params, rest, opt_state, {**means(stats), **diag}, stats))


def _pinned(config: StepConfig, result: StepResult) -> StepResult:
    """The step's new state pinned to the partitioning's shardings (as it came in), so that every call
    compiles for the same layout and FSDP state never ends up whole on a device; unchanged without one."""
    part = config.partitioning
    if part is None:
        return result
    params, rest, opt_state, metrics, stats = result
    return (
        part.constrain_state(params),
        part.constrain_replicated(rest),
        part.constrain_state(opt_state),
        metrics,
        stats,
    )


def _apply_gradient(config: StepConfig, grads: Any, params: Any, opt_state: Any) -> tuple[Any, Any, dict[str, Array]]:
    local = isinstance(config.optimizer, LocalSGD)
    if config.partitioning is not None and config.partitioning.shard_params and not local:
        # Split like the parameters: XLA reduce-scatters the gradient instead of all-reducing it whole.
        grads = config.partitioning.constrain_state(grads)
    # optax mixes int32 counters with floats; run it under standard promotion
    # whatever the caller's jax_numpy_dtype_promotion is.
    with jax.numpy_dtype_promotion("standard"):
        updates, opt_state = config.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    diag = {}
    if config.layers is not None:
        if local:  # each replica's norms, then their mean: only scalars cross the devices, every step
            one = functools.partial(gradient_diagnostics, layers=config.layers)
            diag = jax.tree.map(
                jnp.mean, jax.vmap(one, in_axes=(0, None, None, None))(grads, updates, params, opt_state)
            )
        else:
            diag = gradient_diagnostics(grads, updates, params, opt_state, layers=config.layers)
    return params, opt_state, diag


def _train_chunks(config: StepConfig, params: Any, rest: Any, opt_state: Any, batch: dict[str, Array]) -> StepResult:
    """Streaming TBPTT: an optimizer step after every chunk; metrics come back per chunk."""
    objective = config.objective
    assert isinstance(objective, Objective) and config.tbptt is not None
    grad_fn = jax.value_and_grad(chunk_loss, has_aux=True)

    def chunk_fn(state: Any, carry: Any, chunk: dict[str, Array], chunk_lengths: Array | None) -> Any:
        p, r, o = state
        (_, (stats, carry, _, r)), grads = grad_fn(p, r, config.graphdef, objective, carry, chunk, chunk_lengths, None)
        p, o, diag = _apply_gradient(config, grads, p, o)
        return (p, r, o), carry, ({**means(stats), **diag}, stats)

    time_keys = (objective.inputs_key, objective.targets_key)
    (params, rest, opt_state), _, outputs = run_chunks(
        chunk_fn, (params, rest, opt_state), batch, time_keys, objective.lengths(batch), config.tbptt
    )
    metrics, stats = outputs.along_chunks()
    return params, rest, opt_state, metrics, jax.tree.map(lambda a: jnp.sum(a, axis=0), stats)


def means(stats: Stats) -> dict[str, Array]:
    """``{name: total / count}`` (NaN where a batch had nothing to average)."""
    return {k: total / count for k, (total, count) in stats.items()}


# Shared by every Trainer with the same model structure and objective (one compile).
@functools.partial(jax.jit, static_argnums=(0, 1))
def eval_batch(graphdef: nnx.GraphDef[Any], objective: Callable[..., Any], params: Any, rest: Any, batch: Any) -> Stats:
    """The batch's ``(total, count)`` sums of the loss and metrics (``graphdef`` in eval mode)."""
    stats: Stats = objective(nnx.merge(graphdef, params, rest), batch)[1]
    return stats


@functools.partial(jax.jit, static_argnums=(0, 1))
def predict_batch(graphdef: nnx.GraphDef[Any], objective: Objective, params: Any, rest: Any, batch: Any) -> Array:
    """The model's predictions for the batch, ``[B, ...]``."""
    return objective.predict(nnx.merge(graphdef, params, rest), batch)


@functools.partial(jax.jit, static_argnums=0)
def train_batches(config: StepConfig, params: Any, rest: Any, opt_state: Any, batches: dict[str, Array]) -> StepResult:
    """``S`` optimizer steps in one call, over the stacked batches ``[S, B, ...]`` (a ``lax.scan``).

    The computation of ``S`` calls of :func:`train_batch`, one per batch in
    order. The metrics and stats come back per step (leading axis ``S``) and
    are summed per batch on the host, so the history and epoch sums are those
    of ``S`` separate calls (up to how XLA fuses a diagnostic inside the scan).
    """
    if config.tbptt is not None and config.tbptt_update == "chunk":
        raise ValueError("train_batches takes one optimizer step per batch; streaming TBPTT takes one per chunk")

    def one_step(state: tuple[Any, ...], batch: dict[str, Array]) -> tuple[Any, ...]:
        params, rest, opt_state = state
        params, rest, opt_state, metrics, stats = train_batch(config, params, rest, opt_state, batch)
        return (params, rest, opt_state), (metrics, stats)

    metrics: dict[str, Array]
    stats: Stats
    (params, rest, opt_state), (metrics, stats) = jax.lax.scan(one_step, (params, rest, opt_state), batches)
    return params, rest, opt_state, metrics, stats
