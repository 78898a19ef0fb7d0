"""The gates-from-a-matmul kernels for a TPU (Mosaic): time in chunks, the state in VMEM scratch.

Same computation as ``cells/_pallas_gated.py`` (``_pallas.kernel_variant`` chooses
this file on a TPU), laid out for Mosaic TPU instead of Triton. Mosaic copies every block
into VMEM and runs the grid's iterations one after another on a core, so a
block cannot hold all T steps as the Triton kernels' do. Here the grid is
``(blocks of examples, chunks of time)``, ``dimension_semantics=("parallel",
"arbitrary")``: each iteration loops over :data:`TIME_CHUNK` steps of its
block, and the running state (the cotangents, backwards) stays in VMEM
scratch from one chunk to the next. The recurrent weights ``[G, Hp, Hp]`` have
one block for the whole grid, so they are copied into VMEM once and stay
there; each gate's matmul is one MXU ``dot`` of the whole ``[Bb, Hp]`` state
(no column tiles, as Triton's shared memory needed). The backward kernel
walks the chunks in reverse through its index maps, and reads each step's
starting state from an array formed outside (``where(reset, state0,
state[t-1])``), since step 0 of a chunk starts from the previous chunk's
last state.

Layout for Mosaic's ``(8, 128)`` tiles: the hidden size is padded to a
multiple of 128 (lanes), the batch to a multiple of 8 (sublanes; of 128 when
there is more than one block of examples, since the masks ``[T, Bp, 1]``
are blocked on the batch); time to a multiple of :data:`TIME_CHUNK` with
invalid steps. Masks are ``[T, Bp, 1]`` so that a step's mask is a column
that broadcasts across lanes (a ``[T, Bp]`` row would need a lane-to-sublane
relayout per step).

VMEM, float32, per iteration (inputs and outputs double-buffered by Mosaic's
pipeline): the weights ``2·G·Hp²·4`` bytes (LSTM: 1 MiB at H = 128, 16 MiB
at 512 and 64 MiB at 1024), plus per step of the chunk ``2·(2G + S)·Bb·Hp·4``
bytes of gates and states and ``2·2·Bb·128·4`` of masks (the column pads to
a lane tile). :func:`vmem_bytes` adds them up and the kernels ask Mosaic for
that much (``vmem_limit_bytes``); :func:`unsupported` declines a call that
needs more than :data:`VMEM_BUDGET`. **Never run on a TPU**: correct in
Pallas's TPU interpret mode and lowered through Mosaic on CPU (the tests);
whether Mosaic compiles it, and its speed, are unknown (``docs/kernels.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from recurrax._types import Array
from recurrax.cells import _pallas as _pallas_shared

#: Steps per grid iteration (a multiple of 8: the masks' sublane tile). Unmeasured on a TPU.
TIME_CHUNK = 16
#: Examples per block when the batch is large (the MXU's 128 rows); smaller batches are one block.
BATCH_BLOCK = 128
#: VMEM a call may ask for: 64 MiB of the 128 MiB a v5e or v6e core has (v4 has 32 MiB: unverified there).
VMEM_BUDGET = 64 * 2**20

LANES, SUBLANES = 128, 8


def _tpu() -> Any:
    from jax.experimental.pallas import tpu

    return tpu


def _pallas() -> Any:
    from jax.experimental import pallas

    return pallas


def padded_batch(batch: int) -> int:
    """``batch`` rounded up to 8 examples, or to 128 when it needs more than one block."""
    size = -(-batch // SUBLANES) * SUBLANES
    return size if size <= BATCH_BLOCK else -(-batch // BATCH_BLOCK) * BATCH_BLOCK


def padded_hidden(hidden: int) -> int:
    """``hidden`` rounded up to a multiple of 128 lanes."""
    return -(-hidden // LANES) * LANES


def vmem_bytes(num_gates: int, num_parts: int, batch: int, hidden: int, chunk: int = TIME_CHUNK) -> int:
    """The VMEM one iteration of the forward or backward kernel asks for, in bytes (float32, padded sizes)."""
    block = min(padded_batch(batch), BATCH_BLOCK)
    hp = padded_hidden(hidden)
    weights = 2 * num_gates * hp * hp * 4
    # Backward, per step: ∂gx, ∂hh, gx, hh blocks (4G; 2G when the update reads only sums) and the starts,
    # states' cotangents (2S) at most.
    per_step = 2 * (4 * num_gates + 2 * num_parts) * block * hp * 4 + 2 * 2 * block * LANES * 4
    scratch = 3 * num_parts * block * hp * 4
    return weights + chunk * per_step + scratch


def unsupported(num_gates: int, num_parts: int, batch: int, hidden: int) -> str | None:
    """Why the TPU kernels cannot run this size (None: they can): their weights and blocks must fit VMEM."""
    need = vmem_bytes(num_gates, num_parts, batch, hidden)
    if need > VMEM_BUDGET:
        budget = VMEM_BUDGET // 2**20
        return f"H = {hidden} needs {need / 2**20:.0f} MiB of VMEM on a TPU, more than the {budget} MiB it may ask for"
    return None


def _when(condition: Any, body: Callable[[], None]) -> None:
    """Runs ``body`` in the kernel where ``condition`` holds (``pl.when``)."""
    _pallas().when(condition)(body)


def _steps_to_chunks(a: Array, steps: int) -> Array:
    """Pads axis 0 (time) with zeros to ``steps``."""
    return jnp.pad(a, ((0, steps - a.shape[0]),) + ((0, 0),) * (a.ndim - 1))


def _call(
    kernel: Any,
    inputs: Sequence[tuple[Array, str]],
    outputs: Sequence[tuple[tuple[int, ...], str]],
    scratch: Sequence[tuple[int, ...]],
    num_chunks: int,
    batch: int,
    reverse: bool,
    vmem: int,
    name: str,
) -> list[Array]:
    """One ``pallas_call`` over ``(blocks of examples, chunks of time)``.

    Each array's layout says how it is blocked: ``"steps"`` (``[T, ..., B, H]``:
    a chunk of steps, a block of examples), ``"state"`` (``[..., B, H]``: a
    block of examples, the same for every chunk), ``"whole"`` (one block).
    """
    pl, tpu = _pallas(), _tpu()
    block = min(batch, BATCH_BLOCK)

    def spec(shape: tuple[int, ...], layout: str) -> Any:
        if layout == "whole":
            return pl.BlockSpec(shape, lambda b, c: (0,) * len(shape))
        if layout == "state":
            return pl.BlockSpec((*shape[:-2], block, shape[-1]), lambda b, c: (*(0,) * (len(shape) - 2), b, 0))
        chunk_shape = (TIME_CHUNK, *shape[1:-2], block, shape[-1])

        def index_map(b: Any, c: Any) -> tuple[Any, ...]:
            return ((num_chunks - 1 - c) if reverse else c, *(0,) * (len(shape) - 3), b, 0)

        return pl.BlockSpec(chunk_shape, index_map)

    run = pl.pallas_call(
        kernel,
        out_shape=[jax.ShapeDtypeStruct(shape, jnp.float32) for shape, _ in outputs],
        grid=(batch // block, num_chunks),
        in_specs=[spec(a.shape, layout) for a, layout in inputs],
        out_specs=[spec(shape, layout) for shape, layout in outputs],
        scratch_shapes=[tpu.VMEM(shape, jnp.float32) for shape in scratch],
        compiler_params=tpu.CompilerParams(
            dimension_semantics=_pallas_shared.tpu_dimension_semantics("parallel", "arbitrary"),
            vmem_limit_bytes=int(vmem * 1.25) + 2**20,
        ),
        interpret=_pallas_shared.tpu_interpret(),
        name=name,
    )
    result: list[Array] = run(*(a for a, _ in inputs))
    return result


def forward(spec: tuple[Any, int, str, bool], operands: Any, save: bool) -> list[Array]:
    """The states after every step (``S × [T, Bp, Hp]``) and, with ``save``, ``hh[T, G, Bp, Hp]``.

    (``gx + hh`` instead when ``spec[3]`` says the update reads only the sums.)

    ``operands``: ``cells/_pallas_gated.py``'s ``Operands``, padded for a
    TPU (:func:`padded_batch`, :func:`padded_hidden`).
    """
    gx, w, b, state0, units, unit_mask, valid, resets = operands
    update, num_units, _, summed = spec
    num_steps, num_gates, batch, hidden = gx.shape
    num_parts = len(state0)
    padded_steps = math.ceil(num_steps / TIME_CHUNK) * TIME_CHUNK
    block = min(batch, BATCH_BLOCK)

    def kernel(gx_ref: Any, w_ref: Any, b_ref: Any, *refs: Any) -> None:
        s0_refs, refs = refs[:num_parts], refs[num_parts:]
        (u_ref, m_ref, v_ref, r_ref), refs = refs[:4], refs[4:]
        s_refs, refs = refs[:num_parts], refs[num_parts:]
        hh_ref = refs[0] if save else None
        state_scratch = refs[-num_parts:]

        def start_from_state0() -> None:
            for part in range(num_parts):
                state_scratch[part][...] = s0_refs[part][...]

        _when(_pallas().program_id(1) == 0, start_from_state0)

        unit = tuple(jnp.broadcast_to(u_ref[p : p + 1, :], (block, hidden)) for p in range(num_units))
        real = m_ref[...] > 0

        def body(t: Any, loop_carry: Any) -> Any:
            keep, reset = v_ref[t] > 0, r_ref[t] > 0  # [Bb, 1] each
            before = tuple(state_scratch[part][...] for part in range(num_parts))
            starts = tuple(jnp.where(reset, s0_refs[part][...], before[part]) for part in range(num_parts))
            hh = tuple(
                jnp.dot(starts[0], w_ref[k], preferred_element_type=jnp.float32) + b_ref[k : k + 1, :]
                for k in range(num_gates)
            )
            gates = tuple(gx_ref[t, k] for k in range(num_gates))
            new, _internals = update(gates, hh, starts, unit)
            for part in range(num_parts):
                value = jnp.where(keep, jnp.where(real, new[part], 0.0), before[part])
                state_scratch[part][...] = value
                s_refs[part][t] = value
            if hh_ref is not None:
                for k in range(num_gates):
                    hh_ref[t, k] = gates[k] + hh[k] if summed else hh[k]
            return loop_carry

        jax.lax.fori_loop(0, TIME_CHUNK, body, 0)

    masks = [_steps_to_chunks(m, padded_steps)[..., None] for m in (valid, resets)]
    inputs = [(_steps_to_chunks(gx, padded_steps), "steps"), (w, "whole"), (b, "whole")]
    inputs += [(s, "state") for s in state0] + [(units, "whole"), (unit_mask, "whole")]
    inputs += [(m, "steps") for m in masks]
    outputs: list[tuple[tuple[int, ...], str]] = [((padded_steps, batch, hidden), "steps")] * num_parts
    if save:
        outputs.append(((padded_steps, num_gates, batch, hidden), "steps"))
    vmem = vmem_bytes(num_gates, num_parts, batch, hidden)
    scratch = [(block, hidden)] * num_parts
    result = _call(
        kernel, inputs, outputs, scratch, padded_steps // TIME_CHUNK, batch, False, vmem, "recurrax_gated_forward_tpu"
    )
    return [r[:num_steps] for r in result]


def backward(
    spec: tuple[Any, int, str, bool], operands: Any, hh: Array, states: tuple[Array, ...], d_states: tuple[Array, ...]
) -> list[Array]:
    """``∂gx``, ``∂hh`` per step, ``∂state0``'s parts and each example's ``∂units`` ``[P, Bp, Hp]``.

    With ``spec[3]`` (the update reads only sums) ``hh`` holds ``gx + hh``,
    ``operands.gx`` is not read and ``∂gx`` is ``∂hh`` (one array written).
    """
    gx, w, _, state0, units, unit_mask, valid, resets = operands
    w_t = jnp.swapaxes(w, 1, 2)
    update, num_units, _, summed = spec
    num_gate_arrays = 1 if summed else 2
    num_steps, num_gates, batch, hidden = hh.shape
    num_parts = len(state0)
    num_rows = units.shape[0]
    padded_steps = math.ceil(num_steps / TIME_CHUNK) * TIME_CHUNK
    block = min(batch, BATCH_BLOCK)
    # Each step's starting state, formed here: step 0 of a chunk starts from the previous chunk's last state.
    reset_rows = resets[..., None] > 0
    starts = tuple(
        jnp.where(reset_rows, s0[None], jnp.concatenate([s0[None], s[:-1]], axis=0))
        for s, s0 in zip(states, state0, strict=True)
    )

    def kernel(w_ref: Any, *refs: Any) -> None:
        gate_refs, refs = refs[:num_gate_arrays], refs[num_gate_arrays:]
        start_refs, refs = refs[:num_parts], refs[num_parts:]
        (u_ref, m_ref, v_ref, r_ref), refs = refs[:4], refs[4:]
        ds_refs, refs = refs[:num_parts], refs[num_parts:]
        d_gate_refs, refs = refs[:num_gate_arrays], refs[num_gate_arrays:]
        ds0_refs, du_ref, refs = refs[:num_parts], refs[num_parts], refs[num_parts + 1 :]
        d_after, d_initial, d_units = refs[:num_parts], refs[num_parts : 2 * num_parts], refs[2 * num_parts :]

        def start_from_zero() -> None:
            for ref in (*d_after, *d_initial, *d_units):
                ref[...] = jnp.zeros(ref.shape, jnp.float32)

        _when(_pallas().program_id(1) == 0, start_from_zero)

        unit = tuple(jnp.broadcast_to(u_ref[p : p + 1, :], (block, hidden)) for p in range(num_units))
        real_units = m_ref[...] > 0

        def body(i: Any, loop_carry: Any) -> Any:
            t = TIME_CHUNK - 1 - i
            keep, reset = v_ref[t] > 0, r_ref[t] > 0
            d_new = tuple(d_after[part][...] + ds_refs[part][t] for part in range(num_parts))
            zeros = jnp.zeros_like(d_new[0])
            saved = tuple(gate_refs[-1][t, k] for k in range(num_gates))
            if summed:  # update(gx + hh, 0) = update(gx, hh), and ∂gx = ∂hh
                gates, recurrent = saved, tuple(zeros for _ in saved)
            else:
                gates, recurrent = tuple(gate_refs[0][t, k] for k in range(num_gates)), saved
            start = tuple(start_refs[part][t] for part in range(num_parts))
            _, pullback = jax.vjp(lambda g, r, s, u: update(g, r, s, u)[0], gates, recurrent, start, unit)
            d_gates, d_recurrent, d_start, d_unit = pullback(d_new)
            # Only a valid step of a real unit has gradients; elsewhere they are exactly zero.
            real = real_units & keep
            d_hh = []
            for k in range(num_gates):
                if not summed:
                    d_gate_refs[0][t, k] = jnp.where(real, d_gates[k], zeros)
                d_hh.append(jnp.where(real, d_gates[k] if summed else d_recurrent[k], zeros))
                d_gate_refs[-1][t, k] = d_hh[k]
            for p in range(num_units):
                d_units[p][...] = d_units[p][...] + jnp.where(real, d_unit[p], zeros)
            for part in range(num_parts):
                d_from_step = jnp.where(real, d_start[part], zeros)
                if part == 0:  # W_h's part, ∂hh · W_hᵀ
                    d_from_step = d_from_step + sum(
                        jnp.dot(d_hh[k], w_ref[k], preferred_element_type=jnp.float32) for k in range(num_gates)
                    )
                # A valid step's gradient goes to the state it started from (the initial carry at a
                # reset); an invalid step passed its carry through unchanged.
                passed = jnp.where(keep, zeros, d_new[part])
                d_after[part][...] = passed + jnp.where(reset, zeros, d_from_step)
                d_initial[part][...] = d_initial[part][...] + jnp.where(reset, d_from_step, zeros)
            return loop_carry

        jax.lax.fori_loop(0, TIME_CHUNK, body, 0)

        def write_initial_gradients() -> None:
            for part in range(num_parts):
                ds0_refs[part][...] = d_initial[part][...] + d_after[part][...]
            for p in range(num_rows):
                du_ref[p] = d_units[p][...] if p < num_units else jnp.zeros((block, hidden), jnp.float32)

        _when(_pallas().program_id(1) == _pallas().num_programs(1) - 1, write_initial_gradients)

    def pad(a: Array) -> Array:
        return _steps_to_chunks(a, padded_steps)

    inputs = [(w_t, "whole"), *((pad(g), "steps") for g in ([hh] if summed else [gx, hh]))]
    inputs += [(pad(s), "steps") for s in starts]
    inputs += [
        (units, "whole"),
        (unit_mask, "whole"),
        (pad(valid)[..., None], "steps"),
        (pad(resets)[..., None], "steps"),
    ]
    inputs += [(pad(d), "steps") for d in d_states]
    gate_shape = (padded_steps, num_gates, batch, hidden)
    outputs: list[tuple[tuple[int, ...], str]] = [(gate_shape, "steps")] * num_gate_arrays
    outputs += [((batch, hidden), "state")] * num_parts + [((num_rows, batch, hidden), "state")]
    scratch = [(block, hidden)] * (2 * num_parts + num_units)
    vmem = vmem_bytes(num_gates, num_parts, batch, hidden)
    result = _call(
        kernel, inputs, outputs, scratch, padded_steps // TIME_CHUNK, batch, True, vmem, "recurrax_gated_backward_tpu"
    )
    d_gates, rest = [d[:num_steps] for d in result[:num_gate_arrays]], result[num_gate_arrays:]
    return [d_gates[0], *d_gates, *rest] if summed else [*d_gates, *rest]
