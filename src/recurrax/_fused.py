"""A faster sequential path for the plain LSTM and GRU, with the same results as the step loop.

What it does differently (measured in ``benchmarks/``, see ``benchmarks/README.md``):

* **No slices of a per-step slice.** The plain loop with a hoisted input
  projection reads ``projected_x[t]`` (``[B, G·H]``) and slices it into gates.
  XLA:CPU compiles "several slices of a dynamic slice" into slow scalar code
  (about 10x slower per step than reading whole arrays). Here the input matmul
  runs inside the step by default (its output's slices are fast, and no
  ``[T, B, G·H]`` buffer is made: large fresh buffers are slow on CPU), or,
  with ``hoist_input_projection=True``, the projection is split into one
  ``[T, B, H]`` array per gate before the loop.
* **Weight gradients batched over time.** Differentiating ``lax.scan`` adds
  ``∂W_h += h_{t-1}ᵀ ∂z_t`` inside the backward loop: T small matmuls and T
  read-modify-writes of ``[H, G·H]``. Here a :func:`jax.custom_jvp` rule puts
  every tangent term that does not depend on the previous step outside the
  loop as large matmuls, so their transposes (the weight and input gradients)
  are large matmuls after the loop. The loop that remains carries only the
  state's tangent: per step one ``[B, H] × [H, G·H]`` matmul and one
  elementwise fusion. On CPU this pays only for small steps
  (:data:`CPU_BATCHED_GRADIENTS_MAX`); larger ones differentiate the loop directly.
* **Coefficients from the forward loop.** Under differentiation the forward
  loop also emits the gates' local slopes (``[T, B, H]`` each), so the tangent
  loop needs no recomputation.
* **Chunked remat.** ``remat=True`` recomputes chunks of :data:`REMAT_CHUNK`
  steps one at a time in the backward pass.

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
from jax.custom_derivatives import SymbolicZero

from recurrax.cells._base import Array, Carry, Cell, Params
from recurrax.cells._gru import GRU
from recurrax.cells._lstm import LSTM, LSTMCarry

__all__ = [
    "batched_weight_gradients",
    "fused_path_supported",
    "fused_sequential_scan",
    "hoist_by_default",
    "use_fused_path",
]

# Steps per remat chunk: the backward pass keeps the carries at chunk starts and
# recomputes one chunk at a time, so memory is O(T/K·carry + K·B·G·H).
REMAT_CHUNK = 128
# On CPU, batching the weight gradients (the custom_jvp) wins only while one step's gate block
# B·G·H is small: measured faster at B·G·H <= 16384 ((32,128,64,128) and (16,1024,32,128)) and
# slower from 49152 up ((64,256,128,256), (128,64,256,512)), where the [T, B, G·H] cotangent
# buffers cost more than T in-cache accumulations. Above it the same loop is differentiated
# directly. Other backends always batch: on an H200 the batched path beat the plain loops in
# every training block (1.1-1.3x; benchmarks/results/gpu.md).
CPU_BATCHED_GRADIENTS_MAX = 16384


def hoist_by_default() -> bool:
    """Whether the fused path hoists the input matmul out of the loop when the caller does not say.

    Not on CPU: there the in-loop matmul won every measurement (no ``[T, B, G·H]``
    buffer; levers table, 1.3-2.0x). Elsewhere yes: on an H200 the hoisted plain loop
    beat the in-loop one in every peers block (forward 1.23-1.43x, training 1.06-1.23x).
    """
    return jax.default_backend() != "cpu"


def batched_weight_gradients(batch: int, num_gates: int, hidden: int) -> bool:
    """Whether the fused path batches weight gradients (custom_jvp) for this step size on this backend."""
    if jax.default_backend() != "cpu":
        return True
    return batch * num_gates * hidden <= CPU_BATCHED_GRADIENTS_MAX


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
    hoist_input_projection: bool | None = None,
) -> tuple[Array, Carry]:
    """Runs a supported cell over time-major ``xs_tm[T, *B, D]``; returns ``(ys[T, *B, H], final_carry)``.

    Equal to the engine's plain step loop (see :func:`recurrax.scan`): ``valid_tm[T, *B]``
    freezes the carry and zeroes outputs past each example's end, ``resets_tm[T, *B]``
    restarts the carry from ``initial_carry``. Call :func:`fused_path_supported` first.
    ``hoist_input_projection=True`` applies the input matmul to all steps before the
    loop; the default (``None``) follows :func:`hoist_by_default`.
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
    hoist = hoist_by_default() if hoist_input_projection is None else bool(hoist_input_projection)
    if type(cell) is LSTM:
        num_gates = 4
        state0: tuple[Array, ...] = (flatten(initial_carry.h, 1), flatten(initial_carry.c, 1))
        weights: tuple[Array, ...] = (params["input_kernel"], params["bias"], params["recurrent_kernel"])
        batched = batched_weight_gradients(flat, 4, cell.hidden_size)
        run = partial(_lstm_sequence, unroll=unroll, hoisted=hoist, batched=batched)
    else:
        num_gates = 3
        state0 = (flatten(initial_carry, 1),)
        weights = (
            params["input_kernel"],
            params["input_bias"],
            params["recurrent_kernel"],
            params["recurrent_bias"],
        )
        batched = batched_weight_gradients(flat, 3, cell.hidden_size)
        run = partial(_gru_sequence, unroll=unroll, hoisted=hoist, batched=batched)
    # Hoisted: the loop reads one [T, B, H] array per gate (never slices of a [T, B, G·H] one).
    inputs: Any = _split_gates(cell.project_inputs(params, xs_f), num_gates) if hoist else xs_f

    if remat and num_steps > REMAT_CHUNK:
        ys, final = _chunked(run, weights, inputs, state0, valid_f, resets_f)
    else:
        ys, final = run(weights, inputs, state0, valid_f, resets_f)

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
    inputs: Any,
    state0: tuple[Array, ...],
    valid: Array | None,
    resets: Array | None,
) -> tuple[Array, tuple[Array, ...]]:
    """Remat: an outer scan over chunks of :data:`REMAT_CHUNK` steps, each recomputed in the backward pass.

    Padding steps past ``T`` are marked invalid, so they change nothing.
    """
    first = jax.tree.leaves(inputs)[0]
    num_steps, batch = first.shape[0], first.shape[1]
    num_chunks = -(-num_steps // REMAT_CHUNK)
    pad = num_chunks * REMAT_CHUNK - num_steps

    def pad_time(a: Array) -> Array:
        return jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1))

    if valid is None:
        valid = jnp.ones((num_steps, batch), bool)
    valid = pad_time(valid)
    inputs = jax.tree.map(pad_time, inputs)
    if resets is not None:
        resets = pad_time(resets)

    def chunks(a: Array | None) -> Array | None:
        return None if a is None else a.reshape((num_chunks, REMAT_CHUNK, *a.shape[1:]))

    # The reset target is always the initial carry, so it is a constant of the chunk body.
    @jax.checkpoint
    def body(state: tuple[Array, ...], chunk: tuple) -> tuple[tuple[Array, ...], Array]:
        inputs_c, valid_c, resets_c = chunk
        ys_c, new_state = run(weights, inputs_c, state, valid_c, resets_c, reset_state=state0)
        return new_state, ys_c

    final, ys = jax.lax.scan(body, state0, (jax.tree.map(chunks, inputs), chunks(valid), chunks(resets)))
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


def _zero(t: Any) -> bool:
    return isinstance(t, SymbolicZero)


def _materialize(t: Any, like: Array) -> Array:
    return jnp.zeros_like(like) if _zero(t) else t


def _sum_terms(terms: list[Array | None]) -> Array | None:
    present = [t for t in terms if t is not None]
    if not present:
        return None
    total = present[0]
    for t in present[1:]:
        total = total + t
    return total


def _input_gates(
    hoisted: bool, inputs: Any, w_x: Array, b: Array, x_t: Any, num_gates: int
) -> tuple[Array, ...] | None:
    """Per-step input part of the gates: read from the hoisted arrays, or one matmul of ``x_t``."""
    if hoisted:
        return x_t
    return _split_gates(jnp.matmul(x_t, w_x) + b, num_gates)


def _outer_tangent(
    hoisted: bool,
    num_gates: int,
    xs: Any,
    dxs: Any,
    w_x: Array,
    dw_x: Any,
    db: Any,
    h_start: Array,
    dw_h: Any,
    db_h: Any = None,
    split_recurrent: bool = False,
) -> tuple:
    """Every tangent term that does not depend on the previous step, as large matmuls outside the loop.

    Their transposes (the weight and input gradients) are then large matmuls too.
    Returns per-gate ``[T, B, H]`` arrays of the input part and, with
    ``split_recurrent`` (the GRU, whose ``h W_hn`` is gated by ``r``), of the recurrent part.
    """
    rec = None if _zero(dw_h) else jnp.matmul(h_start, dw_h)
    if db_h is not None and not _zero(db_h):
        rec = db_h if rec is None else rec + db_h
    if hoisted:
        inp_gates = [None if _zero(d) else d for d in dxs]
        inp = None
    else:
        inp = _sum_terms(
            [
                None if _zero(dxs) else jnp.matmul(dxs, w_x),
                None if _zero(dw_x) else jnp.matmul(xs, dw_x),
                None if _zero(db) else db,
            ]
        )
        inp_gates = [None] * num_gates
    if not split_recurrent:
        total = _sum_terms([inp, rec])
        gates = (
            [None] * num_gates
            if total is None
            else list(_split_gates(jnp.broadcast_to(total, (*h_start.shape[:-1], total.shape[-1])), num_gates))
        )
        return tuple(_sum_terms([g, i]) for g, i in zip(gates, inp_gates, strict=True)), None
    inp_split = (
        [None] * num_gates
        if inp is None
        else list(_split_gates(jnp.broadcast_to(inp, (*h_start.shape[:-1], inp.shape[-1])), num_gates))
    )
    rec_split = (
        [None] * num_gates
        if rec is None
        else list(_split_gates(jnp.broadcast_to(rec, (*h_start.shape[:-1], rec.shape[-1])), num_gates))
    )
    inp_total = tuple(_sum_terms([a, c]) for a, c in zip(inp_split, inp_gates, strict=True))
    return inp_total, tuple(rec_split)


# ---------------------------------------------------------------------------- LSTM
def _lstm_sequence(
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
    hs, cs = recurrence(*weights, inputs, *state0, *reset_state, valid, resets, unroll, hoisted)
    ys = hs if valid is None else jnp.where(valid[..., None], hs, jnp.zeros_like(hs))
    return ys, (hs[-1], cs[-1])


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
) -> tuple:
    """The carries ``(h_t, c_t)`` after every step, each ``[T, B, H]`` (and the derivative's coefficients)."""

    def body(carry: tuple[Array, Array], step_inputs: tuple) -> tuple[tuple[Array, Array], tuple]:
        h, c = carry
        x_t, v, r = step_inputs
        if r is not None:
            h, c = _select(r, rh, h), _select(r, rc, c)
        xi, xf, xg, xo = _input_gates(hoisted, inputs, w_x, b, x_t, 4)
        zi, zf, zg, zo = _split_gates(jnp.matmul(h, w_h), 4)
        i = jax.nn.sigmoid(xi + zi)
        f = jax.nn.sigmoid(xf + zf)
        g = jnp.tanh(xg + zg)
        o = jax.nn.sigmoid(xo + zo)
        c_new = f * c + i * g
        tanh_c = jnp.tanh(c_new)
        h_new = o * tanh_c
        coefs = None
        if with_coefficients:
            coefs = (
                i * (1 - i) * g,
                f * (1 - f) * c,
                (1 - g * g) * i,
                o * (1 - o) * tanh_c,
                o * (1 - tanh_c * tanh_c),
                f,
            )
        h_new, c_new = _select(v, h_new, carry[0]), _select(v, c_new, carry[1])
        return (h_new, c_new), (h_new, c_new, coefs)

    _, (hs, cs, coefs) = jax.lax.scan(body, (h0, c0), (inputs, valid, resets), unroll=unroll)
    return (hs, cs, coefs) if with_coefficients else (hs, cs)


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


def _lstm_recurrence_jvp(unroll: int | bool, hoisted: bool, primals: tuple, tangents: tuple) -> tuple:
    w_x, b, w_h, inputs, h0, c0, rh, rc, valid, resets = primals
    dw_x, db, dw_h, dinputs, dh0, dc0, drh, drc, _, _ = tangents
    # The forward loop also emits the derivative's coefficients (the gates' local slopes).
    hs, cs, coefs = _lstm_forward_loop(w_x, b, w_h, inputs, h0, c0, rh, rc, valid, resets, unroll, hoisted, True)
    coef_i, coef_f, coef_g, coef_o, coef_c, _ = coefs
    h_start = _starts(hs, h0, rh, resets)

    (ui, uf, ug, uo), _ = _outer_tangent(hoisted, 4, inputs, dinputs, w_x, dw_x, db, h_start, dw_h)
    # Only two [T, B, H] tangents enter the loop, so its transpose writes only two per step.
    u_c = _sum_terms(
        [None if ui is None else coef_i * ui, None if uf is None else coef_f * uf, None if ug is None else coef_g * ug]
    )
    u_h = _sum_terms([None if uo is None else coef_o * uo, None if u_c is None else coef_c * u_c])
    zeros = jnp.zeros_like(hs)
    u_c = zeros if u_c is None else u_c
    u_h = zeros if u_h is None else u_h
    drh, drc = _materialize(drh, rh), _materialize(drc, rc)

    def body(carry: tuple[Array, Array], step_inputs: tuple) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
        dh, dc = carry
        (a_c, a_h), (ci, cf, cg, co, cc, ft), v, r = step_inputs
        if r is not None:
            dh, dc = _select(r, drh, dh), _select(r, drc, dc)
        qi, qf, qg, qo = _split_gates(jnp.matmul(dh, w_h), 4)
        dc_rec = ft * dc + cf * qf + ci * qi + cg * qg
        dc_new = a_c + dc_rec
        dh_new = a_h + co * qo + cc * dc_rec
        dh_new, dc_new = _select(v, dh_new, carry[0]), _select(v, dc_new, carry[1])
        return (dh_new, dc_new), (dh_new, dc_new)

    init = (_materialize(dh0, h0), _materialize(dc0, c0))
    _, (dhs, dcs) = jax.lax.scan(body, init, ((u_c, u_h), coefs, valid, resets), unroll=unroll)
    return (hs, cs), (dhs, dcs)


_lstm_recurrence.defjvp(_lstm_recurrence_jvp, symbolic_zeros=True)


# ----------------------------------------------------------------------------- GRU
def _gru_sequence(
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
    hs = recurrence(*weights, inputs, state0[0], reset_state[0], valid, resets, unroll, hoisted)
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
) -> tuple:
    """The carry ``h_t`` after every step, ``[T, B, H]`` (and the derivative's coefficients)."""

    def body(h_prev: Array, step_inputs: tuple) -> tuple[Array, tuple]:
        x_t, v, r = step_inputs
        h = h_prev if r is None else _select(r, rh, h_prev)
        xr, xz, xn = _input_gates(hoisted, inputs, w_x, b_x, x_t, 3)
        hr, hz, hn = _split_gates(jnp.matmul(h, w_h) + b_h, 3)
        rg = jax.nn.sigmoid(xr + hr)
        zg = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + rg * hn)
        h_new = (1 - zg) * n + zg * h
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
        h_new = _select(v, h_new, h_prev)
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
    return _gru_forward_loop(w_x, b_x, w_h, b_h, inputs, h0, rh, valid, resets, unroll, hoisted)


def _gru_recurrence_jvp(unroll: int | bool, hoisted: bool, primals: tuple, tangents: tuple) -> tuple:
    w_x, b_x, w_h, b_h, inputs, h0, rh, valid, resets = primals
    dw_x, db_x, dw_h, db_h, dinputs, dh0, drh, _, _ = tangents
    hs, coefs = _gru_forward_loop(w_x, b_x, w_h, b_h, inputs, h0, rh, valid, resets, unroll, hoisted, True)
    h_start = _starts(hs, h0, rh, resets)
    (ur, uz, uxn), (vr, vz, vn) = _outer_tangent(
        hoisted, 3, inputs, dinputs, w_x, dw_x, db_x, h_start, dw_h, db_h, split_recurrent=True
    )
    coef_r, coef_z, coef_xn, coef_hn, _ = coefs
    # The loop's input: everything but the previous step's own tangent.
    outer = _sum_terms(
        [
            None if _sum_terms([ur, vr]) is None else coef_r * _sum_terms([ur, vr]),
            None if _sum_terms([uz, vz]) is None else coef_z * _sum_terms([uz, vz]),
            None if uxn is None else coef_xn * uxn,
            None if vn is None else coef_hn * vn,
        ]
    )
    outer = jnp.zeros_like(hs) if outer is None else outer
    drh = _materialize(drh, rh)

    def body(dh_prev: Array, step_inputs: tuple) -> tuple[Array, Array]:
        u, (cr, cz, _, chn, keep), v, r = step_inputs
        dh = dh_prev if r is None else _select(r, drh, dh_prev)
        qr, qz, qn = _split_gates(jnp.matmul(dh, w_h), 3)
        dh_new = u + cr * qr + cz * qz + chn * qn + keep * dh
        dh_new = _select(v, dh_new, dh_prev)
        return dh_new, dh_new

    _, dhs = jax.lax.scan(body, _materialize(dh0, h0), (outer, coefs, valid, resets), unroll=unroll)
    return hs, dhs


_gru_recurrence.defjvp(_gru_recurrence_jvp, symbolic_zeros=True)
