"""The LSTM recurrence as two Pallas kernels: all T steps forward in one, all T steps backward in the other.

:func:`lstm_recurrence` computes what the step loop computes for the plain
LSTM (``LSTMCell`` without peepholes, layer norm or projection) from the
hoisted input projection ``gx = x W_x + b``: per step, from the carry
``(h, c)`` (or the initial carry where ``resets`` marks an episode start)::

    i, f, g, o = σ(gx_i + h W_hi), σ(gx_f + h W_hf), tanh(gx_g + h W_hg), σ(gx_o + h W_ho)
    c' = f ⊙ c + i ⊙ g;   h' = o ⊙ tanh(c')

and keeps the old carry where ``valid`` is False. It returns the carry after
every step; its :func:`jax.custom_vjp` runs the backward kernel for the gate
gradients and forms ``∂W_h`` as one matmul over all steps afterwards.
Layouts and padding: ``cells/_pallas.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from recurrax._types import Array
from recurrax.cells import _pallas

GATES = 4


def lstm_recurrence(
    gx: Array, w_h: Array, h0: Array, c0: Array, valid: Array | None, resets: Array | None
) -> tuple[Array, Array]:
    """The carries after every step, ``(hs[T, B, H], cs[T, B, H])``, from ``gx[T, B, 4H]`` and ``w_h[H, 4H]``.

    ``valid`` and ``resets`` are ``[T, B]`` booleans (or None); a reset restarts
    from ``(h0, c0)``. Differentiable in ``gx``, ``w_h``, ``h0`` and ``c0``.
    """
    num_steps, batch, hidden = gx.shape[0], h0.shape[0], h0.shape[1]
    bp, hp = _pallas.padded_size(batch), _pallas.padded_size(hidden)
    hs, cs = _recurrence(
        _pallas.gates_to_kernel(gx, GATES, bp, hp),
        _pallas.weights_to_kernel(w_h, GATES, hp),
        _pallas.pad_state(h0, bp, hp),
        _pallas.pad_state(c0, bp, hp),
        _pallas.pad_mask(valid, num_steps, bp, default=True),
        _pallas.pad_mask(resets, num_steps, bp, default=False),
    )
    return hs[:, :batch, :hidden], cs[:, :batch, :hidden]


def _forward(gx: Array, w: Array, h0: Array, c0: Array, valid: Array, resets: Array, save: bool) -> list[Array]:
    num_steps, _, batch, hidden = gx.shape
    tiles = _pallas.hidden_tiles(hidden)

    def kernel(gx_ref: Any, w_ref: Any, h0_ref: Any, c0_ref: Any, v_ref: Any, r_ref: Any, *out_refs: Any) -> None:
        hs_ref, cs_ref = out_refs[0], out_refs[1]

        def body(t: Any, _: Any) -> Any:
            reset, keep = _pallas.row(r_ref, t), _pallas.row(v_ref, t)
            prev = jnp.maximum(t - 1, 0)
            # The state lives in the outputs: step t reads step t-1's row, tile by tile.
            h_prev = [jnp.where(t > 0, hs_ref[prev, :, j], h0_ref[:, j]) for j in tiles]
            h_start = [jnp.where(reset, h0_ref[:, j], h) for j, h in zip(tiles, h_prev, strict=True)]
            for n, cols in enumerate(tiles):
                z = [
                    gx_ref[t, k, :, cols]
                    + sum(
                        jnp.dot(h, w_ref[k, rows, cols], preferred_element_type=jnp.float32)
                        for rows, h in zip(tiles, h_start, strict=True)
                    )
                    for k in range(GATES)
                ]
                i, f, g, o = jax.nn.sigmoid(z[0]), jax.nn.sigmoid(z[1]), jnp.tanh(z[2]), jax.nn.sigmoid(z[3])
                c_prev = jnp.where(t > 0, cs_ref[prev, :, cols], c0_ref[:, cols])
                c_new = f * jnp.where(reset, c0_ref[:, cols], c_prev) + i * g
                h_new = o * jnp.tanh(c_new)
                hs_ref[t, :, cols] = jnp.where(keep, h_new, h_prev[n])
                cs_ref[t, :, cols] = jnp.where(keep, c_new, c_prev)
                if save:
                    gates_ref = out_refs[2]
                    for k, gate in enumerate((i, f, g, o)):
                        gates_ref[t, k, :, cols] = gate
            _pallas.barrier()
            return _

        jax.lax.fori_loop(0, num_steps, body, 0)

    state_shape = (num_steps, batch, hidden)
    outputs: list[tuple[tuple[int, ...], int | None]] = [(state_shape, 1), (state_shape, 1)]
    if save:
        outputs.append(((num_steps, GATES, batch, hidden), 2))
    inputs = [(gx, 2), (w, None), (h0, 0), (c0, 0), (valid, 1), (resets, 1)]
    return _pallas.call(kernel, inputs, outputs, batch, "recurrax_lstm_forward")


def _backward(
    w_t: Array, gates: Array, cs: Array, c0: Array, valid: Array, resets: Array, dhs: Array, dcs: Array
) -> list[Array]:
    """Per-step gate gradients ``dz[T, 4, B, H]`` and the initial carry's ``(dh0, dc0)``."""
    num_steps, _, batch, hidden = gates.shape
    tiles = _pallas.hidden_tiles(hidden)

    def kernel(
        w_ref: Any,
        gates_ref: Any,
        cs_ref: Any,
        c0_ref: Any,
        v_ref: Any,
        r_ref: Any,
        dhs_ref: Any,
        dcs_ref: Any,
        dz_ref: Any,
        dh0_ref: Any,
        dc0_ref: Any,
    ) -> None:
        def body(step: Any, carry: tuple[list[Array], ...]) -> tuple[list[Array], ...]:
            # The carry, tile by tile: the cotangents of (h, c) after this step, and of (h0, c0) so far.
            dh_tiles, dc_tiles, dh0_tiles, dc0_tiles = carry
            t = num_steps - 1 - step
            keep, reset = _pallas.row(v_ref, t), _pallas.row(r_ref, t)
            prev = jnp.maximum(t - 1, 0)
            passed, dc_next, dc0_next = [], [], []
            # 1. Tile by tile: the gate gradients, and everything of the carry's cotangent but W_h's part.
            for n, cols in enumerate(tiles):
                dh = dh_tiles[n] + dhs_ref[t, :, cols]
                dc = dc_tiles[n] + dcs_ref[t, :, cols]
                zeros = jnp.zeros_like(dh)
                i, f, g, o = (gates_ref[t, k, :, cols] for k in range(GATES))
                c_prev = jnp.where(t > 0, cs_ref[prev, :, cols], c0_ref[:, cols])
                c_start = jnp.where(reset, c0_ref[:, cols], c_prev)
                tanh_c = jnp.tanh(cs_ref[t, :, cols])
                dc_new = dc + dh * o * (1 - tanh_c * tanh_c)
                pre = (
                    dc_new * g * i * (1 - i),
                    dc_new * c_start * f * (1 - f),
                    dc_new * i * (1 - g * g),
                    dh * tanh_c * o * (1 - o),
                )
                for k in range(GATES):
                    dz_ref[t, k, :, cols] = jnp.where(keep, pre[k], zeros)
                dc_start = jnp.where(keep, dc_new * f, zeros)
                # A valid step's gradient goes to the state it started from (the initial carry at a
                # reset); an invalid step passed its carry through unchanged.
                passed.append(jnp.where(keep, zeros, dh))
                dc_next.append(jnp.where(keep, zeros, dc) + jnp.where(reset, zeros, dc_start))
                dc0_next.append(dc0_tiles[n] + jnp.where(reset, dc_start, zeros))
            _pallas.barrier()  # every tile of dz_t written before any is read
            # 2. W_h's part, dz · W_hᵀ.
            dh_next, dh0_next = [], []
            for m, rows in enumerate(tiles):
                dh_start = sum(
                    jnp.dot(dz_ref[t, k, :, cols], w_ref[k, cols, rows], preferred_element_type=jnp.float32)
                    for k in range(GATES)
                    for cols in tiles
                )
                zeros = jnp.zeros_like(dh_start)
                dh_next.append(passed[m] + jnp.where(reset, zeros, dh_start))
                dh0_next.append(dh0_tiles[m] + jnp.where(reset, dh_start, zeros))
            return dh_next, dc_next, dh0_next, dc0_next

        zeros = [jnp.zeros_like(c0_ref[:, cols]) for cols in tiles]
        dh, dc, dh0, dc0 = jax.lax.fori_loop(0, num_steps, body, (zeros, zeros, zeros, zeros))
        for n, cols in enumerate(tiles):
            dh0_ref[:, cols] = dh0[n] + dh[n]
            dc0_ref[:, cols] = dc0[n] + dc[n]

    inputs = [(w_t, None), (gates, 2), (cs, 1), (c0, 0), (valid, 1), (resets, 1), (dhs, 1), (dcs, 1)]
    state: tuple[tuple[int, ...], int | None] = ((batch, hidden), 0)
    outputs = [((num_steps, GATES, batch, hidden), 2), state, state]
    return _pallas.call(kernel, inputs, outputs, batch, "recurrax_lstm_backward")


@jax.custom_vjp
def _recurrence(gx: Array, w: Array, h0: Array, c0: Array, valid: Array, resets: Array) -> tuple[Array, Array]:
    hs, cs = _forward(gx, w, h0, c0, valid, resets, save=False)
    return hs, cs


def _recurrence_fwd(
    gx: Array, w: Array, h0: Array, c0: Array, valid: Array, resets: Array
) -> tuple[tuple[Array, Array], tuple[Array, ...]]:
    hs, cs, gates = _forward(gx, w, h0, c0, valid, resets, save=True)
    return (hs, cs), (w, h0, c0, valid, resets, hs, cs, gates)


def _recurrence_bwd(residuals: tuple[Array, ...], cotangents: tuple[Array, Array]) -> tuple[Array, ...]:
    w, h0, c0, valid, resets, hs, cs, gates = residuals
    dhs, dcs = cotangents
    dz, dh0, dc0 = _backward(jnp.swapaxes(w, 1, 2), gates, cs, c0, valid, resets, dhs, dcs)
    # ∂W_h for all steps at once: Σ_t h_start(t)ᵀ dz_t, per gate.
    dw = jnp.einsum("tbh,tkbj->khj", _pallas.starts(hs, h0, resets), dz)
    return dz, dw, dh0, dc0, jnp.zeros_like(valid), jnp.zeros_like(resets)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
