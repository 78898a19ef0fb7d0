"""The LSTM's whole-sequence path: one fused loop, weight gradients batched over time (see ``cells/_fused.py``).

It computes exactly what :meth:`LSTMCell.step <recurrax.cells.LSTMCell.step>`
computes step by step for the plain LSTM (no peepholes, layer norm or
projection), in one float dtype; :meth:`LSTMCell.sequence_unsupported` says so.
The gate equations are :func:`lstm_update`, shared with the step, and with
the Pallas kernel (``cells/_pallas_gated.py``) through its gate update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from recurrax._cell import Internals, Steps
from recurrax._ops import layer_norm
from recurrax._options import ScanOptions
from recurrax._types import Array, Params
from recurrax.cells import _fused
from recurrax.cells._pallas_gated import Parts


def lstm_update(
    zi: Array,
    zf: Array,
    zg: Array,
    zo: Array,
    c: Array,
    peephole: Array | Sequence[Array] | None = None,
    cell_norm: tuple[Array, Array] | None = None,
) -> tuple[Array, ...]:
    """The LSTM update from its gate pre-activations; gates and state in ``c``'s dtype.

    Returns ``(h', c', i, f, g, o, tanh(c'))`` (``c'`` layer-normalised inside
    the tanh with ``cell_norm = (scale, bias)``; peepholes ``[3, H]`` (or its rows) add
    ``p_i ⊙ c``, ``p_f ⊙ c`` and ``p_o ⊙ c'``). One copy of the equations, for
    the step and the fused loop.
    """
    dt = c.dtype
    if peephole is not None:
        zi = zi.astype(dt) + peephole[0] * c
        zf = zf.astype(dt) + peephole[1] * c
    # The gates are evaluated in the state's dtype: a bfloat16 sigmoid rounds f to steps of 2^-8 near 1,
    # so the memory 1/(1 - f) it allows jumps from 256 steps to forever.
    i = jax.nn.sigmoid(zi.astype(dt))
    f = jax.nn.sigmoid(zf.astype(dt))
    g = jnp.tanh(zg.astype(dt))
    c_new = f * c + i * g
    if peephole is not None:
        zo = zo.astype(dt) + peephole[2] * c_new
    o = jax.nn.sigmoid(zo.astype(dt))
    tanh_c = jnp.tanh(c_new if cell_norm is None else layer_norm(c_new, *cell_norm))
    return o * tanh_c, c_new, i, f, g, o, tanh_c


def lstm_gate_update(gx: Parts, hh: Parts, state: Parts, peephole: Parts) -> tuple[Parts, Internals]:
    """:func:`lstm_update` as the Pallas kernel's gate update (``cells/_pallas_gated.py``): state ``(h, c)``.

    ``peephole``: its three rows, or ``()`` for none (no layer norm: it is not
    elementwise over units).
    """
    zi, zf, zg, zo = (x + r for x, r in zip(gx, hh, strict=True))
    h, c, *_ = lstm_update(zi, zf, zg, zo, state[1], peephole or None)
    return (h, c), {}


def lstm_sequence(
    project: Any, params: Params, h0: Array, c0: Array, xs: Array, steps: Steps, options: ScanOptions, hoisted: bool
) -> tuple[Array, tuple[Array, Array]]:
    """Runs the plain LSTM over time-major ``xs[T, *B, D]``: ``(ys, (h_final, c_final))``."""
    batch = math.prod(xs.shape[1:-1])
    hidden = c0.shape[-1]
    weights = (params["input_kernel"], params["bias"], params["recurrent_kernel"])
    batched = _fused.batched_weight_gradients(batch, 4, hidden)
    run = partial(_lstm_run, unroll=options.steps_per_iteration(), hoisted=hoisted, batched=batched)
    ys, (h, c) = _fused.run_fused(
        run, weights, xs, (h0, c0), steps, remat=options.remat, project=project if hoisted else None, num_gates=4
    )
    return ys, (h, c)


def _lstm_run(
    weights: tuple[Array, Array, Array],
    inputs: Any,
    state0: tuple[Array, Array],
    valid: Array | None,
    resets: Array | None,
    *,
    unroll: int | bool = 1,
    hoisted: bool = False,
    batched: bool = True,
    reset_state: tuple[Array, Array] | None = None,
) -> tuple[Array, tuple[Array, Array]]:
    if reset_state is None:
        reset_state = state0
    recurrence = _lstm_recurrence if batched else _lstm_forward_loop
    hs, c_last = recurrence(*weights, inputs, *state0, *reset_state, valid, resets, unroll, hoisted)
    ys = hs if valid is None else jnp.where(valid[..., None], hs, jnp.zeros_like(hs))
    return ys, (hs[-1], c_last)


def _lstm_forward_loop(
    w_x: Array,
    b: Array,
    w_h: Array,
    inputs: Any,
    h0: Array,
    c0: Array,
    rh: Array,
    rc: Array,
    valid: Array | None,
    resets: Array | None,
    unroll: int | bool,
    hoisted: bool,
    with_coefficients: bool = False,
) -> tuple[Any, ...]:
    """``h_t`` after every step, ``[T, B, H]``, and the last cell state ``[B, H]`` (and the derivative's coefficients).

    Only the hidden states are stacked: every stacked output is one more
    ``[T, B, H]`` buffer to zero, write and (under differentiation) read back.
    """

    def body(carry: tuple[Array, Array], step_inputs: tuple[Any, ...]) -> tuple[tuple[Array, Array], tuple[Any, ...]]:
        h, c = carry
        x_t, v, r = step_inputs
        if r is not None:
            h, c = _fused.select(r, rh, h), _fused.select(r, rc, c)
        if hoisted:
            recurrent = _fused.split_gates(jnp.matmul(h, w_h), 4)
            zi, zf, zg, zo = (a + r for a, r in zip(x_t, recurrent, strict=True))
        else:
            # One sum before the gate slices: XLA:CPU runs this form about 10% faster.
            zi, zf, zg, zo = _fused.split_gates(jnp.matmul(x_t, w_x) + b + jnp.matmul(h, w_h), 4)
        h_new, c_new, i, f, g, o, tanh_c = lstm_update(zi, zf, zg, zo, c)
        coefs = None
        if with_coefficients:
            # ∂(c_t, h_t)/∂(gate pre-activations, c_{t-1}): the tangent loop's only per-step inputs.
            coefs = (
                i * (1 - i) * g,
                f * (1 - f) * c,
                (1 - g * g) * i,
                o * (1 - o) * tanh_c,
                o * (1 - tanh_c * tanh_c),
                f,
            )
        h_new, c_new = _fused.select(v, h_new, carry[0]), _fused.select(v, c_new, carry[1])
        return (h_new, c_new), (h_new, coefs)

    (_, c_last), (hs, coefs) = jax.lax.scan(body, (h0, c0), (inputs, valid, resets), unroll=unroll)
    return (hs, c_last, coefs) if with_coefficients else (hs, c_last)


@partial(jax.custom_jvp, nondiff_argnums=(10, 11))
def _lstm_recurrence(
    w_x: Array,
    b: Array,
    w_h: Array,
    inputs: Any,
    h0: Array,
    c0: Array,
    rh: Array,
    rc: Array,
    valid: Array | None,
    resets: Array | None,
    unroll: int | bool,
    hoisted: bool,
) -> tuple[Array, Array]:
    return _lstm_forward_loop(w_x, b, w_h, inputs, h0, c0, rh, rc, valid, resets, unroll, hoisted)


def _lstm_recurrence_jvp(
    unroll: int | bool, hoisted: bool, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Any, ...]:
    w_x, b, w_h, inputs, h0, c0, rh, rc, valid, resets = primals
    dw_x, db, dw_h, dinputs, dh0, dc0, drh, drc, _, _ = tangents
    # The forward loop also emits the derivative's coefficients (the gates' local slopes).
    hs, c_last, coefs = _lstm_forward_loop(w_x, b, w_h, inputs, h0, c0, rh, rc, valid, resets, unroll, hoisted, True)
    gate_shape = (*hs.shape[:-1], w_h.shape[-1])
    h_start = _fused.starts(hs, h0, rh, resets)
    outer = _fused.sum_terms(
        [
            _fused.input_tangent(hoisted, inputs, dinputs, w_x, dw_x, db, gate_shape),
            _fused.recurrent_tangent(h_start, dw_h, None, gate_shape),
        ]
    )
    drh, drc = _fused.materialize(drh, rh), _fused.materialize(drc, rc)
    recurrent = _fused.tangent_matmul(w_h)

    # One [B, 4H] input per step (the transposed loop writes one [B, 4H] cotangent per step,
    # whose weight gradients are then two large matmuls).
    def body(carry: tuple[Array, Array], step_inputs: tuple[Any, ...]) -> tuple[tuple[Array, Array], Array]:
        dh, dc = carry
        u, (ci, cf, cg, co, cc, ft), v, r = step_inputs
        if r is not None:
            dh, dc = _fused.select(r, drh, dh), _fused.select(r, drc, dc)
        dz = recurrent(dh)
        if u is not None:
            dz = dz + u
        dzi, dzf, dzg, dzo = _fused.split_gates(dz, 4)
        dc_new = ft * dc + ci * dzi + cf * dzf + cg * dzg
        dh_new = co * dzo + cc * dc_new
        dh_new, dc_new = _fused.select(v, dh_new, carry[0]), _fused.select(v, dc_new, carry[1])
        return (dh_new, dc_new), dh_new

    init = (_fused.materialize(dh0, h0), _fused.materialize(dc0, c0))
    (_, dc_last), dhs = jax.lax.scan(body, init, (outer, coefs, valid, resets), unroll=unroll)
    return (hs, c_last), (dhs, dc_last)


_lstm_recurrence.defjvp(_lstm_recurrence_jvp, symbolic_zeros=True)
