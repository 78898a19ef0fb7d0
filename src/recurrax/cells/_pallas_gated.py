"""One pair of Pallas kernels for every cell whose step is gates from one recurrent matmul, then an elementwise update.

Such a cell's step, from its carry's parts ``state = (h, *rest)`` (each ``[B, H]``;
``h`` is the part the matmul reads and the step's output), is::

    hh_k = h W_k + b_k                            one matmul, gates k = 0 … G-1
    state' = update(gx, hh, state, units)         elementwise over the H units

with ``gx_k`` the hoisted input projection of gate k and ``units`` the cell's
per-unit parameters (peepholes, say: rows of ``[P, H]``). The LSTM (with or
without peepholes), the ``reset_after`` GRU and the Elman RNN are such cells,
and so is any cell a researcher writes on :class:`~recurrax.cells.MatmulGatedCell`.

:func:`gated_recurrence` runs all T steps in one forward kernel: the time loop is
inside the kernel, and per step the matmul, ``update``, the reset to the
initial carry where ``resets`` marks an episode start, and the freeze past
each example's length. Its :func:`jax.custom_vjp` runs a backward kernel
that loops backwards through the steps and, per step, differentiates
``update`` with :func:`jax.vjp` *inside the kernel* (recomputing the
elementwise update from the saved ``hh``: a few transcendentals per unit,
where storing every intermediate would cost memory) and multiplies the ``hh``
gradients by ``W_hᵀ``. ``∂W_h``, ``∂b_h`` and the per-unit parameters'
gradients are then sums over all steps, outside the kernel. The forward
kernel saves ``hh`` (``[T, G, B, H]``), and the backward pass keeps the
input projection ``gx`` (an input) for the recomputation. Most cells (the
LSTM, the Elman RNN) read ``gx_k`` and ``hh_k`` only through their sum;
``cells/_gate_update_jaxpr.py`` finds that in ``update``'s jaxpr, and then the
forward kernel saves the sums instead, the backward pass keeps no ``gx``, and
the backward kernel writes one gradient for both (``∂gx = ∂hh``): half the
``[T, G, B, H]`` traffic of the backward kernel.

The contract on ``update`` is that it is elementwise over units: the kernel
calls it on column tiles of the state (``cells/_pallas.py``), so a unit must
not read another (no layer norm across H). Padded units (sizes are padded to
powers of two) are forced to zero after every step, whatever ``update`` does
with zero inputs, and so are their gradients: a NaN there (``update``
dividing by a padded parameter) cannot reach a real unit through the matmul.
Layouts, padding, tiles and the ``pallas_call`` over blocks of examples are
``cells/_pallas.py``'s, shared with nothing else.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from recurrax._cell import Internals, Steps
from recurrax._options import ScanOptions
from recurrax._types import Array
from recurrax.cells import _kernels, _pallas, _pallas_gated_tpu
from recurrax.cells._gate_update_jaxpr import reads_only_sums

#: A tuple of ``[B, H]`` arrays (or ``[B, tile]`` inside the kernels): gates, or the carry's parts.
Parts = tuple[Array, ...]

#: ``update(gx, hh, state, units) -> (new_state, internals)``, elementwise over units; the kernels use the new state.
GateUpdate = Callable[[Parts, Parts, Parts, Parts], tuple[Parts, Internals]]


def unsupported(
    leaves: Sequence[Any], options: ScanOptions, xs: Array, num_gates: int, state0: Sequence[Array]
) -> str | None:
    """Why the kernels cannot run a call (None: they can): :func:`_pallas.unsupported`, and VMEM on a TPU.

    ``xs`` is time-major ``[T, *B, D]``; ``state0`` the carry's parts ``[*B, H]``.
    """
    reason = _pallas.unsupported(leaves, options)
    if reason is None and _pallas.kernel_variant() == "tpu":
        batch = math.prod(xs.shape[1:-1])
        reason = _pallas_gated_tpu.unsupported(num_gates, len(state0), batch, state0[0].shape[-1])
    return reason


def gated_recurrence(
    update: GateUpdate,
    gx: Array,
    w_h: Array,
    b_h: Array | None,
    state0: Sequence[Array],
    units: Array | None = None,
    valid: Array | None = None,
    resets: Array | None = None,
) -> Parts:
    """The carry's parts after every step (each ``[T, B, H]``) of the cell ``update`` describes.

    ``gx[T, B, G·H]`` is the input projection, ``w_h[H, G·H]`` and
    ``b_h[G·H]`` (or None) the recurrent matmul, ``state0`` the initial
    carry's parts (``[B, H]`` each, the first read by the matmul), ``units``
    per-unit parameters ``[P, H]`` (or None), ``valid``/``resets`` ``[T, B]``
    booleans (or None): past an example's end the carry is kept; a valid step
    marked by ``resets`` starts from ``state0``. float32. Differentiable
    (reverse mode) in everything but the masks. The plain loop it equals::

        state = state0
        for t in range(T):
            start = state0 if resets[t] else state
            hh = start[0] @ w_h + b_h
            new, _ = update(split(gx[t]), split(hh), start, rows(units))
            state = new if valid[t] else state
    """
    hidden = state0[0].shape[-1]
    num_gates = w_h.shape[-1] // hidden
    if w_h.shape != (hidden, num_gates * hidden) or gx.shape[-1] != num_gates * hidden:
        raise ValueError(
            f"w_h must be [H, G·H] and gx [T, B, G·H] with H = {hidden} (state0[0]'s last axis), "
            f"got w_h {w_h.shape} and gx {gx.shape}"
        )
    num_steps, batch = gx.shape[0], state0[0].shape[0]
    kernels = _pallas.kernel_variant()
    if kernels == "tpu":
        bp, hp = _pallas_gated_tpu.padded_batch(batch), _pallas_gated_tpu.padded_hidden(hidden)
    else:
        bp, hp = _pallas.padded_size(batch), _pallas.padded_size(hidden)
    bias = jnp.zeros((num_gates * hidden,), jnp.float32) if b_h is None else b_h
    # Always at least one row, so every kernel has the same arguments; `num_units` says how many are real.
    unit_rows = jnp.zeros((1, hidden), jnp.float32) if units is None else units.reshape(-1, hidden)
    num_units = 0 if units is None else unit_rows.shape[0]
    operands = Operands(
        _pallas.gates_to_kernel(gx, num_gates, bp, hp),
        _pallas.weights_to_kernel(w_h, num_gates, hp),
        jnp.pad(bias.reshape(num_gates, hidden), ((0, 0), (0, hp - hidden))),
        tuple(_pallas.pad_state(s, bp, hp) for s in state0),
        jnp.pad(unit_rows, ((0, 0), (0, hp - hidden))),
        (jnp.arange(hp) < hidden).astype(jnp.float32)[None],
        _pallas.pad_mask(valid, num_steps, bp, default=True),
        _pallas.pad_mask(resets, num_steps, bp, default=False),
    )
    summed = reads_only_sums(update, num_gates, len(state0), num_units)
    states = _recurrence((update, num_units, kernels, summed), operands)
    return tuple(s[:, :batch, :hidden] for s in states)


def gated_sequence(
    update: GateUpdate,
    project: Callable[[Array], Array],
    w_h: Array,
    b_h: Array | None,
    state0: Sequence[Array],
    units: Array | None,
    xs: Array,
    steps: Steps,
) -> tuple[Array, Parts]:
    """A cell's whole sequence on the kernels: ``(ys[T, *B, H], the final carry's parts [*B, H])``.

    What a cell's :meth:`~recurrax.Cell.sequence` returns, from time-major
    ``xs[T, *B, D]`` in running order and its masks: ``project`` maps
    ``[..., D]`` to the input projection ``[..., G·H]``; outputs are the first
    part, zero past each example's length.
    """
    batch_shape = xs.shape[1:-1]
    xs_f, state_f, steps_f = _kernels.flat_batch(xs, tuple(state0), steps)
    states = gated_recurrence(update, project(xs_f), w_h, b_h, state_f, units, steps_f.valid, steps_f.resets)
    hs = states[0]
    ys = hs if steps_f.valid is None else jnp.where(steps_f.valid[..., None], hs, jnp.zeros_like(hs))
    return _kernels.unflatten(ys, batch_shape), tuple(_kernels.unflatten(s[-1], batch_shape) for s in states)


#: The kernels' static description of a call: the cell's update, how many unit-parameter rows it reads, the
#: target ("gpu" or "tpu"), and whether the update reads the gates only as sums (``reads_only_sums``).
_Spec = tuple[GateUpdate, int, str, bool]


class Operands(NamedTuple):
    """What the kernels read, padded and gate-major (``cells/_pallas.py``); differentiable but for the masks."""

    gx: Array  #: [T, G, Bp, Hp], the input projection
    w: Array  #: [G, Hp, Hp], the recurrent weights
    b: Array  #: [G, Hp], the recurrent bias (zeros if none)
    state0: Parts  #: the initial carry's parts, [Bp, Hp] each
    units: Array  #: [max(P, 1), Hp], the per-unit parameters
    unit_mask: Array  #: [1, Hp], 1 for a real unit, 0 for padding
    valid: Array  #: [T, Bp], float 0/1
    resets: Array  #: [T, Bp], float 0/1


def _unit_tiles(u_ref: Any, cols: slice, num_units: int, rows: int) -> Parts:
    """The per-unit parameters of one column tile, broadcast over the block's examples (``[B, tile]`` each).

    Broadcast, not ``[tile]``: :func:`jax.vjp` then returns each example's own
    gradient, which the backward kernel can mask with the example's steps.
    """
    return tuple(jnp.broadcast_to(u_ref[p, cols][None, :], (rows, cols.stop - cols.start)) for p in range(num_units))


def _forward(spec: _Spec, operands: Operands, save: bool) -> list[Array]:
    if spec[2] == "tpu":
        return _pallas_gated_tpu.forward(spec, operands, save)
    gx, w, b, state0, units, unit_mask, valid, resets = operands
    update, num_units, _, summed = spec
    num_steps, num_gates, batch, hidden = gx.shape
    num_parts = len(state0)
    tiles = _pallas.hidden_tiles(hidden, num_gates)

    def kernel(gx_ref: Any, w_ref: Any, b_ref: Any, *refs: Any) -> None:
        s0_refs, (u_ref, m_ref, v_ref, r_ref), out_refs = (
            refs[:num_parts],
            refs[num_parts : num_parts + 4],
            refs[num_parts + 4 :],
        )
        s_refs = out_refs[:num_parts]

        def body(t: Any, loop_carry: Any) -> Any:
            reset, keep = _pallas.row(r_ref, t), _pallas.row(v_ref, t)
            prev = jnp.maximum(t - 1, 0)

            def previous(part: int, cols: slice) -> Array:
                # The state lives in the outputs: step t reads step t-1's row.
                return jnp.where(t > 0, s_refs[part][prev, :, cols], s0_refs[part][:, cols])

            def start(part: int, cols: slice, before: Array) -> Array:
                return jnp.where(reset, s0_refs[part][:, cols], before)

            h_start = [start(0, cols, previous(0, cols)) for cols in tiles]
            for n, cols in enumerate(tiles):
                hh = tuple(
                    sum(
                        jnp.dot(h, w_ref[k, rows, cols], preferred_element_type=jnp.float32)
                        for rows, h in zip(tiles, h_start, strict=True)
                    )
                    + b_ref[k, cols]
                    for k in range(num_gates)
                )
                before = [previous(part, cols) for part in range(num_parts)]
                starts = (h_start[n], *(start(part, cols, before[part]) for part in range(1, num_parts)))
                gates = tuple(gx_ref[t, k, :, cols] for k in range(num_gates))
                new, _internals = update(gates, hh, starts, _unit_tiles(u_ref, cols, num_units, h_start[n].shape[0]))
                real = m_ref[0, cols][None, :] > 0
                for part in range(num_parts):
                    value = jnp.where(real, new[part], jnp.zeros_like(new[part]))
                    s_refs[part][t, :, cols] = jnp.where(keep, value, before[part])
                if save:
                    for k in range(num_gates):
                        out_refs[num_parts][t, k, :, cols] = gates[k] + hh[k] if summed else hh[k]
            _pallas.barrier()  # step t's rows written before step t+1 reads them
            return loop_carry

        jax.lax.fori_loop(0, num_steps, body, 0)

    state_shape = (num_steps, batch, hidden)
    outputs: list[tuple[tuple[int, ...], int | None]] = [(state_shape, 1)] * num_parts
    if save:
        outputs.append((gx.shape, 2))
    inputs = [(gx, 2), (w, None), (b, None), *((s, 0) for s in state0), (units, None), (unit_mask, None)]
    inputs += [(valid, 1), (resets, 1)]
    return _pallas.call(kernel, inputs, outputs, batch, "recurrax_gated_forward")


def _backward(spec: _Spec, operands: Operands, hh: Array, states: Parts, d_states: Parts) -> list[Array]:
    """``∂gx``, ``∂hh`` per step (``[T, G, B, H]``), ``∂state0``'s parts, each example's ``∂units`` ``[P, B, H]``.

    ``hh`` and ``states`` are what the forward kernel saved and returned (``hh``
    holds ``gx + hh`` when ``spec`` says the update reads only sums: then
    ``operands.gx`` is not read, and ``∂gx`` is ``∂hh``, one array);
    ``d_states`` the states' cotangents.
    """
    if spec[2] == "tpu":
        return _pallas_gated_tpu.backward(spec, operands, hh, states, d_states)
    gx, w, _, state0, units, unit_mask, valid, resets = operands
    w_t = jnp.swapaxes(w, 1, 2)
    update, num_units, _, summed = spec
    num_steps, num_gates, batch, hidden = hh.shape
    num_parts = len(state0)
    tiles = _pallas.hidden_tiles(hidden, num_gates)
    # With sums, one gate array in (the saved sums) and one out (their gradient); otherwise two of each.
    num_gate_arrays = 1 if summed else 2

    def kernel(w_ref: Any, *refs: Any) -> None:
        gate_refs, refs = refs[:num_gate_arrays], refs[num_gate_arrays:]
        s_refs, refs = refs[:num_parts], refs[num_parts:]
        s0_refs, refs = refs[:num_parts], refs[num_parts:]
        (u_ref, m_ref, v_ref, r_ref), refs = refs[:4], refs[4:]
        ds_refs, refs = refs[:num_parts], refs[num_parts:]
        d_gate_refs, refs = refs[:num_gate_arrays], refs[num_gate_arrays:]
        ds0_refs, du_ref = refs[:num_parts], refs[num_parts]
        dhh_ref = d_gate_refs[-1]

        def body(step: Any, carry: tuple[list[list[Array]], ...]) -> tuple[list[list[Array]], ...]:
            # The carry, per part and tile: the cotangent of the state after this step, of state0 so far,
            # and (per unit-parameter row) each example's gradient so far.
            d_after, d_initial, d_units = carry
            t = num_steps - 1 - step
            keep, reset = _pallas.row(v_ref, t), _pallas.row(r_ref, t)
            prev = jnp.maximum(t - 1, 0)
            passed: list[list[Array]] = [[] for _ in range(num_parts)]
            direct: list[list[Array]] = [[] for _ in range(num_parts)]
            d_units_next: list[list[Array]] = [[] for _ in range(num_units)]
            # 1. Tile by tile: update's gradients, and every part of the carry's cotangent but W_h's.
            for n, cols in enumerate(tiles):
                d_new = tuple(d_after[part][n] + ds_refs[part][t, :, cols] for part in range(num_parts))
                zeros = jnp.zeros_like(d_new[0])
                starts = tuple(
                    jnp.where(
                        reset,
                        s0_refs[part][:, cols],
                        jnp.where(t > 0, s_refs[part][prev, :, cols], s0_refs[part][:, cols]),
                    )
                    for part in range(num_parts)
                )
                saved = tuple(gate_refs[-1][t, k, :, cols] for k in range(num_gates))
                if summed:  # update(gx + hh, 0) = update(gx, hh), and ∂gx = ∂hh
                    gates, recurrent = saved, tuple(zeros for _ in saved)
                else:
                    gates, recurrent = tuple(gate_refs[0][t, k, :, cols] for k in range(num_gates)), saved
                unit = _unit_tiles(u_ref, cols, num_units, zeros.shape[0])
                _, pullback = jax.vjp(lambda g, r, s, u: update(g, r, s, u)[0], gates, recurrent, starts, unit)
                d_gates, d_recurrent, d_starts, d_unit = pullback(d_new)
                # Only a valid step of a real unit has gradients; elsewhere they are exactly zero.
                real = (m_ref[0, cols][None, :] > 0) & keep
                for k in range(num_gates):
                    if not summed:
                        d_gate_refs[0][t, k, :, cols] = jnp.where(real, d_gates[k], zeros)
                    dhh_ref[t, k, :, cols] = jnp.where(real, d_gates[k] if summed else d_recurrent[k], zeros)
                for part in range(num_parts):
                    direct[part].append(jnp.where(real, d_starts[part], zeros))
                    # An invalid step passed its carry through unchanged.
                    passed[part].append(jnp.where(keep, zeros, d_new[part]))
                for p in range(num_units):
                    d_units_next[p].append(d_units[p][n] + jnp.where(real, d_unit[p], zeros))
            _pallas.barrier()  # every tile of ∂hh_t written before any is read
            # 2. W_h's part, ∂hh · W_hᵀ, joins h's; a valid step's gradient goes to the state it started
            # from (the initial carry at a reset).
            d_before: list[list[Array]] = [[] for _ in range(num_parts)]
            d_initial_next: list[list[Array]] = [[] for _ in range(num_parts)]
            for m, rows in enumerate(tiles):
                for part in range(num_parts):
                    d_start = direct[part][m]
                    if part == 0:
                        d_start = d_start + sum(
                            jnp.dot(dhh_ref[t, k, :, cols], w_ref[k, cols, rows], preferred_element_type=jnp.float32)
                            for k in range(num_gates)
                            for cols in tiles
                        )
                    zeros = jnp.zeros_like(d_start)
                    d_before[part].append(passed[part][m] + jnp.where(reset, zeros, d_start))
                    d_initial_next[part].append(d_initial[part][m] + jnp.where(reset, d_start, zeros))
            return d_before, d_initial_next, d_units_next

        zeros = [jnp.zeros_like(s0_refs[0][:, cols]) for cols in tiles]
        init = ([list(zeros) for _ in range(num_parts)], [list(zeros) for _ in range(num_parts)])
        d_after, d_initial, d_units = jax.lax.fori_loop(
            0, num_steps, body, (*init, [list(zeros) for _ in range(num_units)])
        )
        for n, cols in enumerate(tiles):
            for part in range(num_parts):
                ds0_refs[part][:, cols] = d_initial[part][n] + d_after[part][n]
            for p in range(num_units):
                du_ref[p, :, cols] = d_units[p][n]
            if num_units == 0:
                du_ref[0, :, cols] = zeros[n]

    inputs = [(w_t, None), *((g, 2) for g in ([hh] if summed else [gx, hh]))]
    inputs += [*((s, 1) for s in states), *((s, 0) for s in state0)]
    inputs += [(units, None), (unit_mask, None), (valid, 1), (resets, 1), *((d, 1) for d in d_states)]
    outputs: list[tuple[tuple[int, ...], int | None]] = [(hh.shape, 2)] * num_gate_arrays
    outputs += [((batch, hidden), 0)] * num_parts + [((units.shape[0], batch, hidden), 1)]
    result = _pallas.call(kernel, inputs, outputs, batch, "recurrax_gated_backward")
    return [result[0], *result] if summed else result


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _recurrence(spec: _Spec, operands: Operands) -> Parts:
    return tuple(_forward(spec, operands, save=False))


def _recurrence_fwd(spec: _Spec, operands: Operands) -> tuple[Parts, tuple[Any, ...]]:
    *states, hh = _forward(spec, operands, save=True)
    # With sums saved the backward pass never reads gx: keep the sums in its place, so gx can be freed.
    kept = operands._replace(gx=hh) if spec[3] else operands
    return tuple(states), (kept, tuple(states), hh)


def _recurrence_bwd(spec: _Spec, residuals: tuple[Any, ...], d_states: Parts) -> tuple[Operands]:
    operands, states, hh = residuals
    num_parts = len(operands.state0)
    d_gx, d_hh, *rest = _backward(spec, operands, hh, states, d_states)
    d_state0, d_units = tuple(rest[:num_parts]), rest[num_parts]
    # ∂W_h for all steps at once: Σ_t h_start(t)ᵀ ∂hh_t, per gate; ∂b_h and ∂units: sums.
    dw = jnp.einsum("tbh,tkbj->khj", _pallas.starts(states[0], operands.state0[0], operands.resets), d_hh)
    db = jnp.sum(d_hh, axis=(0, 2))
    zeros = jnp.zeros_like
    masks = zeros(operands.unit_mask), zeros(operands.valid), zeros(operands.resets)
    return (Operands(d_gx, dw, db, d_state0, jnp.sum(d_units, axis=1), *masks),)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
