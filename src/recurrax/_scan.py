"""The one scan engine that runs any cell over a sequence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from recurrax._fused import fused_sequential_scan, hoist_by_default, use_fused_path
from recurrax._validation import check_initial_carry, check_lengths, check_mask_like, check_sequence
from recurrax.cells._base import Array, Carry, Cell, Params, tree_where

StepFunction = Callable[[Carry, Array], tuple[Carry, Array]]

_METHODS = ("sequential", "parallel")


def scan(
    cell: Cell | StepFunction,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
    method: Literal["sequential", "parallel"] = "sequential",
    hoist_input_projection: bool | None = None,
    return_carries: bool = False,
    carry_perturbation: Carry | None = None,
    fused: bool | None = None,
) -> tuple[Array, Carry] | tuple[Array, Carry, Carry]:
    """Runs ``cell`` over the time axis of ``xs``; equal to this Python loop::

        def scan(cell, params, xs, initial_carry, lengths, resets, reverse):
            for b in batch:                           # every example on its own
                carry = initial_carry[b]
                steps = range(lengths[b])             # only the valid steps
                for t in (reversed(steps) if reverse else steps):
                    # resets[b, t] marks the first step of an episode; backwards,
                    # an episode is entered at its last step instead.
                    if (resets[b, t + 1] if reverse else resets[b, t]):
                        carry = initial_carry[b]
                    carry, ys[b, t] = cell.step(params, carry, xs[b, t])
                ys[b, lengths[b]:] = 0                # padding outputs are zero
                final_carry[b] = carry                # the carry at b's own end
            return ys, final_carry

    Shapes (``*B`` any batch dims, possibly none):
      xs: ``[*B, T, D]``, or ``[T, *B, D]`` with ``time_major``.
      lengths: ``[*B]`` integers in ``[1, T]``; default: all ``T``.
      resets: ``[*B, T]`` (``[T, *B]`` time-major) booleans.
      returns: ``ys`` ``[*B, T, O]`` (``[T, *B, O]``) and the final carry
        (leaves ``[*B, ...]``); with ``return_carries`` also the carry after
        every step, leaves ``[*B, T, ...]`` (``[T, *B, ...]``), in ``xs``'s order.

    Args:
      cell: a :class:`~recurrax.cells.Cell`, or any ``step(carry, x) -> (carry, y)``
        function (then ``params`` is ignored and ``initial_carry`` is required).
      params: the cell's parameters, as made by ``cell.init``.
      xs: the input sequence (floating dtype).
      initial_carry: the carry at the first step (default ``cell.initial_carry``).
      lengths: valid length of each example; the carry freezes after it.
      resets: where the carry restarts from ``initial_carry`` (episode starts).
      reverse: run each example backwards over its own valid steps (what the
        backward half of a bidirectional layer needs); ``ys`` stay aligned with ``xs``.
      time_major: ``xs`` (and ``ys``) have time as their leading axis.
      unroll: steps unrolled in each loop iteration (``lax.scan``'s ``unroll``).
      remat: recompute each step in the backward pass instead of storing its
        intermediates (gradient checkpointing: memory O(T·|carry|)).
      method: ``"parallel"`` runs a :class:`~recurrax.cells.LinearCell` with
        ``jax.lax.associative_scan`` (depth O(log T)); same results. A cell
        with ``log_space=True`` (minGRU, minLSTM) is scanned in log space.
      hoist_input_projection: apply the input matmul to all steps before the
        loop. Default: whenever the cell supports it, except on CPU, where the
        matmul inside the step was faster in 12 of the 14 cell and mode pairs
        measured (``benchmarks/README.md``).
      return_carries: also return the carry after every step.
      carry_perturbation: a pytree shaped like the stacked carries whose entry
        ``t`` is added to the carry that step ``t`` receives. Zeros change
        nothing, but the gradient with respect to entry ``t`` is ∂L/∂(the state
        entering step t), through every later output and the final carry —
        gradient flow through time, without changing the model.
      fused: run the plain LSTM / ``reset_after`` GRU on the faster fused path
        (``recurrax._fused``: same results, weight gradients batched over time).
        Default ``None``: whenever the cell, dtypes and options allow;
        ``False``: always the step loop; ``True``: raise where not supported.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.lstm(16)
      >>> params = cell.init(jax.random.key(0), input_size=4)
      >>> xs = jnp.ones((2, 10, 4))
      >>> ys, carry = recurrax.scan(cell, params, xs, lengths=jnp.array([10, 6]))
      >>> bool(jnp.all(ys[1, 6:] == 0))
      True
    """
    is_cell = isinstance(cell, Cell)
    if not is_cell and not callable(cell):
        raise TypeError(f"cell must be a recurrax Cell or a step(carry, x) function, got {type(cell).__name__}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if method == "parallel" and not (is_cell and cell.is_linear):
        raise ValueError(
            f"method='parallel' needs a linear-recurrence cell (LinearCell), got {type(cell).__name__}; "
            "use method='sequential'"
        )
    if isinstance(unroll, bool):
        unroll = 1 if not unroll else True
    elif not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"unroll must be a positive int or a bool, got {unroll!r}")

    expected_features = cell.input_size(params) if is_cell else None
    xs = check_sequence(xs, "xs", time_major=time_major, features=expected_features)
    time_axis = 0 if time_major else xs.ndim - 2
    num_steps = xs.shape[time_axis]
    batch_shape = xs.shape[1:-1] if time_major else xs.shape[:-2]

    if initial_carry is None:
        if not is_cell:
            raise ValueError("initial_carry is required when cell is a plain step function")
        initial_carry = cell.initial_carry(batch_shape)
    elif is_cell:
        check_initial_carry(initial_carry, cell.initial_carry(batch_shape), batch_shape)

    if lengths is not None:
        lengths = check_lengths(lengths, batch_shape, num_steps)
    if resets is not None:
        resets = check_mask_like(resets, "resets", batch_shape, num_steps, time_major)

    # Inside, everything is time-major: the loop runs over the leading axis.
    def to_time_major(tree: Any) -> Any:
        return tree if time_major else jax.tree.map(lambda a: jnp.moveaxis(a, len(batch_shape), 0), tree)

    def from_time_major(tree: Any) -> Any:
        return tree if time_major else jax.tree.map(lambda a: jnp.moveaxis(a, 0, len(batch_shape)), tree)

    xs_tm = to_time_major(xs)
    resets_tm = None if resets is None else to_time_major(resets)
    valid_tm = None
    if lengths is not None:
        steps = jnp.arange(num_steps, dtype=lengths.dtype).reshape((num_steps,) + (1,) * len(batch_shape))
        valid_tm = steps < lengths[None]

    reverse_index = None
    if reverse:
        reverse_index = _reverse_within_lengths_index(num_steps, batch_shape, lengths)
        xs_tm = _gather_time(xs_tm, reverse_index)
        if resets_tm is not None:
            # Backwards, the carry restarts at each episode's last step: where
            # the next step starts an episode. (At an example's last valid step
            # the scan starts from the initial carry anyway.)
            shifted = jnp.concatenate([resets_tm[1:], jnp.zeros_like(resets_tm[:1])], axis=0)
            resets_tm = _gather_time(shifted, reverse_index)

    perturbation_tm = None
    if carry_perturbation is not None:
        if method == "parallel":
            raise ValueError("carry_perturbation needs method='sequential'")
        perturbation_tm = to_time_major(carry_perturbation)
        if reverse_index is not None:
            perturbation_tm = _gather_time(perturbation_tm, reverse_index)

    if method == "parallel":
        parallel_scan = _parallel_log_linear_scan if getattr(cell, "log_space", False) else _parallel_linear_scan
        ys_tm, final_carry, carries_tm = parallel_scan(cell, params, xs_tm, initial_carry, valid_tm, resets_tm)
    elif is_cell and use_fused_path(
        fused,
        cell,
        params,
        xs_tm,
        initial_carry,
        method=method,
        hoist_input_projection=hoist_input_projection,
        carry_perturbation=perturbation_tm,
        return_carries=return_carries,
    ):
        ys_tm, final_carry = fused_sequential_scan(
            cell,
            params,
            xs_tm,
            initial_carry,
            valid_tm,
            resets_tm,
            unroll=unroll,
            remat=remat,
            hoist_input_projection=hoist_input_projection,
        )
        carries_tm = None
    else:
        if fused:
            raise ValueError("fused=True needs a recurrax Cell, got a plain step function")
        if is_cell:
            use_projection = (
                cell.supports_input_projection and hoist_by_default()
                if hoist_input_projection is None
                else hoist_input_projection
            )
            if use_projection and not cell.supports_input_projection:
                raise ValueError(f"hoist_input_projection=True but {type(cell).__name__} has no input projection")
            if use_projection:
                xs_tm = cell.project_inputs(params, xs_tm)

                def step(carry: Carry, x: Array) -> tuple[Carry, Array]:
                    return cell.step_projected(params, carry, x)
            else:

                def step(carry: Carry, x: Array) -> tuple[Carry, Array]:
                    return cell.step(params, carry, x)
        else:
            step = cell
        ys_tm, final_carry, carries_tm = _sequential_scan(
            step,
            xs_tm,
            initial_carry,
            valid_tm,
            resets_tm,
            perturbation_tm,
            unroll=unroll,
            remat=remat,
            keep_carries=return_carries,
        )

    if reverse_index is not None:
        ys_tm = _gather_time(ys_tm, reverse_index)
        if carries_tm is not None:
            carries_tm = _gather_time(carries_tm, reverse_index)

    ys = from_time_major(ys_tm)
    if return_carries:
        return ys, final_carry, from_time_major(carries_tm)
    return ys, final_carry


def _sequential_scan(
    step: StepFunction,
    xs_tm: Array,
    initial_carry: Carry,
    valid_tm: Array | None,
    resets_tm: Array | None,
    perturbation_tm: Carry | None,
    *,
    unroll: int | bool,
    remat: bool,
    keep_carries: bool,
) -> tuple[Array, Carry, Carry | None]:
    def body(carry: Carry, inputs: tuple) -> tuple[Carry, Any]:
        x, valid, reset, perturbation = inputs
        if perturbation is not None:
            carry = jax.tree.map(jnp.add, carry, perturbation)
        start = carry if reset is None else tree_where(reset, initial_carry, carry)
        new_carry, y = step(start, x)
        if valid is not None:
            # Past an example's end its carry freezes and its outputs are zero.
            new_carry = tree_where(valid, new_carry, carry)
            y = tree_where(valid, y, jax.tree.map(jnp.zeros_like, y))
        return new_carry, ((y, new_carry) if keep_carries else (y, None))

    if remat:
        body = jax.checkpoint(body)
    final_carry, (ys, carries) = jax.lax.scan(
        body, initial_carry, (xs_tm, valid_tm, resets_tm, perturbation_tm), unroll=unroll
    )
    return ys, final_carry, carries


def _parallel_linear_scan(
    cell: Cell,
    params: Params,
    xs_tm: Array,
    initial_carry: Array,
    valid_tm: Array | None,
    resets_tm: Array | None,
) -> tuple[Array, Array, Array]:
    a, b = cell.recurrence_coefficients(params, xs_tm)
    h0 = jnp.broadcast_to(initial_carry, a.shape[1:]).astype(jnp.result_type(a, b, initial_carry))

    # Fold the initial carry (and every reset back to it) into b, so that the
    # scan starts from zero: h_t = a_t h_{t-1} + b_t with h_{-1} = 0.
    starts = _expand_to(_episode_starts(xs_tm, resets_tm), a.ndim)
    b = jnp.where(starts, a * h0 + b, b)
    a = jnp.where(starts, jnp.zeros_like(a), a)
    if valid_tm is not None:
        valid = _expand_to(valid_tm, a.ndim)
        a = jnp.where(valid, a, jnp.ones_like(a))
        b = jnp.where(valid, b, jnp.zeros_like(b))

    def combine(earlier: tuple[Array, Array], later: tuple[Array, Array]) -> tuple[Array, Array]:
        a1, b1 = earlier
        a2, b2 = later
        return a2 * a1, a2 * b1 + b2

    _, hs = jax.lax.associative_scan(combine, (a, b), axis=0)
    return _read_out(cell, params, hs.astype(initial_carry.dtype), xs_tm, valid_tm)


def _parallel_log_linear_scan(
    cell: Cell,
    params: Params,
    xs_tm: Array,
    initial_carry: Array,
    valid_tm: Array | None,
    resets_tm: Array | None,
) -> tuple[Array, Array, Array]:
    """:func:`_parallel_linear_scan` in log space, for cells with ``b_t > 0`` (``log_space=True``).

    The cell gives ``(log a, log b)``. Products of many gates underflow in
    linear space but are sums here (Heinsen, 2023). The initial carry may have
    any sign, so it is kept out of the logs: ``h_t = A_t ⊙ h0 + B_t`` where
    ``A_t`` (the gate product since the last start) and ``B_t`` (the state
    from a zero carry) are two log-space recurrences sharing ``log a``.
    """
    log_a, log_b = cell.log_recurrence_coefficients(params, xs_tm)
    # A finite "log 0": exp of it is exactly 0, and unlike -inf it never makes
    # logaddexp's derivative 0/0 (NaN) where both of its arguments are "log 0".
    log_zero = jnp.asarray(-1e4, log_a.dtype)

    starts = _expand_to(_episode_starts(xs_tm, resets_tm), log_a.ndim)
    log_b_initial = jnp.where(starts, log_a, log_zero)  # A_t restarts at a_t on every start
    log_a = jnp.where(starts, log_zero, log_a)  # nothing flows in from before a start
    if valid_tm is not None:
        valid = _expand_to(valid_tm, log_a.ndim)
        log_a = jnp.where(valid, log_a, jnp.zeros_like(log_a))
        log_b = jnp.where(valid, log_b, log_zero)
        log_b_initial = jnp.where(valid, log_b_initial, log_zero)

    def combine(earlier: tuple[Array, Array, Array], later: tuple[Array, Array, Array]) -> tuple[Array, ...]:
        la1, lb1, lc1 = earlier
        la2, lb2, lc2 = later
        return la1 + la2, jnp.logaddexp(la2 + lb1, lb2), jnp.logaddexp(la2 + lc1, lc2)

    _, log_hs, log_initial_weight = jax.lax.associative_scan(combine, (log_a, log_b, log_b_initial), axis=0)
    h0 = jnp.broadcast_to(initial_carry, log_a.shape[1:]).astype(log_a.dtype)
    hs = (jnp.exp(log_hs) + jnp.exp(log_initial_weight) * h0).astype(initial_carry.dtype)
    return _read_out(cell, params, hs, xs_tm, valid_tm)


def _episode_starts(xs_tm: Array, resets_tm: Array | None) -> Array:
    """``[T, *B]`` (or broadcastable): where the carry starts from the initial carry."""
    num_steps = xs_tm.shape[0]
    starts = (jnp.arange(num_steps) == 0).reshape((num_steps,) + (1,) * (xs_tm.ndim - 2))
    return starts if resets_tm is None else starts | resets_tm


def _expand_to(mask: Array, ndim: int) -> Array:
    """Appends unit axes so that a ``[T, *B]`` mask broadcasts against ``[T, *B, ...]``."""
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))


def _read_out(
    cell: Cell, params: Params, hs: Array, xs_tm: Array, valid_tm: Array | None
) -> tuple[Array, Array, Array]:
    """Outputs (zero past each example's end), final carry and all carries of a parallel scan."""
    ys = cell.readout(params, hs, xs_tm)
    if valid_tm is not None:
        ys = tree_where(valid_tm, ys, jax.tree.map(jnp.zeros_like, ys))
    return ys, hs[-1], hs


def _reverse_within_lengths_index(num_steps: int, batch_shape: tuple[int, ...], lengths: Array | None) -> Array:
    """Index ``[T, *B]`` that reverses each example's first ``lengths[b]`` steps.

    It is its own inverse, so the same gather puts outputs back in place.
    """
    if lengths is None:
        steps = np.arange(num_steps, dtype=np.int32).reshape((num_steps,) + (1,) * len(batch_shape))
        return jnp.broadcast_to(jnp.asarray(num_steps - 1 - steps), (num_steps, *batch_shape))
    steps = jnp.arange(num_steps, dtype=lengths.dtype).reshape((num_steps,) + (1,) * len(batch_shape))
    return jnp.where(steps < lengths[None], lengths[None] - 1 - steps, steps)


def _gather_time(tree: Any, index: Array) -> Any:
    def gather(a: Array) -> Array:
        idx = index.reshape(index.shape + (1,) * (a.ndim - index.ndim))
        return jnp.take_along_axis(a, idx, axis=0)

    return jax.tree.map(gather, tree)
