"""The GRU's whole-sequence path: one fused loop, weight gradients batched over time (see ``cells/_fused.py``).

It computes exactly what :meth:`GRUCell.step <recurrax.cells.GRUCell.step>`
computes step by step for the ``reset_after=True`` GRU in one float dtype;
:meth:`GRUCell.sequence_unsupported` says so. The gate equations are
:func:`gru_update`, shared with the step, and with the Pallas kernel
(``cells/_pallas_gated.py``) through its gate update.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from recurrax._cell import Internals, Steps
from recurrax._options import ScanOptions
from recurrax._types import Array, Params
from recurrax.cells import _fused
from recurrax.cells._pallas_gated import Parts


def gru_update(xr: Array, xz: Array, xn: Array, hr: Array, hz: Array, hn: Array, h: Array) -> tuple[Array, ...]:
    """The ``reset_after`` GRU update from its input and recurrent parts: ``(h', r, z, n)``.

    ``h'``, and the ``z`` and ``n`` that form it, are computed in the dtype of
    ``h`` (the state: float32 under a bfloat16 policy), ``r`` in the inputs'.
    One copy of the equations, for the step and the fused loop.
    """
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid((xz + hz).astype(h.dtype))
    n = jnp.tanh((xn + r * hn).astype(h.dtype))
    return (1 - z) * n + z * h, r, z, n


def gru_gate_update(gx: Parts, hh: Parts, state: Parts, units: Parts) -> tuple[Parts, Internals]:
    """:func:`gru_update` as the Pallas kernel's gate update (``cells/_pallas_gated.py``): state ``(h,)``."""
    (xr, xz, xn), (hr, hz, hn) = gx, hh
    h, *_ = gru_update(xr, xz, xn, hr, hz, hn, state[0])
    return (h,), {}


def gru_sequence(
    project: Any, params: Params, h0: Array, xs: Array, steps: Steps, options: ScanOptions, hoisted: bool
) -> tuple[Array, Array]:
    """Runs the ``reset_after`` GRU over time-major ``xs[T, *B, D]``: ``(ys, h_final)``."""
    batch = math.prod(xs.shape[1:-1])
    weights = (params["input_kernel"], params["input_bias"], params["recurrent_kernel"], params["recurrent_bias"])
    batched = _fused.batched_weight_gradients(batch, 3, h0.shape[-1])
    run = partial(_gru_run, unroll=options.steps_per_iteration(), hoisted=hoisted, batched=batched)
    ys, (h,) = _fused.run_fused(
        run, weights, xs, (h0,), steps, remat=options.remat, project=project if hoisted else None, num_gates=3
    )
    return ys, h


def _gru_run(
    weights: tuple[Array, Array, Array, Array],
    inputs: Any,
    state0: tuple[Array],
    valid: Array | None,
    resets: Array | None,
    *,
    unroll: int | bool = 1,
    hoisted: bool = False,
    batched: bool = True,
    reset_state: tuple[Array] | None = None,
) -> tuple[Array, tuple[Array]]:
    if reset_state is None:
        reset_state = state0
    recurrence = _gru_recurrence if batched else _gru_forward_loop
    hs: Array = recurrence(*weights, inputs, state0[0], reset_state[0], valid, resets, unroll, hoisted)
    ys = hs if valid is None else jnp.where(valid[..., None], hs, jnp.zeros_like(hs))
    return ys, (hs[-1],)


def _gru_forward_loop(
    w_x: Array,
    b_x: Array,
    w_h: Array,
    b_h: Array,
    inputs: Any,
    h0: Array,
    rh: Array,
    valid: Array | None,
    resets: Array | None,
    unroll: int | bool,
    hoisted: bool,
    with_coefficients: bool = False,
) -> Any:
    """The carry ``h_t`` after every step, ``[T, B, H]`` (and the derivative's coefficients)."""

    def body(h_prev: Array, step_inputs: tuple[Any, ...]) -> tuple[Array, tuple[Any, ...]]:
        x_t, v, r = step_inputs
        h = h_prev if r is None else _fused.select(r, rh, h_prev)
        xr, xz, xn = _fused.input_gates(hoisted, w_x, b_x, x_t, 3)
        hr, hz, hn = _fused.split_gates(jnp.matmul(h, w_h) + b_h, 3)
        h_new, rg, zg, n = gru_update(xr, xz, xn, hr, hz, hn, h)
        coefs = None
        if with_coefficients:
            coef_xn = (1 - n * n) * (1 - zg)  # ∂h'/∂(x part of n's pre-activation)
            coefs = (
                rg * (1 - rg) * hn * coef_xn,  # ∂h'/∂(pre-activation of r)
                zg * (1 - zg) * (h - n),  # ∂h'/∂(pre-activation of z)
                coef_xn,
                coef_xn * rg,  # ∂h'/∂(h W_hn + b_hn)
                zg,  # ∂h'/∂h directly
            )
        h_new = _fused.select(v, h_new, h_prev)
        return h_new, (h_new, coefs)

    _, (hs, coefs) = jax.lax.scan(body, h0, (inputs, valid, resets), unroll=unroll)
    return (hs, coefs) if with_coefficients else hs


@partial(jax.custom_jvp, nondiff_argnums=(9, 10))
def _gru_recurrence(
    w_x: Array,
    b_x: Array,
    w_h: Array,
    b_h: Array,
    inputs: Any,
    h0: Array,
    rh: Array,
    valid: Array | None,
    resets: Array | None,
    unroll: int | bool,
    hoisted: bool,
) -> Array:
    hs: Array = _gru_forward_loop(w_x, b_x, w_h, b_h, inputs, h0, rh, valid, resets, unroll, hoisted)
    return hs


def _gru_recurrence_jvp(
    unroll: int | bool, hoisted: bool, primals: tuple[Any, ...], tangents: tuple[Any, ...]
) -> tuple[Any, ...]:
    w_x, b_x, w_h, b_h, inputs, h0, rh, valid, resets = primals
    dw_x, db_x, dw_h, db_h, dinputs, dh0, drh, _, _ = tangents
    hs, coefs = _gru_forward_loop(w_x, b_x, w_h, b_h, inputs, h0, rh, valid, resets, unroll, hoisted, True)
    gate_shape = (*hs.shape[:-1], w_h.shape[-1])
    h_start = _fused.starts(hs, h0, rh, resets)
    hidden = h0.shape[-1]
    outer_x = _fused.input_tangent(hoisted, inputs, dinputs, w_x, dw_x, db_x, gate_shape)
    outer_h = _fused.recurrent_tangent(h_start, dw_h, db_h, gate_shape)
    # One [T, B, 4H] per-step input: the r and z pre-activations' tangents (input and
    # recurrent parts summed), then n's input part and n's recurrent part, which r gates.
    # Its transpose writes one [B, 4H] cotangent per step.
    outer = None
    if outer_x is not None or outer_h is not None:
        ox = jnp.zeros(gate_shape, hs.dtype) if outer_x is None else outer_x
        oh = jnp.zeros(gate_shape, hs.dtype) if outer_h is None else outer_h
        outer = jnp.concatenate(
            [ox[..., : 2 * hidden] + oh[..., : 2 * hidden], ox[..., 2 * hidden :], oh[..., 2 * hidden :]], axis=-1
        )
    drh = _fused.materialize(drh, rh)
    recurrent = _fused.tangent_matmul(w_h)

    def body(dh_prev: Array, step_inputs: tuple[Any, ...]) -> tuple[Array, Array]:
        u, (cr, cz, cxn, chn, keep), v, r = step_inputs
        dh = dh_prev if r is None else _fused.select(r, drh, dh_prev)
        dr, dz, dn_h = _fused.split_gates(recurrent(dh), 3)
        dh_new = keep * dh
        if u is not None:
            ur, uz, un_x, un_h = _fused.split_gates(u, 4)
            dr, dz, dn_h = dr + ur, dz + uz, dn_h + un_h
            dh_new = dh_new + cxn * un_x
        dh_new = dh_new + cr * dr + cz * dz + chn * dn_h
        dh_new = _fused.select(v, dh_new, dh_prev)
        return dh_new, dh_new

    _, dhs = jax.lax.scan(body, _fused.materialize(dh0, h0), (outer, coefs, valid, resets), unroll=unroll)
    return hs, dhs


_gru_recurrence.defjvp(_gru_recurrence_jvp, symbolic_zeros=True)
