"""The engine's parallel path: a linear cell's recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` by associative scan.

Depth O(log T) instead of T. The cell supplies the coefficients and the
outputs (:class:`~recurrax.LinearCell`); this module folds in the initial
carry, episode starts (``resets``) and padding (``lengths``) so that the
result equals the step loop's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from recurrax._cell import Steps
from recurrax._linear_cell import LinearCell, LinearTerms
from recurrax._ops import zero_padding
from recurrax._types import Array, Carry, Params


def parallel_scan(
    cell: LinearCell, params: Params, xs_tm: Array, initial_carry: Carry, steps: Steps, last: Array | None
) -> tuple[Array, Carry, Array]:
    """``(ys[T, *B, O], final_carry, hs[T, *B, ...])`` for time-major ``xs_tm``; ``last[*B]`` = each example's end."""
    starts = episode_starts(xs_tm, steps.resets)
    if cell.parallel_log_space():
        hs = _log_space_states(cell, params, xs_tm, initial_carry, starts, steps.valid)
        terms = LinearTerms(None, None, xs_tm)
    else:
        terms = cell.linear_terms(params, initial_carry, xs_tm, starts)
        hs = _linear_states(terms, cell.linear_state(initial_carry), starts, steps.valid)
    ys, final_carry = cell.linear_outputs(params, initial_carry, hs, terms, last)
    if steps.valid is not None:
        ys = zero_padding(ys, steps.valid)
    return ys, final_carry, hs


def episode_starts(xs_tm: Array, resets_tm: Array | None) -> Array:
    """``[T, *B]`` (or broadcastable): where the carry starts from the initial carry."""
    num_steps = xs_tm.shape[0]
    starts = (jnp.arange(num_steps) == 0).reshape((num_steps,) + (1,) * (xs_tm.ndim - 2))
    return starts if resets_tm is None else starts | resets_tm


def _linear_states(terms: LinearTerms, h0: Array, starts: Array, valid: Array | None) -> Array:
    a, b = terms.a, terms.b
    assert a is not None and b is not None  # only the log-space path leaves them None
    state_dtype = h0.dtype
    h0 = jnp.broadcast_to(h0, a.shape[1:]).astype(jnp.result_type(a, b, h0))
    # Fold the initial carry (and every reset back to it) into b, so that the
    # scan starts from zero: h_t = a_t h_{t-1} + b_t with h_{-1} = 0.
    at_start = _expand_to(starts, a.ndim)
    b = jnp.where(at_start, a * h0 + b, b)
    a = jnp.where(at_start, jnp.zeros_like(a), a)
    if valid is not None:
        # Past an example's end the state is carried unchanged: a = 1, b = 0.
        keep = _expand_to(valid, a.ndim)
        a = jnp.where(keep, a, jnp.ones_like(a))
        b = jnp.where(keep, b, jnp.zeros_like(b))

    def combine(earlier: tuple[Array, Array], later: tuple[Array, Array]) -> tuple[Array, Array]:
        a1, b1 = earlier
        a2, b2 = later
        return a2 * a1, a2 * b1 + b2

    hs: Array
    _, hs = jax.lax.associative_scan(combine, (a, b), axis=0)
    return hs.astype(state_dtype)


def _log_space_states(
    cell: LinearCell, params: Params, xs_tm: Array, initial_carry: Array, starts: Array, valid: Array | None
) -> Array:
    """The states by a scan in log space, for cells with ``b_t > 0`` (``log_space=True``).

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

    at_start = _expand_to(starts, log_a.ndim)
    log_b_initial = jnp.where(at_start, log_a, log_zero)  # A_t restarts at a_t on every start
    log_a = jnp.where(at_start, log_zero, log_a)  # nothing flows in from before a start
    if valid is not None:
        keep = _expand_to(valid, log_a.ndim)
        log_a = jnp.where(keep, log_a, jnp.zeros_like(log_a))
        log_b = jnp.where(keep, log_b, log_zero)
        log_b_initial = jnp.where(keep, log_b_initial, log_zero)

    def combine(earlier: tuple[Array, Array, Array], later: tuple[Array, Array, Array]) -> tuple[Array, ...]:
        la1, lb1, lc1 = earlier
        la2, lb2, lc2 = later
        return la1 + la2, jnp.logaddexp(la2 + lb1, lb2), jnp.logaddexp(la2 + lc1, lc2)

    _, log_hs, log_initial_weight = jax.lax.associative_scan(combine, (log_a, log_b, log_b_initial), axis=0)
    h0 = jnp.broadcast_to(initial_carry, log_a.shape[1:]).astype(log_a.dtype)
    return (jnp.exp(log_hs) + jnp.exp(log_initial_weight) * h0).astype(initial_carry.dtype)


def _expand_to(mask: Array, ndim: int) -> Array:
    """Appends unit axes so that a ``[T, *B]`` mask broadcasts against ``[T, *B, ...]``."""
    return mask.reshape(mask.shape + (1,) * (ndim - mask.ndim))
