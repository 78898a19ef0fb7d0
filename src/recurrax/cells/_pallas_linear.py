"""The linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t`` as two Pallas kernels: a time loop per tile of the state.

:func:`linear_scan_pallas` computes what the engine's parallel path
(``_parallel.py``) computes with :func:`jax.lax.associative_scan`, and what
the step loop computes, in one pass over time instead of O(log T) passes. The
recurrence is elementwise across examples and state units, so the grid splits
``[B, H]`` into tiles, one program per tile, and each program loops over all T
steps with its tile of the state in registers: ``a`` and ``b`` are read once
and ``h`` written once (the associative scan reads and writes its operands at
every level). The loop body runs :data:`GPU_CHUNK` steps at a time (unrolled
by hand: Triton lowers no ``unroll``), loading the chunk's coefficients
before the first of its dependent updates, so the loads of a chunk overlap.
The backward kernel runs the reversed recurrence on the cotangents::

    g_t = ∂L/∂h_t + a_{t+1} ⊙ g_{t+1};   ∂a_t = g_t ⊙ h_{t-1};   ∂b_t = g_t

(complex: conjugates of ``a`` and ``h_{t-1}``, which is what the real and
imaginary parts' derivatives come to). Masks follow the engine exactly: past
an example's end (``valid`` False) the state is carried unchanged, as with
``a = 1, b = 0``; where ``resets`` marks a valid step the state restarts from
``h0``, as at step 0; a reset on an invalid step changes nothing. Reverse is
the engine's: every path receives its inputs already reversed within each
example's length.

float32 and complex64 (the LRU's state, run as its real and imaginary parts).
Sizes are padded to powers of two (Triton's blocks are); padded units have
``a = b = h0 = 0`` and stay zero. On a TPU the kernels of
``cells/_pallas_linear_tpu.py`` run instead (time in chunks, the state carried
in VMEM across them); on any other backend the kernels run interpreted, for
tests (:data:`_pallas.OFF_DEVICE_VARIANT` says which): :func:`_pallas.kernel_variant` is the
one place that chooses. **Unmeasured:** no GPU has compiled or timed these
kernels yet (``docs/kernels.md``). With one program per tile and a sequential
loop inside, a GPU is filled only when ``B·H`` is large
(``B·H / (GPU_BATCH_TILE·GPU_STATE_TILE)`` programs); :data:`TIME_CHUNK`
splits time into chunks scanned at once (``cells/_pallas_linear_chunked.py``),
off until a measurement says where that wins.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax._linear_cell import LinearCell, RecurrenceKernel
from recurrax._options import ScanOptions
from recurrax._types import Array
from recurrax.cells import _kernels, _pallas
from recurrax.cells._linear_step import Parts, advance, retreat
from recurrax.cells._pallas_linear_chunked import chunked_linear_scan

# Examples and state units per program on a GPU: one warp's worth (one coalesced 128-byte load per array
# and step), so that there are many programs (B·H / 32), each looping over all T steps on its own: at the
# linear suite's B·H = 4096, 128 programs for the H200's 132 SMs. Unmeasured choices, like GPU_CHUNK.
GPU_BATCH_TILE = 1
GPU_STATE_TILE = 32
GPU_NUM_WARPS = 1
# Steps per iteration of a program's time loop on a GPU (their loads are issued together).
GPU_CHUNK = 8
#: None: each program scans all T steps. An int L: time in chunks of L steps scanned at once, then joined
#: (``cells/_pallas_linear_chunked.py``): T/L times the programs, about three times the memory traffic.
#: Off until a GPU measurement says where it wins.
TIME_CHUNK: int | None = None


def linear_scan_pallas(
    a: Array, b: Array, h0: Array, *, valid: Array | None = None, resets: Array | None = None
) -> Array:
    """The state after every step, ``hs[T, B, H]``, of ``h_t = a_t ⊙ h_{t-1} + b_t`` with ``h_{-1} = h0``.

    ``a``, ``b``: ``[T, B, H]``, float32 or complex64, the same dtype as
    ``h0[B, H]``. ``valid``, ``resets``: ``[T, B]`` booleans (or None): past
    an example's end the state is carried unchanged; a valid step marked by
    ``resets`` starts from ``h0`` (``h_t = a_t ⊙ h0 + b_t``). Differentiable in
    ``a``, ``b`` and ``h0`` (reverse mode: a :func:`jax.custom_vjp`). The plain
    loop it equals::

        h = h0
        for t in range(T):
            start = h0 if resets[t] else h
            h = where(valid[t], a[t] * start + b[t], h)
            hs[t] = h
    """
    if a.ndim != 3 or b.shape != a.shape or h0.shape != a.shape[1:]:
        raise ValueError(f"a, b must be [T, B, H] and h0 [B, H], got a {a.shape}, b {b.shape}, h0 {h0.shape}")
    dtype = jnp.dtype(h0.dtype)
    if dtype not in _PARTS or jnp.dtype(a.dtype) != dtype or jnp.dtype(b.dtype) != dtype:
        raise TypeError(
            f"a, b and h0 must share one dtype of {sorted(map(str, _PARTS))}, got {a.dtype}, {b.dtype}, {h0.dtype}"
        )
    num_steps, batch = a.shape[:2]
    for name, mask in (("valid", valid), ("resets", resets)):
        if mask is not None and mask.shape != (num_steps, batch):
            raise ValueError(f"{name} must be [T, B] = {(num_steps, batch)}, got {mask.shape}")
    if TIME_CHUNK is not None and num_steps > TIME_CHUNK:
        return chunked_linear_scan(_whole, a, b, h0, valid=valid, resets=resets, chunk=TIME_CHUNK)
    return _whole(a, b, h0, valid=valid, resets=resets)


def _whole(a: Array, b: Array, h0: Array, *, valid: Array | None = None, resets: Array | None = None) -> Array:
    """:func:`linear_scan_pallas` with each program scanning all T steps (arguments checked)."""
    num_steps, batch, hidden = a.shape
    dtype = jnp.dtype(h0.dtype)
    variant = _pallas.kernel_variant()
    bp, hp = _variant(variant).padded_sizes(batch, hidden)
    split = _split if _PARTS[dtype] == 2 else lambda x: (x,)
    masks = tuple(None if m is None else _pallas.pad_mask(m, num_steps, bp, default=False) for m in (valid, resets))
    hs = _scan(
        variant,
        tuple(_pad(p, bp, hp) for p in split(a)),
        tuple(_pad(p, bp, hp) for p in split(b)),
        tuple(_pad(p, bp, hp) for p in split(h0)),
        *masks,
    )
    hs = tuple(p[:, :batch, :hidden] for p in hs)
    return jax.lax.complex(*hs) if len(hs) == 2 else hs[0]


# ------------------------------------------------------------ the cells' hook
class PallasLinearRecurrence(LinearCell):
    """Offers :func:`linear_scan_pallas` as the ``"pallas"`` kernel of a linear cell's parallel scan.

    The concrete linear cells inherit it; the engine asks any
    :class:`~recurrax.LinearCell` through :meth:`~recurrax.LinearCell.recurrence_kernel`.
    """

    def recurrence_kernel(self, state: Array, options: ScanOptions) -> RecurrenceKernel | None:
        offered: dict[str, _kernels.Check] = {"pallas": lambda steps: unsupported(state)}
        if _kernels.choose_or_raise(self, options, offered) != "pallas":
            return None
        dtype = jnp.dtype(state.dtype)

        def run(a: Array, b: Array, h0: Array | None, at_start: Array | None, valid: Array | None, axis: int) -> Array:
            return run_in_layout(a, b, h0, at_start, valid, axis, dtype=dtype)

        return run


def unsupported(state: Array) -> str | None:
    """Why the kernel cannot scan a recurrence with this state (None: it can)."""
    missing = _pallas.backend_missing()
    if missing is not None:
        return missing
    if jnp.dtype(state.dtype) not in _PARTS:
        return f"a state of dtype {jnp.dtype(state.dtype)} (the Pallas linear scan runs float32 and complex64)"
    return None


def run_in_layout(
    a: Array,
    b: Array,
    h0: Array | None,
    at_start: Array | None,
    valid: Array | None,
    time_axis: int,
    *,
    dtype: Any,
) -> Array:
    """:func:`linear_scan_pallas` on the engine's arrays: time along ``time_axis``, any batch and state dims.

    ``a``, ``b``: ``[T, *B, *S]`` (or ``[*B, T, *S]``); ``h0``: ``[*B, *S]``, or
    None for a zero state; ``at_start``, ``valid``: masks over ``[T, *B]`` (or
    ``[*B, T]``), broadcastable, or None; ``dtype``: the state's, which the
    recurrence runs in (float32 or complex64).
    """
    a, b = jnp.moveaxis(a, time_axis, 0).astype(dtype), jnp.moveaxis(b, time_axis, 0).astype(dtype)
    masks = [None if m is None else jnp.moveaxis(m, time_axis, 0) for m in (at_start, valid)]
    # The masks span time and the batch dims; without them any split of the rest will do.
    num_batch = next((m.ndim - 1 for m in masks if m is not None), a.ndim - 2)
    batch_shape, state_shape = a.shape[1 : 1 + num_batch], a.shape[1 + num_batch :]
    flat = (a.shape[0], math.prod(batch_shape), math.prod(state_shape))
    starts, keep = (None if m is None else jnp.broadcast_to(m, flat[:1] + batch_shape).reshape(flat[:2]) for m in masks)
    init = jnp.zeros(flat[1:], dtype) if h0 is None else h0.astype(dtype).reshape(flat[1:])
    hs = linear_scan_pallas(a.reshape(flat), b.reshape(flat), init, valid=keep, resets=starts)
    return jnp.moveaxis(hs.reshape(a.shape), 0, time_axis)


# ------------------------------------------------------------------- kernels
_PARTS = {jnp.dtype(jnp.float32): 1, jnp.dtype(jnp.complex64): 2}


def _split(z: Array) -> Parts:
    return jnp.real(z), jnp.imag(z)


def _padded(n: int) -> int:
    # Powers of two, as Triton's blocks are; no minimum (there is no dot here).
    return 1 << max(n - 1, 0).bit_length()


def padded_sizes(batch: int, hidden: int) -> tuple[int, int]:
    """``(examples, units)`` the Triton kernels run ``[B, H]`` padded to: powers of two."""
    return _padded(batch), _padded(hidden)


def _pad(x: Array, batch: int, hidden: int) -> Array:
    widths = [(0, 0)] * (x.ndim - 2) + [(0, batch - x.shape[-2]), (0, hidden - x.shape[-1])]
    return jnp.pad(x, widths) if any(w for _, w in widths) else x


def _tiles(batch: int, hidden: int) -> tuple[int, int]:
    """``(examples, units)`` per program: half of each interpreted (so tests run a 2×2 grid), small on a GPU."""
    if _pallas.interpret_mode():
        return max(batch // 2, 1), max(hidden // 2, 1)
    return min(batch, GPU_BATCH_TILE), min(hidden, GPU_STATE_TILE)


def _chunk() -> int:
    # Interpreted, 2: the tests' T = 5 then runs two chunks and a remainder step.
    return 2 if _pallas.interpret_mode() else GPU_CHUNK


def _time_loop(
    num_steps: int, step: Callable[[Any, Any, Any], Any], carry: Any, *, backwards: bool, load: Callable[[Any], Any]
) -> Any:
    """Runs ``carry = step(t, loaded, carry)`` over all steps, chunk by chunk, ``loaded = load(t)``.

    A chunk's loads come before its updates (they do not depend on the
    carry), so a compiled kernel has them in flight together.
    """
    size = _chunk()
    full = num_steps // size

    def run(ts: Sequence[Any], carry: Any) -> Any:
        loaded = [load(t) for t in ts]
        for t, values in zip(ts, loaded, strict=True):
            carry = step(t, values, carry)
        return carry

    def chunk(c: Any, carry: Any) -> Any:
        base = (full - 1 - c) * size if backwards else c * size
        ts = [base + k for k in range(size)]
        return run(ts[::-1] if backwards else ts, carry)

    remainder = list(range(full * size, num_steps))
    if backwards:
        carry = run(remainder[::-1], carry)
        return jax.lax.fori_loop(0, full, chunk, carry) if full else carry
    carry = jax.lax.fori_loop(0, full, chunk, carry) if full else carry
    return run(remainder, carry)


def _pallas_call(
    kernel: Callable[..., None],
    inputs: Sequence[tuple[Array, str]],
    outputs: Sequence[tuple[tuple[int, ...], str]],
    batch: int,
    hidden: int,
    name: str,
) -> list[Array]:
    """One program per ``[examples, units]`` tile; arrays are laid out ``"tbh"`` (sequences), ``"bh"`` or ``"tb"``."""
    from jax.experimental import pallas as pl  # on first use: see _pallas._pallas

    tb, th = _tiles(batch, hidden)

    def spec(shape: tuple[int, ...], layout: str) -> Any:
        block = tuple({"t": n, "b": tb, "h": th}[axis] for axis, n in zip(layout, shape, strict=True))

        def index_map(i: Any, j: Any) -> tuple[Any, ...]:
            return tuple({"t": 0, "b": i, "h": j}[axis] for axis in layout)

        return pl.BlockSpec(block, index_map)

    compiler_params = None
    if not _pallas.interpret_mode():
        from jax.experimental.pallas import triton

        compiler_params = triton.CompilerParams(num_warps=GPU_NUM_WARPS)
    run = pl.pallas_call(
        kernel,
        out_shape=[jax.ShapeDtypeStruct(shape, jnp.float32) for shape, _ in outputs],
        grid=(batch // tb, hidden // th),
        in_specs=[spec(a.shape, layout) for a, layout in inputs],
        out_specs=[spec(shape, layout) for shape, layout in outputs],
        interpret=_pallas.interpret_mode(),
        name=name,
        compiler_params=compiler_params,
    )
    result: list[Array] = run(*(a for a, _ in inputs))
    return result


def _forward(a: Parts, b: Parts, h0: Parts, valid: Array | None, resets: Array | None) -> Parts:
    num_steps, batch, hidden = a[0].shape
    n = len(a)

    def kernel(*refs: Any) -> None:
        a_refs, b_refs, h0_refs = refs[:n], refs[n : 2 * n], refs[2 * n : 3 * n]
        masks = list(refs[3 * n : -n])
        v_ref = masks.pop(0) if valid is not None else None
        r_ref = masks.pop(0) if resets is not None else None
        hs_refs = refs[-n:]
        start = tuple(r[...] for r in h0_refs)

        def load(t: Any) -> Any:
            return (
                tuple(r[t] for r in a_refs),
                tuple(r[t] for r in b_refs),
                None if v_ref is None else _pallas.row(v_ref, t),
                None if r_ref is None else _pallas.row(r_ref, t),
            )

        def step(t: Any, loaded: Any, h: Parts) -> Parts:
            a_t, b_t, keep, reset = loaded
            h_new = advance(h, a_t, b_t, keep, reset, start)
            for r, p in zip(hs_refs, h_new, strict=True):
                r[t] = p
            return h_new

        _time_loop(num_steps, step, start, backwards=False, load=load)

    inputs = [(x, "tbh") for x in (*a, *b)] + [(x, "bh") for x in h0]
    inputs += [(m, "tb") for m in (valid, resets) if m is not None]
    outputs = [((num_steps, batch, hidden), "tbh")] * n
    return tuple(_pallas_call(kernel, inputs, outputs, batch, hidden, "recurrax_linear_forward"))


def _backward(
    a: Parts, hs: Parts, h0: Parts, valid: Array | None, resets: Array | None, dhs: Parts
) -> tuple[Parts, Parts, Parts]:
    """``(∂a, ∂b, ∂h0)`` from the cotangents ``dhs`` of every step's state."""
    num_steps, batch, hidden = a[0].shape
    n = len(a)

    def kernel(*refs: Any) -> None:
        a_refs, hs_refs, h0_refs = refs[:n], refs[n : 2 * n], refs[2 * n : 3 * n]
        masks = list(refs[4 * n : -3 * n])
        dhs_refs = refs[3 * n : 4 * n]
        v_ref = masks.pop(0) if valid is not None else None
        r_ref = masks.pop(0) if resets is not None else None
        da_refs, db_refs, dh0_refs = refs[-3 * n : -2 * n], refs[-2 * n : -n], refs[-n:]
        start = tuple(r[...] for r in h0_refs)

        def load(t: Any) -> Any:
            if isinstance(t, int):
                h_prev = start if t == 0 else tuple(r[t - 1] for r in hs_refs)
            else:
                before = jnp.maximum(t - 1, 0)
                h_prev = tuple(jnp.where(t > 0, r[before], s) for r, s in zip(hs_refs, start, strict=True))
            return (
                tuple(r[t] for r in a_refs),
                h_prev,
                tuple(r[t] for r in dhs_refs),
                None if v_ref is None else _pallas.row(v_ref, t),
                None if r_ref is None else _pallas.row(r_ref, t),
            )

        def step(t: Any, loaded: Any, carry: tuple[Parts, Parts]) -> tuple[Parts, Parts]:
            a_t, h_prev, dh_t, keep, reset = loaded
            da, db, passed, dh0 = retreat(*carry, a_t, h_prev, dh_t, keep, reset, start)
            for refs_out, parts in ((da_refs, da), (db_refs, db)):
                for r, p in zip(refs_out, parts, strict=True):
                    r[t] = p
            return passed, dh0

        zeros = tuple(jnp.zeros_like(s) for s in start)
        g, dh0 = _time_loop(num_steps, step, (zeros, zeros), backwards=True, load=load)
        for r, p, q in zip(dh0_refs, dh0, g, strict=True):
            r[...] = p + q  # what reaches the state before step 0 is h0's

    inputs = [(x, "tbh") for x in (*a, *hs)] + [(x, "bh") for x in h0] + [(x, "tbh") for x in dhs]
    inputs += [(m, "tb") for m in (valid, resets) if m is not None]
    sequence, state = (num_steps, batch, hidden), (batch, hidden)
    outputs = [(sequence, "tbh")] * (2 * n) + [(state, "bh")] * n
    grads = _pallas_call(kernel, inputs, outputs, batch, hidden, "recurrax_linear_backward")
    return tuple(grads[:n]), tuple(grads[n : 2 * n]), tuple(grads[2 * n :])


class _Kernels(NamedTuple):
    """What a kernel variant provides: the padded ``[B, H]`` it runs, its forward and its backward kernel."""

    padded_sizes: Callable[[int, int], tuple[int, int]]
    forward: Callable[[Parts, Parts, Parts, Array | None, Array | None], Parts]
    backward: Callable[[Parts, Parts, Parts, Array | None, Array | None, Parts], tuple[Parts, Parts, Parts]]


def _variant(name: str) -> _Kernels:
    if name == "tpu":
        from recurrax.cells import _pallas_linear_tpu as tpu  # on first use: it imports Pallas's TPU module

        return _Kernels(tpu.padded_sizes, tpu.forward, tpu.backward)
    if name != "triton":
        raise ValueError(f"the kernel variant must be 'triton' or 'tpu', got {name!r}")
    return _Kernels(padded_sizes, _forward, _backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(variant: str, a: Parts, b: Parts, h0: Parts, valid: Array | None, resets: Array | None) -> Parts:
    return _variant(variant).forward(a, b, h0, valid, resets)


def _scan_fwd(
    variant: str, a: Parts, b: Parts, h0: Parts, valid: Array | None, resets: Array | None
) -> tuple[Parts, Any]:
    hs = _variant(variant).forward(a, b, h0, valid, resets)
    return hs, (a, hs, h0, valid, resets)


def _scan_bwd(variant: str, residuals: Any, dhs: Parts) -> tuple[Any, ...]:
    a, hs, h0, valid, resets = residuals
    da, db, dh0 = _variant(variant).backward(a, hs, h0, valid, resets, dhs)
    no_grad = [None if m is None else jnp.zeros_like(m) for m in (valid, resets)]
    return (da, db, dh0, *no_grad)


_scan.defvjp(_scan_fwd, _scan_bwd)
