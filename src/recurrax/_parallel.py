"""The engine's parallel path: a linear cell's recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` by associative scan.

Depth O(log T) instead of T. The cell supplies the coefficients and the
outputs (:class:`~recurrax.LinearCell`); this module folds in the initial
carry, episode starts (``resets``) and padding (``lengths``) so that the
result equals the step loop's.

Without resets, lengths or an initial carry the program is the hand-written
associative scan and nothing more: every mask below is built only when its
input was given (``benchmarks/linear_reference.py`` is the yardstick).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from recurrax._cell import Steps
from recurrax._linear_cell import LinearCell, LinearTerms, RecurrenceKernel
from recurrax._ops import linear_combine, zero_padding
from recurrax._options import ScanOptions
from recurrax._types import Array, Carry, Params


def parallel_scan(
    cell: LinearCell,
    params: Params,
    xs: Array,
    initial_carry: Carry,
    steps: Steps,
    last: Array | None,
    *,
    default_carry: bool = False,
    time_axis: int = 0,
    options: ScanOptions | None = None,
) -> tuple[Array, Carry, Array]:
    """``(ys, final_carry, hs)`` over ``xs`` with time along ``time_axis``; ``last[*B]`` = each example's end.

    ``xs`` is time-major (``[T, *B, D]``, ``time_axis=0``) unless the cell is in
    the per-step form (:func:`per_step_form`), which any layout suits; ``steps``'
    masks and the results ``ys``, ``hs`` share ``xs``'s layout. ``default_carry``:
    ``initial_carry`` is the cell's own default, so when its state is zero
    nothing of it enters the scan. ``options``: the call's, for the cell's
    :meth:`~recurrax.LinearCell.recurrence_kernel` (None: the associative scan).
    """
    starts = episode_starts(xs, steps.resets, time_axis)
    at_start = None if steps.resets is None else valid_starts(starts, steps.valid, time_axis)
    return linear_scan(
        cell, params, xs, initial_carry, starts, at_start, steps.valid, last,
        zero_state=default_carry and default_state_is_zero(cell), time_axis=time_axis,
        kernel=None if options is None else cell.recurrence_kernel(cell.linear_state(initial_carry), options),
    )  # fmt: skip


#: ``combine(earlier, later)``: the element of two consecutive stretches of steps, channel by channel.
Combine = Callable[[tuple[Array, ...], tuple[Array, ...]], tuple[Array, ...]]
#: ``scan(combine, elements, axis) -> composites``: every prefix of ``elements`` along ``axis``,
#: composed with ``combine``; :func:`associative_scan` on one device.
Scan = Callable[[Combine, tuple[Array, ...], int], tuple[Array, ...]]


def associative_scan(combine: Combine, elements: tuple[Array, ...], axis: int) -> tuple[Array, ...]:
    """The one-device :data:`Scan`: :func:`jax.lax.associative_scan`."""
    return tuple(jax.lax.associative_scan(combine, elements, axis=axis))


def linear_scan(
    cell: LinearCell,
    params: Params,
    xs: Array,
    initial_carry: Carry,
    starts: Array,
    at_start: Array | None,
    valid: Array | None,
    last: Array | None,
    *,
    zero_state: bool,
    time_axis: int,
    scan: Scan = associative_scan,
    kernel: RecurrenceKernel | None = None,
) -> tuple[Array, Carry, Array]:
    """:func:`parallel_scan` from its masks, with the prefix ``scan`` as an argument.

    ``starts``: episode starts as the cell's :meth:`~recurrax.LinearCell.linear_terms`
    reads them; ``at_start``: where the carry restarts from ``initial_carry``
    (:func:`valid_starts`), or None when only step 0 does; ``valid``: the
    padding mask (None: no padding); ``zero_state``: the initial carry's state
    is known to be zero, so nothing of it enters the scan. The sequence-parallel
    scan runs this on each device's chunk of time, with a ``scan`` that spans the devices.
    ``kernel``: the cell's kernel for the recurrence, run instead of ``scan``
    (in linear space: a sequential loop forms no long products of gates).
    """
    state_dtype = cell.linear_state(initial_carry).dtype
    h0 = None if zero_state else cell.linear_state(initial_carry)
    if kernel is not None:
        terms = cell.linear_terms(params, initial_carry, xs, starts)
        assert terms.a is not None and terms.b is not None
        hs = kernel(terms.a, terms.b, h0, at_start, valid, time_axis).astype(state_dtype)
    elif cell.parallel_log_space():
        log_a, log_b = cell.log_recurrence_coefficients(params, xs)
        hs = _log_space_states(log_a, log_b, h0, at_start, valid, time_axis, scan).astype(state_dtype)
        terms = LinearTerms(None, None, xs)
    else:
        terms = cell.linear_terms(params, initial_carry, xs, starts)
        hs = _linear_states(terms, h0, at_start, valid, time_axis, scan).astype(state_dtype)
    if time_axis == 0:
        ys, final_carry = cell.linear_outputs(params, initial_carry, hs, terms, last)
    else:
        # The per-step form's linear_outputs, along another axis: hs past an
        # example's end repeats its last state, so the final carry is the last step's.
        ys, final_carry = cell.readout(params, hs, xs), jax.lax.index_in_dim(hs, -1, time_axis, keepdims=False)
    if valid is not None:
        ys = zero_padding(ys, valid)
    return ys, final_carry, hs


def per_step_form(cell: LinearCell) -> bool:
    """Whether the cell keeps :class:`~recurrax.LinearCell`'s per-step form: its terms read one step each.

    Then :meth:`~recurrax.LinearCell.recurrence_coefficients` and ``readout``
    map any leading dims, and the parallel path needs no time-major layout.
    """
    kind = type(cell)
    return all(getattr(kind, name) is getattr(LinearCell, name) for name in _SEQUENCE_FORM)


_SEQUENCE_FORM = ("linear_terms", "linear_outputs", "linear_state")


def episode_starts(xs: Array, resets: Array | None, time_axis: int = 0) -> Array:
    """Where the carry starts from the initial carry: ``[T, *B]`` (``[*B, T]`` for ``time_axis > 0``), broadcastable."""
    starts = _first_step(xs.shape[time_axis], xs.ndim - 1, time_axis)
    return starts if resets is None else starts | resets


def default_state_is_zero(cell: LinearCell) -> bool:
    """Whether the cell's default carry holds a zero state: read from concrete values, also while tracing."""
    with jax.ensure_compile_time_eval():
        state = cell.linear_state(cell.initial_carry(()))
    return not np.any(np.asarray(state))


def _linear_states(
    terms: LinearTerms, h0: Array | None, at_start: Array | None, valid: Array | None, axis: int, scan: Scan
) -> Array:
    a, b = terms.a, terms.b
    assert a is not None and b is not None  # only the log-space path leaves them None
    if valid is not None:
        # Past an example's end the state is carried unchanged: a = 1, b = 0.
        keep = _expand_to(valid, a.ndim)
        a = jnp.where(keep, a, jnp.ones_like(a))
        b = jnp.where(keep, b, jnp.zeros_like(b))
    if at_start is not None:
        # Every start restarts from the initial carry: fold it into b there and
        # let nothing flow in from before, so that the scan starts from zero
        # (h_t = a_t h_{t-1} + b_t, h_{-1} = 0).
        at_start = _expand_to(at_start, a.ndim)
        if h0 is not None:
            b = jnp.where(at_start, a * _over_time(h0, axis).astype(jnp.result_type(a, b, h0)) + b, b)
        a = jnp.where(at_start, jnp.zeros_like(a), a)
    elif h0 is not None:
        # Only step 0 starts. Nothing precedes it, so the scan never reads a_0
        # and h0 enters through b_0 alone: a slice, not a select over all T.
        first = (slice(None),) * axis + (0,)
        b = b.at[first].add(a[first] * h0.astype(jnp.result_type(a, b, h0)))

    _, hs = scan(linear_combine, (a, b), axis)
    return hs


def _log_space_states(
    log_a: Array, log_b: Array, h0: Array | None, at_start: Array | None, valid: Array | None, axis: int, scan: Scan
) -> Array:
    """The states by a scan in log space, for cells with ``b_t > 0`` (``log_space=True``).

    The cell gives ``(log a, log b)``. Products of many gates underflow in
    linear space but are sums here (Heinsen, 2023). The initial carry may have
    any sign, so it is kept out of the logs: ``h_t = A_t ⊙ h0 + B_t`` where
    ``A_t`` is the gate product since the last start and ``B_t`` the state
    from a zero carry. Without resets ``A_t`` is the scan's own running sum
    of ``log a``; with them it restarts at every start and takes a third
    channel.
    """
    # A finite "log 0": exp of it is exactly 0, and unlike -inf it never makes
    # logaddexp's derivative 0/0 (NaN) where both of its arguments are "log 0".
    log_zero = jnp.asarray(-1e4, log_a.dtype)
    if valid is not None:
        # Past an example's end: a = 1, b = 0, so the state is carried unchanged.
        keep = _expand_to(valid, log_a.ndim)
        log_a = jnp.where(keep, log_a, jnp.zeros_like(log_a))
        log_b = jnp.where(keep, log_b, log_zero)

    if at_start is None:
        # Only step 0 starts; the scan never reads log a_0 (nothing precedes it),
        # so it stays, and the first channel is log A_t = log a_0 + … + log a_t.
        log_gates, log_hs = scan(_log_combine, (log_a, log_b), axis)
        hs = jnp.exp(log_hs)
        if h0 is None:
            return hs
        return hs + jnp.exp(log_gates) * _over_time(h0, axis).astype(hs.dtype)

    at_start = _expand_to(at_start, log_a.ndim)
    log_b_initial = jnp.where(at_start, log_a, log_zero)  # A_t restarts at a_t on every start
    log_a = jnp.where(at_start, log_zero, log_a)  # nothing flows in from before a start
    if h0 is None:
        _, log_hs = scan(_log_combine, (log_a, log_b), axis)
        return jnp.exp(log_hs)

    def combine(earlier: tuple[Array, ...], later: tuple[Array, ...]) -> tuple[Array, ...]:
        la1, lb1, lc1 = earlier
        la2, lb2, lc2 = later
        return la1 + la2, jnp.logaddexp(la2 + lb1, lb2), jnp.logaddexp(la2 + lc1, lc2)

    _, log_hs, log_initial_weight = scan(combine, (log_a, log_b, log_b_initial), axis)
    return jnp.exp(log_hs) + jnp.exp(log_initial_weight) * _over_time(h0, axis).astype(log_hs.dtype)


def _log_combine(earlier: tuple[Array, ...], later: tuple[Array, ...]) -> tuple[Array, ...]:
    la1, lb1 = earlier
    la2, lb2 = later
    return la1 + la2, jnp.logaddexp(la2 + lb1, lb2)


def valid_starts(starts: Array, valid: Array | None, axis: int = 0) -> Array:
    """The starts inside each example, and step 0 always: a reset in the padding must not restart a frozen carry."""
    return starts if valid is None else (starts & valid) | _first_step(valid.shape[axis], valid.ndim, axis)


def _over_time(h0: Array, axis: int) -> Array:
    """``h0[*B, ...]`` with a unit time axis, to broadcast against ``[T, *B, ...]`` or ``[*B, T, ...]``."""
    return jnp.expand_dims(h0, axis)


def _first_step(num_steps: int, ndim: int, axis: int) -> Array:
    """True at step 0 only, shaped to broadcast against an ``ndim``-dim mask with time along ``axis``."""
    shape = [1] * ndim
    shape[axis] = num_steps
    return (jnp.arange(num_steps) == 0).reshape(shape)


def _expand_to(mask: Array, ndim: int) -> Array:
    """Appends unit axes: a ``[T, *B]`` (or ``[*B, T]``) mask then broadcasts against the states."""
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))
