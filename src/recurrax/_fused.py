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
  state's tangent: per step one ``[B, H] × [H, G·H]`` matmul, one elementwise
  fusion, and one ``[B, G·H]`` tangent input (whose transpose is the one
  cotangent the backward loop writes per step). On CPU the LSTM always takes
  this path and the GRU only for small steps (:data:`CPU_BATCHED_GRADIENTS_MAX`);
  otherwise the same loop is differentiated directly.
* **Layouts that XLA:CPU transposes well** (:func:`_tangent_matmul`,
  :func:`_weight_tangent_matmul`): the backward loop multiplies by a
  materialised ``W_hᵀ`` and the weight gradients are ``xᵀ · ct`` with ``xᵀ``
  materialised in the forward pass, instead of the forms that XLA:CPU runs
  1.5-2.4x slower.
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
# On CPU the GRU batches its weight gradients (the custom_jvp) only while one step's gate
# block B·G·H is small: at (64,256,128,256) and (128,64,256,512) (B·G·H = 49152 and 196608)
# the directly differentiated loop was 1.07x faster, at (32,128,64,128) and (16,1024,32,128)
# (B·G·H <= 16384) the batched path was 1.2-1.3x faster. The LSTM batches at every size
# measured (1.05-1.6x). Other backends always batch: on an H200 the batched path beat the
# plain loops in every training block (benchmarks/results/gpu.md).
# Keyed by the number of gates (4: LSTM, 3: GRU); the limit is on B·G·H.
CPU_BATCHED_GRADIENTS_MAX: dict[int, float] = {4: float("inf"), 3: 16384}


def hoist_by_default() -> bool:
    """Whether the engine hoists the input matmul out of the loop when the caller does not say.

    Both the fused path and the plain step loop follow it. Not on CPU: there the
    in-loop matmul won every measurement (no ``[T, B, G·H]`` buffer; levers table,
    1.3-2.0x; and for the cells only the plain loop runs, all but two cases of 14 in
    ``benchmarks/README.md``). Elsewhere yes: on an H200 the hoisted plain loop
    beat the in-loop one in every peers block (forward 1.23-1.43x, training 1.06-1.23x).
    """
    return jax.default_backend() != "cpu"


def batched_weight_gradients(batch: int, num_gates: int, hidden: int) -> bool:
    """Whether the fused path batches weight gradients (custom_jvp) for this step size on this backend."""
    if jax.default_backend() != "cpu":
        return True
    return batch * num_gates * hidden <= CPU_BATCHED_GRADIENTS_MAX[num_gates]


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


# The layouts below were measured on XLA:CPU only; other backends' matmuls read
# transposed operands at full speed, so there the tangents stay plain matmuls.
def _cpu_layouts() -> bool:
    return jax.default_backend() == "cpu"


def _tangent_matmul(w: Array) -> Callable[[Array], Array]:
    """``a ↦ a · w`` for a tangent ``a``, written so that its transpose ``ct ↦ ct · wᵀ`` is fast.

    Reverse mode runs the tangent loop transposed. XLA:CPU's matmul is about
    1.5x slower per step when it contracts the weight's last axis (``ct · wᵀ``
    read from ``w``) than when it reads a row-major ``wᵀ``, so ``wᵀ`` is
    materialised once, behind a barrier that keeps XLA from folding the two
    transposes back into the slow form.
    """
    if not _cpu_layouts():
        return lambda a: jnp.matmul(a, w)
    w_t = jax.lax.optimization_barrier(w.T)
    return lambda a: jax.lax.dot_general(a, w_t, (((a.ndim - 1,), (1,)), ((), ())))


def _weight_tangent_matmul(x: Array, dw: Array) -> Array:
    """``x · dw`` for a weight tangent ``dw``, written so that its transpose (the weight gradient) is fast.

    Transposed, ``x · dw`` becomes ``(ctᵀ x)ᵀ``, which XLA:CPU turns into a
    transposing copy of the large cotangent ``ct[T·B, G·H]`` and a matmul on its
    generic path. Here ``xᵀ`` (the smaller ``[D, T·B]``) is materialised once in
    the forward pass, so the weight gradient is the plain matmul ``xᵀ · ct``:
    2.4x faster at (T·B, D, G·H) = (4096, 128, 512) on CPU.
    """
    if not _cpu_layouts():
        return jnp.matmul(x, dw)
    x_t = jax.lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)
    out = jax.lax.dot_general(x_t, dw, (((0,), (0,)), ((), ())))
    return out.reshape(*x.shape[:-1], dw.shape[-1])


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


def _input_gates(hoisted: bool, w_x: Array, b: Array, x_t: Any, num_gates: int) -> tuple[Array, ...]:
    """Per-step input part of the gates: read from the hoisted arrays, or one matmul of ``x_t``."""
    if hoisted:
        return x_t
    return _split_gates(jnp.matmul(x_t, w_x) + b, num_gates)


def _input_tangent(
    hoisted: bool, xs: Any, dxs: Any, w_x: Array, dw_x: Any, db: Any, gate_shape: tuple[int, ...]
) -> Array | None:
    """Tangent of the input part of every gate pre-activation, ``[T, B, G·H]`` (``None`` when zero).

    One large matmul per term outside the loop, so its transposes (the input
    kernel's and the inputs' gradients) are large matmuls too. Hoisted inputs
    carry their projection's tangent already (``w_x`` and ``b`` are unused then).
    """
    if hoisted:
        if all(_zero(d) for d in dxs):
            return None
        return jnp.concatenate([_materialize(d, x) for d, x in zip(dxs, xs, strict=True)], axis=-1)
    total = _sum_terms(
        [
            None if _zero(dxs) else _tangent_matmul(w_x)(dxs),
            None if _zero(dw_x) else _weight_tangent_matmul(xs, dw_x),
            None if _zero(db) else db,
        ]
    )
    return None if total is None else jnp.broadcast_to(total, gate_shape)


def _recurrent_tangent(h_start: Array, dw_h: Any, db_h: Any, gate_shape: tuple[int, ...]) -> Array | None:
    """The weights' tangent part of ``h_{t-1} W_h (+ b_h)`` for every step, ``[T, B, G·H]`` (``None`` when zero)."""
    total = _sum_terms(
        [
            None if _zero(dw_h) else _weight_tangent_matmul(h_start, dw_h),
            None if db_h is None or _zero(db_h) else db_h,
        ]
    )
    return None if total is None else jnp.broadcast_to(total, gate_shape)


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
) -> tuple:
    """``h_t`` after every step, ``[T, B, H]``, and the last cell state ``[B, H]`` (and the derivative's coefficients).

    Only the hidden states are stacked: every stacked output is one more
    ``[T, B, H]`` buffer to zero, write and (under differentiation) read back.
    """

    def body(carry: tuple[Array, Array], step_inputs: tuple) -> tuple[tuple[Array, Array], tuple]:
        h, c = carry
        x_t, v, r = step_inputs
        if r is not None:
            h, c = _select(r, rh, h), _select(r, rc, c)
        if hoisted:
            zi, zf, zg, zo = (a + r for a, r in zip(x_t, _split_gates(jnp.matmul(h, w_h), 4), strict=True))
        else:
            # One sum before the gate slices: XLA:CPU runs this form about 10% faster.
            zi, zf, zg, zo = _split_gates(jnp.matmul(x_t, w_x) + b + jnp.matmul(h, w_h), 4)
        i = jax.nn.sigmoid(zi)
        f = jax.nn.sigmoid(zf)
        g = jnp.tanh(zg)
        o = jax.nn.sigmoid(zo)
        c_new = f * c + i * g
        tanh_c = jnp.tanh(c_new)
        h_new = o * tanh_c
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
        h_new, c_new = _select(v, h_new, carry[0]), _select(v, c_new, carry[1])
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


def _lstm_recurrence_jvp(unroll: int | bool, hoisted: bool, primals: tuple, tangents: tuple) -> tuple:
    w_x, b, w_h, inputs, h0, c0, rh, rc, valid, resets = primals
    dw_x, db, dw_h, dinputs, dh0, dc0, drh, drc, _, _ = tangents
    # The forward loop also emits the derivative's coefficients (the gates' local slopes).
    hs, c_last, coefs = _lstm_forward_loop(w_x, b, w_h, inputs, h0, c0, rh, rc, valid, resets, unroll, hoisted, True)
    gate_shape = (*hs.shape[:-1], w_h.shape[-1])
    h_start = _starts(hs, h0, rh, resets)
    outer = _sum_terms(
        [
            _input_tangent(hoisted, inputs, dinputs, w_x, dw_x, db, gate_shape),
            _recurrent_tangent(h_start, dw_h, None, gate_shape),
        ]
    )
    drh, drc = _materialize(drh, rh), _materialize(drc, rc)
    recurrent = _tangent_matmul(w_h)

    # One [B, 4H] input per step (the transposed loop writes one [B, 4H] cotangent per step,
    # whose weight gradients are then two large matmuls).
    def body(carry: tuple[Array, Array], step_inputs: tuple) -> tuple[tuple[Array, Array], Array]:
        dh, dc = carry
        u, (ci, cf, cg, co, cc, ft), v, r = step_inputs
        if r is not None:
            dh, dc = _select(r, drh, dh), _select(r, drc, dc)
        dz = recurrent(dh)
        if u is not None:
            dz = dz + u
        dzi, dzf, dzg, dzo = _split_gates(dz, 4)
        dc_new = ft * dc + ci * dzi + cf * dzf + cg * dzg
        dh_new = co * dzo + cc * dc_new
        dh_new, dc_new = _select(v, dh_new, carry[0]), _select(v, dc_new, carry[1])
        return (dh_new, dc_new), dh_new

    init = (_materialize(dh0, h0), _materialize(dc0, c0))
    (_, dc_last), dhs = jax.lax.scan(body, init, (outer, coefs, valid, resets), unroll=unroll)
    return (hs, c_last), (dhs, dc_last)


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
        xr, xz, xn = _input_gates(hoisted, w_x, b_x, x_t, 3)
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
    gate_shape = (*hs.shape[:-1], w_h.shape[-1])
    h_start = _starts(hs, h0, rh, resets)
    hidden = h0.shape[-1]
    outer_x = _input_tangent(hoisted, inputs, dinputs, w_x, dw_x, db_x, gate_shape)
    outer_h = _recurrent_tangent(h_start, dw_h, db_h, gate_shape)
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
    drh = _materialize(drh, rh)
    recurrent = _tangent_matmul(w_h)

    def body(dh_prev: Array, step_inputs: tuple) -> tuple[Array, Array]:
        u, (cr, cz, cxn, chn, keep), v, r = step_inputs
        dh = dh_prev if r is None else _select(r, drh, dh_prev)
        dr, dz, dn_h = _split_gates(recurrent(dh), 3)
        dh_new = keep * dh
        if u is not None:
            ur, uz, un_x, un_h = _split_gates(u, 4)
            dr, dz, dn_h = dr + ur, dz + uz, dn_h + un_h
            dh_new = dh_new + cxn * un_x
        dh_new = dh_new + cr * dr + cz * dz + chn * dn_h
        dh_new = _select(v, dh_new, dh_prev)
        return dh_new, dh_new

    _, dhs = jax.lax.scan(body, _materialize(dh0, h0), (outer, coefs, valid, resets), unroll=unroll)
    return hs, dhs


_gru_recurrence.defjvp(_gru_recurrence_jvp, symbolic_zeros=True)
