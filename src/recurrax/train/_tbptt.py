"""Truncated backpropagation through time (Williams & Peng, 1990).

A long sequence ``[B, T, ...]`` is cut into chunks of ``chunk_size`` steps.
The model runs chunk after chunk, each starting from the previous chunk's
final carry with its gradient stopped, so the backward pass only spans one
chunk: memory O(chunk) instead of O(T), while the forward pass is exactly the
full-sequence forward pass.

A model used this way is a *streaming model*: it takes ``initial_carry=`` and
returns ``(predictions, final_carry)`` (a ``recurrax.nn`` layer with
``return_carry=True``, or a module that wraps one), and its predictions and
targets have a time axis (``[B, T, ...]``).

The first chunk runs on its own (it starts from the model's own initial carry
and fixes the structure of everything threaded along), the following full
chunks inside one ``jax.lax.scan``, and a shorter last chunk on its own, so
compile time does not grow with T.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from recurrax.train._losses import ValueFn, sequence_mask
from recurrax.train._objective import Batch, Objective, Stats, as_objective, split_params

Array = jax.Array
# chunk_fn(state, carry, chunk, chunk_lengths) -> (state, carry, output); carry is None for the first chunk.
ChunkFn = Callable[[Any, Any, dict[str, Array], "Array | None"], tuple[Any, Any, Any]]


class ChunkOutputs(NamedTuple):
    """Per-chunk outputs of :func:`run_chunks`: first chunk, scanned chunks (stacked), short last chunk."""

    first: Any
    middle: Any | None
    last: Any | None

    def along_time(self) -> Any:
        """Joins per-chunk arrays ``[B, t, ...]`` into ``[B, T, ...]``."""
        parts = [self.first]
        if self.middle is not None:
            # [m, B, K, ...] -> [B, m*K, ...]
            parts.append(
                jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1).reshape((a.shape[1], -1, *a.shape[3:])), self.middle)
            )
        if self.last is not None:
            parts.append(self.last)
        return jax.tree.map(lambda *a: jnp.concatenate(a, axis=1), *parts)

    def along_chunks(self) -> Any:
        """Stacks per-chunk values into arrays with a leading ``[num_chunks]`` axis."""
        parts = [jax.tree.map(lambda a: a[None], self.first)]
        if self.middle is not None:
            parts.append(self.middle)
        if self.last is not None:
            parts.append(jax.tree.map(lambda a: a[None], self.last))
        return jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *parts)


def num_chunks(num_steps: int, chunk_size: int) -> int:
    """How many chunks ``T`` steps make (the last one may be shorter)."""
    return -(-num_steps // chunk_size)


def check_chunk_size(chunk_size: Any) -> int:
    """Validates ``chunk_size`` (a positive int) and returns it."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"tbptt chunk_size must be a positive int, got {chunk_size!r}")
    return chunk_size


def check_streaming_batch(objective: Objective, batch: Batch) -> int:
    """Checks that ``batch``'s inputs and targets share ``[B, T]``; returns T."""
    inputs, targets = batch[objective.inputs_key], batch[objective.targets_key]
    if jnp.ndim(inputs) != 3:
        raise ValueError(f"truncated BPTT needs inputs [B, T, D], got shape {tuple(jnp.shape(inputs))}")
    if jnp.ndim(targets) < 2 or jnp.shape(targets)[:2] != jnp.shape(inputs)[:2]:
        raise ValueError(
            "truncated BPTT needs per-step targets [B, T, ...] matching inputs [B, T] = "
            f"{tuple(jnp.shape(inputs)[:2])}, got targets of shape {tuple(jnp.shape(targets))}"
        )
    return int(jnp.shape(inputs)[1])


def run_chunks(
    chunk_fn: ChunkFn,
    state: Any,
    batch: Mapping[str, Array],
    time_keys: Sequence[str],
    lengths: Array | None,
    chunk_size: int,
) -> tuple[Any, Any, ChunkOutputs]:
    """Runs ``chunk_fn`` over consecutive time chunks of ``batch``, threading ``state`` and the carry.

    Equal to this loop (``carry`` starts as None: the model's own initial carry)::

        for start in range(0, T, chunk_size):
            chunk = {k: v[:, start:start + chunk_size] if k in time_keys else v for k, v in batch.items()}
            state, carry, out = chunk_fn(state, carry, chunk, clip(lengths - start, 0, size))

    Args:
      chunk_fn: ``(state, carry, chunk, chunk_lengths) -> (state, carry, output)``.
      state: anything threaded through the chunks (parameters, sums, ...).
      batch: arrays; those under ``time_keys`` are ``[B, T, ...]`` and get cut along T.
      time_keys: the keys of ``batch`` with a time axis.
      lengths: ``[B]`` valid lengths of the whole sequences, or None; a chunk
        gets 0 for an example that already ended.
      chunk_size: steps per chunk.

    Returns:
      ``(state, final_carry, outputs)``.
    """
    num_steps = int(jnp.shape(batch[time_keys[0]])[1])
    full = num_steps // chunk_size

    def chunk_at(start: int, stop: int) -> tuple[dict[str, Array], Array | None]:
        chunk = {k: (v[:, start:stop] if k in time_keys else v) for k, v in batch.items()}
        return chunk, _chunk_lengths(lengths, start, stop - start)

    state, carry, first = chunk_fn(state, None, *chunk_at(0, min(chunk_size, num_steps)))
    middle = None
    if full > 1:

        def split(v: Array) -> Array:  # [B, T, ...] -> [full-1, B, K, ...]
            v = v[:, chunk_size : full * chunk_size]
            return jnp.moveaxis(v.reshape((v.shape[0], full - 1, chunk_size, *v.shape[2:])), 1, 0)

        xs = {k: split(batch[k]) for k in time_keys}
        starts = jnp.arange(1, full, dtype=jnp.int32) * chunk_size

        def body(loop: tuple[Any, Any], inputs: tuple[dict[str, Array], Array]) -> tuple[tuple[Any, Any], Any]:
            st, cy = loop
            sliced, start = inputs
            chunk = {k: (sliced[k] if k in time_keys else v) for k, v in batch.items()}
            st, cy, out = chunk_fn(st, cy, chunk, _chunk_lengths(lengths, start, chunk_size))
            return (st, cy), out

        (state, carry), middle = jax.lax.scan(body, (state, carry), (xs, starts))
    last = None
    start = max(full, 1) * chunk_size
    if num_steps > start:
        state, carry, last = chunk_fn(state, carry, *chunk_at(start, num_steps))
    return state, carry, ChunkOutputs(first, middle, last)


def chunk_loss(
    params: Any,
    rest: Any,
    graphdef: nnx.GraphDef[Any],
    objective: Objective,
    carry: Any,
    chunk: Mapping[str, Array],
    chunk_lengths: Array | None,
    denominator: Array | None,
) -> tuple[Array, tuple[Stats, Any, Array, Any]]:
    """One chunk's loss ``total / denominator`` (None: the chunk's own count) and its by-products.

    The incoming ``carry`` is stopped, so the gradient stays inside the chunk.
    Returns ``(loss, (stats, final_carry, predictions, new_rest))``.
    """
    model = nnx.merge(graphdef, params, rest)
    if carry is not None:
        carry = jax.lax.stop_gradient(carry)
    out = objective.apply(model, chunk[objective.inputs_key], chunk_lengths, initial_carry=carry)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(
            "truncated BPTT needs a streaming model that returns (predictions, final_carry) when called with "
            f"initial_carry=...; the model returned {type(out).__name__}"
        )
    predictions, new_carry = out
    predictions = objective.cast_output(predictions)
    stats = objective.stats(predictions, chunk, lengths=chunk_lengths)
    total, count = stats["loss"]
    # A chunk in which every example already ended has nothing to average.
    denominator = jnp.maximum(count, 1.0) if denominator is None else denominator
    new_rest = split_params(model)[2]
    return total / denominator, (stats, new_carry, predictions, nnx.as_pure(new_rest))


def sequence_grad(
    graphdef: nnx.GraphDef[Any],
    objective: Objective,
    chunk_size: int,
    params: Any,
    rest: Any,
    batch: Mapping[str, Array],
) -> tuple[tuple[Array, Stats, Array], Any, Any]:
    """Functional core of :func:`tbptt_value_and_grad` (traceable; the fit loop uses it too).

    Returns ``((mean loss, stats, predictions [B, T, ...]), grads, new_rest)``.
    """
    lengths = objective.lengths(batch)
    time_keys = (objective.inputs_key, objective.targets_key)
    # Each chunk's loss total is divided by the whole batch's count of valid
    # entries, so the chunk gradients add up to the gradient of the full mean.
    shape = jnp.shape(batch[objective.targets_key])[:2]
    if lengths is None:
        denominator = jnp.asarray(shape[0] * shape[1], jnp.float32)
    else:
        denominator = jnp.sum(sequence_mask(lengths, shape[1]).astype(jnp.float32))
    grad_fn = jax.value_and_grad(chunk_loss, has_aux=True)

    def chunk_fn(state: Any, carry: Any, chunk: dict[str, Array], chunk_lengths: Array | None) -> Any:
        grads_sum, stats_sum, rest_ = state
        (_, (stats, carry, predictions, rest_)), grads = grad_fn(
            params, rest_, graphdef, objective, carry, chunk, chunk_lengths, denominator
        )
        if grads_sum is not None:
            grads = jax.tree.map(jnp.add, grads_sum, grads)
            stats = jax.tree.map(jnp.add, stats_sum, stats)
        return (grads, stats, rest_), carry, predictions

    (grads, stats, new_rest), _, outputs = run_chunks(
        chunk_fn, (None, None, rest), batch, time_keys, lengths, chunk_size
    )
    total, count = stats["loss"]
    return (total / count, stats, outputs.along_time()), grads, new_rest


def tbptt_value_and_grad(
    model: nnx.Module,
    batch: Batch,
    *,
    chunk_size: int,
    loss: str | ValueFn | Objective = "mse",
    metrics: Sequence[str] | Mapping[str, ValueFn] = (),
) -> tuple[tuple[Array, dict[str, Array], Array], nnx.State[Any, Any]]:
    """Loss, metrics, predictions and parameter gradient of a streaming model, by truncated BPTT.

    The forward pass equals the full-sequence forward pass; the gradient is the
    sum over chunks of each chunk's share of the loss, i.e. exactly the gradient
    of the full mean loss with ``jax.lax.stop_gradient`` on the carry at every
    chunk boundary. Runs jitted; the model's non-parameter state (dropout RNG
    counts) is updated in place.

    Args:
      model: a streaming model, ``model(xs, initial_carry=..., [lengths=...]) -> (ys, carry)``.
      batch: ``{"inputs": [B, T, D], "targets": [B, T, ...], "lengths": [B] (optional)}``.
      chunk_size: time steps per chunk (the last chunk may be shorter).
      loss, metrics: as in :class:`~recurrax.train.Objective`.

    Returns:
      ``((mean loss, {metric: mean}, predictions [B, T, ...]), grads)``, the
      gradient an ``nnx.State`` shaped like ``nnx.state(model, nnx.Param)``.
    """
    objective = as_objective(loss, metrics)
    chunk_size = check_chunk_size(chunk_size)
    check_streaming_batch(objective, batch)
    graphdef, params, rest = split_params(model)
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    (value, stats, predictions), grads, new_rest = _sequence_grad_jit(
        graphdef, objective, chunk_size, nnx.as_pure(params), nnx.as_pure(rest), batch
    )
    nnx.update(model, new_rest)
    means = {k: total / count for k, (total, count) in stats.items() if k != "loss"}
    return (value, means, predictions), grads


_sequence_grad_jit = jax.jit(sequence_grad, static_argnums=(0, 1, 2))


def _chunk_lengths(lengths: Array | None, start: Any, size: int) -> Array | None:
    if lengths is None:
        return None
    return jnp.clip(lengths - jnp.asarray(start, lengths.dtype), 0, size)
