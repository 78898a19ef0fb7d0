"""A faster sequential path for the plain LSTM and GRU, with the same results as the step loop.

Why it is faster (measured in ``benchmarks/``, see ``benchmarks/README.md``):

* **Per-gate inputs.** The plain loop reads ``projected_x[t]`` (``[B, G·H]``) and
  slices it into gates inside the step. XLA:CPU compiles "several slices of a
  dynamic slice" into slow scalar code (about 10x slower per step than reading
  whole arrays); here the input projection is split into one ``[T, B, H]``
  array per gate *before* the loop, so each step reads contiguous blocks.
* **Weight gradients batched over time.** Differentiating ``lax.scan`` adds
  ``∂W_h += h_{t-1}ᵀ ∂z_t`` inside the backward loop: T small matmuls and T
  read-modify-writes of ``[H, G·H]``. Here a :func:`jax.custom_jvp` rule puts
  the weight's tangent outside the loop as one ``[T·B, H] × [H, G·H]`` matmul,
  so its transpose (the weight gradient) is one large matmul after the loop.
  The loop that remains carries only the state's tangent: per step one
  ``[B, H] × [H, G·H]`` matmul and one elementwise fusion, the floor of any
  sequential LSTM.
* **Gate values recomputed in parallel.** The forward loop keeps only the carry
  after each step; the derivatives' coefficients (gate values) are recomputed
  for all steps at once (one large matmul, vectorised elementwise), which costs
  less than saving them from inside the loop.

A ``custom_jvp`` (not ``custom_vjp``) keeps forward-mode differentiation
(``jax.jvp``, ``jax.jacfwd``) and higher derivatives working. Everything the
engine offers around the loop — ``lengths``, ``resets``, ``reverse``,
``time_major``, any batch shape, ``unroll`` and ``remat`` — is supported; a
cell variant, dtype mix or option that is not (peepholes, layer norm,
projections, ``reset_after=False``, mixed precision, ``return_carries``,
``carry_perturbation``) runs on the plain path (:func:`fused_path_supported`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from recurrax.cells._base import Array, Carry, Cell, Params
from recurrax.cells._gru import GRU
from recurrax.cells._lstm import LSTM, LSTMCarry

__all__ = ["fused_path_supported", "fused_sequential_scan", "use_fused_path"]

# Steps per remat chunk: the backward pass keeps the carries at chunk starts and
# recomputes one chunk at a time, so memory is O(T/K·carry + K·B·G·H).
REMAT_CHUNK = 128


def fused_path_supported(cell: Cell | Any, params: Params, xs: Array, initial_carry: Carry) -> bool:
    """True when :func:`fused_sequential_scan` computes exactly what the plain step loop would.

    Only the plain LSTM (no peepholes, layer norm or projection) and the
    ``reset_after=True`` GRU, with inputs, parameters and carry all in one
    floating dtype (float32 or float64), take the fused path.
    """
    if type(cell) is LSTM:
        if cell.peephole or cell.layer_norm or cell.proj_size is not None:
            return False
        carry_leaves = [initial_carry.h, initial_carry.c] if isinstance(initial_carry, LSTMCarry) else None
        if carry_leaves is None:
            return False
    elif type(cell) is GRU:
        if not cell.reset_after:
            return False
        carry_leaves = [initial_carry]
    else:
        return False
    leaves = [xs, *jax.tree.leaves(params), *carry_leaves]
    if not all(isinstance(a, jax.Array | jnp.ndarray) or hasattr(a, "dtype") for a in leaves):
        return False
    dtype = jnp.dtype(xs.dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        return False
    if any(jnp.dtype(a.dtype) != dtype for a in leaves):
        return False
    if cell.compute_dtype(xs, *jax.tree.leaves(params)) != dtype or cell.state_dtype() != dtype:
        return False
    batch_shape = xs.shape[1:-1]
    return all(tuple(a.shape[:-1]) == tuple(batch_shape) for a in carry_leaves)


def use_fused_path(
    fused: bool | None,
    cell: Cell | Any,
    params: Params,
    xs: Array,
    initial_carry: Carry,
    *,
    method: str,
    hoist_input_projection: bool | None,
    carry_perturbation: Carry | None,
    return_carries: bool,
) -> bool:
    """Decides the engine's ``fused`` option: ``None`` is "whenever supported"; ``True`` raises if it is not."""
    if fused is not None and not isinstance(fused, bool):
        raise TypeError(f"fused must be None, True or False, got {fused!r}")
    if fused is False:
        return False
    reasons = []
    if method != "sequential":
        reasons.append(f"method={method!r}")
    if hoist_input_projection is False:
        reasons.append("hoist_input_projection=False")
    if carry_perturbation is not None:
        reasons.append("carry_perturbation")
    if return_carries:
        reasons.append("return_carries=True")
    if not reasons and not fused_path_supported(cell, params, xs, initial_carry):
        reasons.append(
            f"cell {type(cell).__name__} with these options and dtypes (the fused path runs the plain LSTM and the "
            "reset_after GRU with inputs, parameters and carry in one dtype, float32 or float64)"
        )
    if reasons and fused:
        raise ValueError(f"fused=True, but the fused path does not support {', '.join(reasons)}; use fused=None")
    return not reasons


def fused_sequential_scan(
    cell: LSTM | GRU,
    params: Params,
    xs_tm: Array,
    initial_carry: Carry,
    valid_tm: Array | None,
    resets_tm: Array | None,
    *,
    unroll: int | bool = 1,
    remat: bool = False,
) -> tuple[Array, Carry]:
    """Runs a supported cell over time-major ``xs_tm[T, *B, D]``; returns ``(ys[T, *B, H], final_carry)``.

    Equal to the engine's plain step loop (see :func:`recurrax.scan`): ``valid_tm[T, *B]``
    freezes the carry and zeroes outputs past each example's end, ``resets_tm[T, *B]``
    restarts the carry from ``initial_carry``. Call :func:`fused_path_supported` first.
    """
    num_steps = xs_tm.shape[0]
    batch_shape = xs_tm.shape[1:-1]
    flat = 1
    for n in batch_shape:
        flat *= n

    def flatten(a: Array | None, feature_dims: int) -> Array | None:
        if a is None:
            return None
        lead = a.shape[: a.ndim - feature_dims - len(batch_shape)]
        return a.reshape((*lead, flat, *a.shape[a.ndim - feature_dims :]))

    xs_f = flatten(xs_tm, 1)
    valid_f = flatten(valid_tm, 0)
    resets_f = flatten(resets_tm, 0)
    projected = cell.project_inputs(params, xs_f)
    w_h = params["recurrent_kernel"]
    if type(cell) is LSTM:
        h0, c0 = flatten(initial_carry.h, 1), flatten(initial_carry.c, 1)
        run = partial(_lstm_sequence, unroll=unroll)
        state0: tuple[Array, ...] = (h0, c0)
        weights: tuple[Array, ...] = (w_h,)
    else:
        run = partial(_gru_sequence, unroll=unroll)
        state0 = (flatten(initial_carry, 1),)
        weights = (w_h, params["recurrent_bias"])

    if remat and num_steps > REMAT_CHUNK:
        ys, final = _chunked(run, weights, projected, state0, valid_f, resets_f)
    else:
        ys, final = run(weights, projected, state0, valid_f, resets_f)

    def unflatten(a: Array) -> Array:
        lead = a.shape[:-2]
        return a.reshape((*lead, *batch_shape, a.shape[-1]))

    ys = unflatten(ys)
    if type(cell) is LSTM:
        return ys, LSTMCarry(h=unflatten(final[0]), c=unflatten(final[1]))
    return ys, unflatten(final[0])


def _chunked(
    run: Callable[..., tuple[Array, tuple[Array, ...]]],
    weights: tuple[Array, ...],
    projected: Array,
    state0: tuple[Array, ...],
    valid: Array | None,
    resets: Array | None,
) -> tuple[Array, tuple[Array, ...]]:
    """Remat: an outer scan over chunks of :data:`REMAT_CHUNK` steps, each recomputed in the backward pass.

    Padding steps past ``T`` are marked invalid, so they change nothing.
    """
    num_steps, batch = projected.shape[0], projected.shape[1]
    num_chunks = -(-num_steps // REMAT_CHUNK)
    pad = num_chunks * REMAT_CHUNK - num_steps
    if valid is None:
        valid = jnp.ones((num_steps, batch), bool)
    valid = jnp.pad(valid, ((0, pad), (0, 0)))
    projected = jnp.pad(projected, ((0, pad), (0, 0), (0, 0)))
    if resets is not None:
        resets = jnp.pad(resets, ((0, pad), (0, 0)))

    def chunks(a: Array | None) -> Array | None:
        return None if a is None else a.reshape((num_chunks, REMAT_CHUNK, *a.shape[1:]))

    # The reset target is always the initial carry, so it is a constant of the chunk body.
    @jax.checkpoint
    def body(state: tuple[Array, ...], inputs: tuple) -> tuple[tuple[Array, ...], Array]:
        proj_c, valid_c, resets_c = inputs
        ys_c, new_state = run(weights, proj_c, state, valid_c, resets_c, reset_state=state0)
        return new_state, ys_c

    final, ys = jax.lax.scan(body, state0, (chunks(projected), chunks(valid), chunks(resets)))
    ys = ys.reshape((num_chunks * REMAT_CHUNK, *ys.shape[2:]))[:num_steps]
    return ys, final


def _split_gates(a: Array, num_gates: int) -> tuple[Array, ...]:
    return tuple(jnp.split(a, num_gates, axis=-1))


def _select(mask: Array | None, on_true: Array, on_false: Array) -> Array:
    return on_true if mask is None else jnp.where(mask[..., None], on_true, on_false)


def _starts(carries: Array, state0: Array, reset_state: Array, resets: Array | None) -> Array:
    """The carry each step starts from: the previous carry, or the reset state."""
    prev = jnp.concatenate([state0[None], carries[:-1]], axis=0)
    if resets is None:
        return prev
    return jnp.where(resets[..., None], reset_state[None], prev)


# ---------------------------------------------------------------------------- LSTM
def _lstm_sequence(
    weights: tuple[Array],
    projected: Array,
    state0: tuple[Array, Array],
    valid: Array | None,
    resets: Array | None,
    *,
    unroll: int | bool = 1,
    reset_state: tuple[Array, Array] | None = None,
) -> tuple[Array, tuple[Array, Array]]:
    if reset_state is None:
        reset_state = state0
    hs, cs = _lstm_recurrence(weights[0], projected, *state0, *reset_state, valid, resets, unroll)
    ys = hs if valid is None else jnp.where(valid[..., None], hs, jnp.zeros_like(hs))
    return ys, (hs[-1], cs[-1])


def _lstm_forward_loop(
    w_h: Array,
    projected: Array,
    h0: Array,
    c0: Array,
    rh: Array,
    rc: Array,
    valid: Array | None,
    resets: Array | None,
    unroll: int | bool,
) -> tuple[Array, Array]:
    """The carries ``(h_t, c_t)`` after every step, each ``[T, B, H]``."""
    gates = _split_gates(projected, 4)

    def body(carry: tuple[Array, Array], inputs: tuple) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
        h, c = carry
        (xi, xf, xg, xo), v, r = inputs
        if r is not None:
            h, c = _select(r, rh, h), _select(r, rc, c)
        zi, zf, zg, zo = _split_gates(jnp.matmul(h, w_h), 4)
        i = jax.nn.sigmoid(xi + zi)
        f = jax.nn.sigmoid(xf + zf)
        g = jnp.tanh(xg + zg)
        o = jax.nn.sigmoid(xo + zo)
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        h_new, c_new = _select(v, h_new, carry[0]), _select(v, c_new, carry[1])
        return (h_new, c_new), (h_new, c_new)

    _, (hs, cs) = jax.lax.scan(body, (h0, c0), (gates, valid, resets), unroll=unroll)
    return hs, cs


@partial(jax.custom_jvp, nondiff_argnums=(8,))
def _lstm_recurrence(
    w_h: Array,
    projected: Array,
    h0: Array,
    c0: Array,
    rh: Array,
    rc: Array,
    valid: Array | None,
    resets: Array | None,
    unroll: int | bool,
) -> tuple[Array, Array]:
    return _lstm_forward_loop(w_h, projected, h0, c0, rh, rc, valid, resets, unroll)


@_lstm_recurrence.defjvp
def _lstm_recurrence_jvp(unroll: int | bool, primals: tuple, tangents: tuple) -> tuple:
    w_h, projected, h0, c0, rh, rc, valid, resets = primals
    dw_h, dprojected, dh0, dc0, drh, drc, _, _ = tangents
    hs, cs = _lstm_forward_loop(w_h, projected, h0, c0, rh, rc, valid, resets, unroll)
    h_start = _starts(hs, h0, rh, resets)
    c_start = _starts(cs, c0, rc, resets)

    # Gate values for all steps at once (vectorised), for the derivative's coefficients.
    z = projected + jnp.matmul(h_start, w_h)
    zi, zf, zg, zo = _split_gates(z, 4)
    i, f, g, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
    c_new = f * c_start + i * g
    tanh_c = jnp.tanh(c_new)
    coef_i = i * (1 - i) * g
    coef_f = f * (1 - f) * c_start
    coef_g = (1 - g * g) * i
    coef_o = o * (1 - o) * tanh_c
    coef_c = o * (1 - tanh_c * tanh_c)

    # Everything that does not depend on the previous step's tangent, outside the loop:
    # the weight's tangent is one large matmul here, so its transpose is one too.
    # Only two [T, B, H] tangents enter the loop, so its transpose writes only two per step.
    ui, uf, ug, uo = _split_gates(dprojected + jnp.matmul(h_start, dw_h), 4)
    u_c = coef_i * ui + coef_f * uf + coef_g * ug
    u_h = coef_o * uo + coef_c * u_c

    def body(carry: tuple[Array, Array], inputs: tuple) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
        dh, dc = carry
        (a_c, a_h), (ci, cf, cg, co, cc, ft), v, r = inputs
        if r is not None:
            dh, dc = _select(r, drh, dh), _select(r, drc, dc)
        qi, qf, qg, qo = _split_gates(jnp.matmul(dh, w_h), 4)
        dc_rec = ft * dc + cf * qf + ci * qi + cg * qg
        dc_new = a_c + dc_rec
        dh_new = a_h + co * qo + cc * dc_rec
        dh_new, dc_new = _select(v, dh_new, carry[0]), _select(v, dc_new, carry[1])
        return (dh_new, dc_new), (dh_new, dc_new)

    coefs = (coef_i, coef_f, coef_g, coef_o, coef_c, f)
    _, (dhs, dcs) = jax.lax.scan(body, (dh0, dc0), ((u_c, u_h), coefs, valid, resets), unroll=unroll)
    return (hs, cs), (dhs, dcs)


# ----------------------------------------------------------------------------- GRU
def _gru_sequence(
    weights: tuple[Array, Array],
    projected: Array,
    state0: tuple[Array],
    valid: Array | None,
    resets: Array | None,
    *,
    unroll: int | bool = 1,
    reset_state: tuple[Array] | None = None,
) -> tuple[Array, tuple[Array]]:
    if reset_state is None:
        reset_state = state0
    hs = _gru_recurrence(weights[0], weights[1], projected, state0[0], reset_state[0], valid, resets, unroll)
    ys = hs if valid is None else jnp.where(valid[..., None], hs, jnp.zeros_like(hs))
    return ys, (hs[-1],)


def _gru_forward_loop(
    w_h: Array,
    b_h: Array,
    projected: Array,
    h0: Array,
    rh: Array,
    valid: Array | None,
    resets: Array | None,
    unroll: int | bool,
) -> Array:
    """The carry ``h_t`` after every step, ``[T, B, H]``."""
    gates = _split_gates(projected, 3)

    def body(h_prev: Array, inputs: tuple) -> tuple[Array, Array]:
        (xr, xz, xn), v, r = inputs
        h = h_prev if r is None else _select(r, rh, h_prev)
        hr, hz, hn = _split_gates(jnp.matmul(h, w_h) + b_h, 3)
        rg = jax.nn.sigmoid(xr + hr)
        zg = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + rg * hn)
        h_new = (1 - zg) * n + zg * h
        h_new = _select(v, h_new, h_prev)
        return h_new, h_new

    _, hs = jax.lax.scan(body, h0, (gates, valid, resets), unroll=unroll)
    return hs


@partial(jax.custom_jvp, nondiff_argnums=(7,))
def _gru_recurrence(
    w_h: Array,
    b_h: Array,
    projected: Array,
    h0: Array,
    rh: Array,
    valid: Array | None,
    resets: Array | None,
    unroll: int | bool,
) -> Array:
    return _gru_forward_loop(w_h, b_h, projected, h0, rh, valid, resets, unroll)


@_gru_recurrence.defjvp
def _gru_recurrence_jvp(unroll: int | bool, primals: tuple, tangents: tuple) -> tuple:
    w_h, b_h, projected, h0, rh, valid, resets = primals
    dw_h, db_h, dprojected, dh0, drh, _, _ = tangents
    hs = _gru_forward_loop(w_h, b_h, projected, h0, rh, valid, resets, unroll)
    h_start = _starts(hs, h0, rh, resets)

    xr, xz, xn = _split_gates(projected, 3)
    hr, hz, hn = _split_gates(jnp.matmul(h_start, w_h) + b_h, 3)
    rg = jax.nn.sigmoid(xr + hr)
    zg = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + rg * hn)
    sn = 1 - n * n
    coef_r = rg * (1 - rg) * hn * sn * (1 - zg)  # ∂h'/∂(pre-activation of r)
    coef_z = zg * (1 - zg) * (h_start - n)  # ∂h'/∂(pre-activation of z)
    coef_xn = sn * (1 - zg)  # ∂h'/∂(x part of n's pre-activation)
    coef_hn = coef_xn * rg  # ∂h'/∂(h W_hn + b_hn)

    # The weight's and bias's tangents outside the loop (see the LSTM above).
    dx = _split_gates(dprojected, 3)
    dhh = _split_gates(jnp.matmul(h_start, dw_h) + db_h, 3)
    outer = (dx[0] + dhh[0], dx[1] + dhh[1], dx[2], dhh[2])

    def body(dh_prev: Array, inputs: tuple) -> tuple[Array, Array]:
        (ur, uz, uxn, uhn), (cr, cz, cxn, chn, keep), v, r = inputs
        dh = dh_prev if r is None else _select(r, drh, dh_prev)
        qr, qz, qn = _split_gates(jnp.matmul(dh, w_h), 3)
        dh_new = cr * (ur + qr) + cz * (uz + qz) + cxn * uxn + chn * (uhn + qn) + keep * dh
        dh_new = _select(v, dh_new, dh_prev)
        return dh_new, dh_new

    coefs = (coef_r, coef_z, coef_xn, coef_hn, zg)
    _, dhs = jax.lax.scan(body, dh0, (outer, coefs, valid, resets), unroll=unroll)
    return hs, dhs
