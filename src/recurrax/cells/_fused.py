"""The machinery of the fused LSTM/GRU sequence paths: one loop per sequence, weight gradients batched over time.

A gated cell's :meth:`~recurrax.Cell.sequence` (``cells/_lstm_sequence.py``,
``cells/_gru_sequence.py``) writes its forward loop and its tangent loop; this
module holds what they share. What the fused paths do differently from the
engine's step loop (measured in ``benchmarks/``, see ``benchmarks/README.md``):

* **No slices of a per-step slice.** The plain loop with a hoisted input
  projection reads ``projected_x[t]`` (``[B, G·H]``) and slices it into gates.
  XLA:CPU compiles "several slices of a dynamic slice" into slow scalar code
  (about 10x slower per step than reading whole arrays). Here the input matmul
  runs inside the step by default (its output's slices are fast, and no
  ``[T, B, G·H]`` buffer is made: large fresh buffers are slow on CPU), or,
  when hoisting, the projection is split into one ``[T, B, H]`` array per gate
  before the loop.
* **Weight gradients batched over time.** Differentiating ``lax.scan`` adds
  ``∂W_h += h_{t-1}ᵀ ∂z_t`` inside the backward loop: T small matmuls and T
  read-modify-writes of ``[H, G·H]``. The fused paths' :func:`jax.custom_jvp`
  rules put every tangent term that does not depend on the previous step
  outside the loop as large matmuls, so their transposes (the weight and input
  gradients) are large matmuls after the loop. The loop that remains carries
  only the state's tangent: per step one ``[B, H] × [H, G·H]`` matmul, one
  elementwise fusion, and one ``[B, G·H]`` tangent input. On CPU the LSTM always
  takes this path and the GRU only for small steps
  (:data:`CPU_BATCHED_GRADIENTS_MAX`); otherwise the same loop is
  differentiated directly.
* **Layouts that XLA:CPU transposes well** (:func:`tangent_matmul`,
  :func:`weight_tangent_matmul`): the backward loop multiplies by a
  materialised ``W_hᵀ`` and the weight gradients are ``xᵀ · ct`` with ``xᵀ``
  materialised in the forward pass, instead of the forms that XLA:CPU runs
  1.5-2.4x slower.
* **Coefficients from the forward loop.** Under differentiation the forward
  loop also emits the gates' local slopes (``[T, B, H]`` each), so the tangent
  loop needs no recomputation.
* **Chunked remat.** ``remat=True`` recomputes chunks of :data:`REMAT_CHUNK`
  steps one at a time in the backward pass.

A ``custom_jvp`` (not ``custom_vjp``) keeps forward-mode differentiation
(``jax.jvp``, ``jax.jacfwd``) and higher derivatives working.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from recurrax._cell import Cell, Steps
from recurrax._types import Array, Params

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

#: ``run(weights, inputs, state0, valid, resets, *, reset_state=None) -> (ys, final_state)`` on ``[T, B, ...]``.
SequenceRun = Callable[..., tuple[Array, tuple[Array, ...]]]


def batched_weight_gradients(batch: int, num_gates: int, hidden: int) -> bool:
    """Whether the fused path batches weight gradients (custom_jvp) for this step size on this backend."""
    if jax.default_backend() != "cpu":
        return True
    return batch * num_gates * hidden <= CPU_BATCHED_GRADIENTS_MAX[num_gates]


def one_float_dtype(cell: Cell, params: Params, carry_leaves: Sequence[Array], xs: Array) -> str | None:
    """Why a fused loop (written for one dtype) cannot take these arrays; None when it can.

    Inputs, parameters and carry must share one dtype, float32 or float64, and
    the cell must compute and keep its state in it (no mixed precision).
    """
    leaves = [xs, *jax.tree.leaves(params), *carry_leaves]
    if not all(hasattr(a, "dtype") and hasattr(a, "shape") for a in leaves):
        return "inputs, parameters and carry must be arrays"
    dtype = jnp.dtype(xs.dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        return f"inputs of dtype {dtype} (it runs float32 or float64)"
    if any(jnp.dtype(a.dtype) != dtype for a in leaves):
        return "inputs, parameters and carry in different dtypes"
    if cell.compute_dtype(xs, *jax.tree.leaves(params)) != dtype or cell.state_dtype() != dtype:
        return "mixed precision (a compute or carry dtype other than the inputs')"
    batch_shape = xs.shape[1:-1]
    if not all(tuple(a.shape[:-1]) == tuple(batch_shape) for a in carry_leaves):
        return "a carry whose batch shape differs from the inputs'"
    return None


def run_fused(
    run: SequenceRun,
    weights: tuple[Array, ...],
    xs: Array,
    state0: tuple[Array, ...],
    steps: Steps,
    *,
    remat: bool,
    project: Callable[[Array], Array] | None,
    num_gates: int,
) -> tuple[Array, tuple[Array, ...]]:
    """Runs ``run`` over time-major ``xs[T, *B, D]`` with the batch dims flattened; returns ``(ys, final_state)``.

    ``project`` (when hoisting) is the input projection; its output is split
    into one ``[T, B, H]`` array per gate before the loop.
    """
    num_steps = xs.shape[0]
    batch_shape = xs.shape[1:-1]
    flat = math.prod(batch_shape)

    def flatten(a: Array, feature_dims: int) -> Array:
        lead = a.shape[: a.ndim - feature_dims - len(batch_shape)]
        return a.reshape((*lead, flat, *a.shape[a.ndim - feature_dims :]))

    xs_f = flatten(xs, 1)
    valid_f = None if steps.valid is None else flatten(steps.valid, 0)
    resets_f = None if steps.resets is None else flatten(steps.resets, 0)
    state_f = tuple(flatten(s, 1) for s in state0)
    # Hoisted: the loop reads one [T, B, H] array per gate (never slices of a [T, B, G·H] one).
    inputs: Any = split_gates(project(xs_f), num_gates) if project is not None else xs_f
    if remat and num_steps > REMAT_CHUNK:
        ys, final = _chunked(run, weights, inputs, state_f, valid_f, resets_f)
    else:
        ys, final = run(weights, inputs, state_f, valid_f, resets_f)

    def unflatten(a: Array) -> Array:
        return a.reshape((*a.shape[:-2], *batch_shape, a.shape[-1]))

    return unflatten(ys), tuple(unflatten(s) for s in final)


def _chunked(
    run: SequenceRun,
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
    def body(state: tuple[Array, ...], chunk: tuple[Any, ...]) -> tuple[tuple[Array, ...], Array]:
        inputs_c, valid_c, resets_c = chunk
        ys_c, new_state = run(weights, inputs_c, state, valid_c, resets_c, reset_state=state0)
        return new_state, ys_c

    final, ys = jax.lax.scan(body, state0, (jax.tree.map(chunks, inputs), chunks(valid), chunks(resets)))
    ys = ys.reshape((num_chunks * REMAT_CHUNK, *ys.shape[2:]))[:num_steps]
    return ys, final


# ------------------------------------------------------------- loop helpers
def split_gates(a: Array, num_gates: int) -> tuple[Array, ...]:
    return tuple(jnp.split(a, num_gates, axis=-1))


def select(mask: Array | None, on_true: Array, on_false: Array) -> Array:
    return on_true if mask is None else jnp.where(mask[..., None], on_true, on_false)


def starts(carries: Array, state0: Array, reset_state: Array, resets: Array | None) -> Array:
    """The carry each step starts from: the previous carry, or the reset state."""
    prev = jnp.concatenate([state0[None], carries[:-1]], axis=0)
    if resets is None:
        return prev
    return jnp.where(resets[..., None], reset_state[None], prev)


def input_gates(hoisted: bool, w_x: Array, b: Array, x_t: Any, num_gates: int) -> tuple[Array, ...]:
    """Per-step input part of the gates: read from the hoisted arrays, or one matmul of ``x_t``."""
    if hoisted:
        return tuple(x_t)  # already one array per gate
    return split_gates(jnp.matmul(x_t, w_x) + b, num_gates)


# -------------------------------------------------------------- tangent helpers
# The layouts below were measured on XLA:CPU only; other backends' matmuls read
# transposed operands at full speed, so there the tangents stay plain matmuls.
def _cpu_layouts() -> bool:
    return jax.default_backend() == "cpu"


def tangent_matmul(w: Array) -> Callable[[Array], Array]:
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


def weight_tangent_matmul(x: Array, dw: Array) -> Array:
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


def is_zero(t: Any) -> bool:
    return isinstance(t, SymbolicZero)


def materialize(t: Any, like: Array) -> Array:
    return jnp.zeros_like(like) if is_zero(t) else t


def sum_terms(terms: list[Array | None]) -> Array | None:
    present = [t for t in terms if t is not None]
    if not present:
        return None
    total = present[0]
    for t in present[1:]:
        total = total + t
    return total


def input_tangent(
    hoisted: bool, xs: Any, dxs: Any, w_x: Array, dw_x: Any, db: Any, gate_shape: tuple[int, ...]
) -> Array | None:
    """Tangent of the input part of every gate pre-activation, ``[T, B, G·H]`` (``None`` when zero).

    One large matmul per term outside the loop, so its transposes (the input
    kernel's and the inputs' gradients) are large matmuls too. Hoisted inputs
    carry their projection's tangent already (``w_x`` and ``b`` are unused then).
    """
    if hoisted:
        if all(is_zero(d) for d in dxs):
            return None
        return jnp.concatenate([materialize(d, x) for d, x in zip(dxs, xs, strict=True)], axis=-1)
    total = sum_terms(
        [
            None if is_zero(dxs) else tangent_matmul(w_x)(dxs),
            None if is_zero(dw_x) else weight_tangent_matmul(xs, dw_x),
            None if is_zero(db) else db,
        ]
    )
    return None if total is None else jnp.broadcast_to(total, gate_shape)


def recurrent_tangent(h_start: Array, dw_h: Any, db_h: Any, gate_shape: tuple[int, ...]) -> Array | None:
    """The weights' tangent part of ``h_{t-1} W_h (+ b_h)`` for every step, ``[T, B, G·H]`` (``None`` when zero)."""
    total = sum_terms(
        [
            None if is_zero(dw_h) else weight_tangent_matmul(h_start, dw_h),
            None if db_h is None or is_zero(db_h) else db_h,
        ]
    )
    return None if total is None else jnp.broadcast_to(total, gate_shape)
