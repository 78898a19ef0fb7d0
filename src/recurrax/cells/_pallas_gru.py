"""The ``reset_after`` GRU recurrence as two Pallas kernels: all T steps forward in one, backward in the other.

:func:`gru_recurrence` computes what the step loop computes for ``GRUCell``
(``reset_after=True``) from the hoisted input projection ``gx = x W_x + b_x``:
per step, from the carry ``h`` (or the initial carry where ``resets`` marks an
episode start)::

    r = σ(gx_r + h W_hr + b_hr);   z = σ(gx_z + h W_hz + b_hz)
    n = tanh(gx_n + r ⊙ (h W_hn + b_hn));   h' = (1 - z) ⊙ n + z ⊙ h

and keeps the old carry where ``valid`` is False. Its :func:`jax.custom_vjp`
runs the backward kernel for the gate gradients and forms ``∂W_h`` and
``∂b_h`` over all steps afterwards. Layouts and padding: ``cells/_pallas.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from recurrax._types import Array
from recurrax.cells import _pallas

GATES = 3


def gru_recurrence(gx: Array, w_h: Array, b_h: Array, h0: Array, valid: Array | None, resets: Array | None) -> Array:
    """The carry after every step, ``hs[T, B, H]``, from ``gx[T, B, 3H]``, ``w_h[H, 3H]`` and ``b_h[3H]``.

    ``valid`` and ``resets`` are ``[T, B]`` booleans (or None); a reset restarts
    from ``h0``. Differentiable in ``gx``, ``w_h``, ``b_h`` and ``h0``.
    """
    num_steps, batch, hidden = gx.shape[0], h0.shape[0], h0.shape[1]
    bp, hp = _pallas.padded_size(batch), _pallas.padded_size(hidden)
    bias = jnp.pad(b_h.reshape(GATES, hidden), ((0, 0), (0, hp - hidden)))
    hs: Array = _recurrence(
        _pallas.gates_to_kernel(gx, GATES, bp, hp),
        _pallas.weights_to_kernel(w_h, GATES, hp),
        bias,
        _pallas.pad_state(h0, bp, hp),
        _pallas.pad_mask(valid, num_steps, bp, default=True),
        _pallas.pad_mask(resets, num_steps, bp, default=False),
    )
    return hs[:, :batch, :hidden]


def _forward(gx: Array, w: Array, b: Array, h0: Array, valid: Array, resets: Array, save: bool) -> list[Array]:
    num_steps, _, batch, hidden = gx.shape
    tiles = _pallas.hidden_tiles(hidden)

    def kernel(gx_ref: Any, w_ref: Any, b_ref: Any, h0_ref: Any, v_ref: Any, r_ref: Any, *out_refs: Any) -> None:
        hs_ref = out_refs[0]

        def body(t: Any, _: Any) -> Any:
            reset, keep = _pallas.row(r_ref, t), _pallas.row(v_ref, t)
            # The state lives in the output: step t reads step t-1's row, tile by tile.
            h_prev = [jnp.where(t > 0, hs_ref[jnp.maximum(t - 1, 0), :, j], h0_ref[:, j]) for j in tiles]
            h_start = [jnp.where(reset, h0_ref[:, j], h) for j, h in zip(tiles, h_prev, strict=True)]
            for n_tile, cols in enumerate(tiles):
                hh = [
                    sum(
                        jnp.dot(h, w_ref[k, rows, cols], preferred_element_type=jnp.float32)
                        for rows, h in zip(tiles, h_start, strict=True)
                    )
                    + b_ref[k, cols]
                    for k in range(GATES)
                ]
                r = jax.nn.sigmoid(gx_ref[t, 0, :, cols] + hh[0])
                z = jax.nn.sigmoid(gx_ref[t, 1, :, cols] + hh[1])
                n = jnp.tanh(gx_ref[t, 2, :, cols] + r * hh[2])
                h_new = (1 - z) * n + z * h_start[n_tile]
                hs_ref[t, :, cols] = jnp.where(keep, h_new, h_prev[n_tile])
                if save:
                    saved_ref = out_refs[1]
                    for k, value in enumerate((r, z, n, hh[2])):
                        saved_ref[t, k, :, cols] = value
            _pallas.barrier()  # step t's row written before step t+1 reads it
            return _

        jax.lax.fori_loop(0, num_steps, body, 0)

    outputs: list[tuple[tuple[int, ...], int | None]] = [((num_steps, batch, hidden), 1)]
    if save:
        outputs.append(((num_steps, GATES + 1, batch, hidden), 2))
    inputs = [(gx, 2), (w, None), (b, None), (h0, 0), (valid, 1), (resets, 1)]
    return _pallas.call(kernel, inputs, outputs, batch, "recurrax_gru_forward")


def _backward(w_t: Array, saved: Array, hs: Array, h0: Array, valid: Array, resets: Array, dhs: Array) -> list[Array]:
    """Per-step gradients ``[T, 4, B, H]`` (of r's, z's, n's pre-activations and of ``h W_hn + b_hn``) and ``dh0``."""
    num_steps, _, batch, hidden = saved.shape
    tiles = _pallas.hidden_tiles(hidden)

    def kernel(
        w_ref: Any,
        saved_ref: Any,
        hs_ref: Any,
        h0_ref: Any,
        v_ref: Any,
        r_ref: Any,
        dhs_ref: Any,
        dz_ref: Any,
        dh0_ref: Any,
    ) -> None:
        def body(step: Any, carry: tuple[list[Array], list[Array]]) -> tuple[list[Array], list[Array]]:
            # The carry, tile by tile: the cotangent of h after this step, and of h0 so far.
            dh_tiles, dh0_tiles = carry
            t = num_steps - 1 - step
            keep, reset = _pallas.row(v_ref, t), _pallas.row(r_ref, t)
            passed, direct = [], []
            # 1. Tile by tile: the gate gradients, and the carry's cotangent but W_h's part.
            for n_tile, cols in enumerate(tiles):
                dh = dh_tiles[n_tile] + dhs_ref[t, :, cols]
                zeros = jnp.zeros_like(dh)
                r, z, n, hn = (saved_ref[t, k, :, cols] for k in range(GATES + 1))
                h_prev = jnp.where(t > 0, hs_ref[jnp.maximum(t - 1, 0), :, cols], h0_ref[:, cols])
                h_start = jnp.where(reset, h0_ref[:, cols], h_prev)
                dn = dh * (1 - z) * (1 - n * n)
                grads = (dn * hn * r * (1 - r), dh * (h_start - n) * z * (1 - z), dn, dn * r)
                for k in range(GATES + 1):
                    dz_ref[t, k, :, cols] = jnp.where(keep, grads[k], zeros)
                direct.append(jnp.where(keep, dh * z, zeros))
                passed.append(jnp.where(keep, zeros, dh))
            _pallas.barrier()  # every tile of the gradients written before any is read
            # 2. W_h's part: r's, z's and (h W_hn + b_hn)'s gradients times W_hᵀ.
            dh_next, dh0_next = [], []
            for m, rows in enumerate(tiles):
                dh_start = direct[m] + sum(
                    jnp.dot(dz_ref[t, k, :, cols], w_ref[gate, cols, rows], preferred_element_type=jnp.float32)
                    for k, gate in ((0, 0), (1, 1), (3, 2))
                    for cols in tiles
                )
                zeros = jnp.zeros_like(dh_start)
                # A valid step's gradient goes to the state it started from (the initial carry at a
                # reset); an invalid step passed its carry through unchanged.
                dh_next.append(passed[m] + jnp.where(reset, zeros, dh_start))
                dh0_next.append(dh0_tiles[m] + jnp.where(reset, dh_start, zeros))
            return dh_next, dh0_next

        zeros = [jnp.zeros_like(h0_ref[:, cols]) for cols in tiles]
        dh, dh0 = jax.lax.fori_loop(0, num_steps, body, (zeros, zeros))
        for n_tile, cols in enumerate(tiles):
            dh0_ref[:, cols] = dh0[n_tile] + dh[n_tile]

    inputs = [(w_t, None), (saved, 2), (hs, 1), (h0, 0), (valid, 1), (resets, 1), (dhs, 1)]
    outputs: list[tuple[tuple[int, ...], int | None]] = [
        ((num_steps, GATES + 1, batch, hidden), 2),
        ((batch, hidden), 0),
    ]
    return _pallas.call(kernel, inputs, outputs, batch, "recurrax_gru_backward")


@jax.custom_vjp
def _recurrence(gx: Array, w: Array, b: Array, h0: Array, valid: Array, resets: Array) -> Array:
    (hs,) = _forward(gx, w, b, h0, valid, resets, save=False)
    return hs


def _recurrence_fwd(
    gx: Array, w: Array, b: Array, h0: Array, valid: Array, resets: Array
) -> tuple[Array, tuple[Array, ...]]:
    hs, saved = _forward(gx, w, b, h0, valid, resets, save=True)
    return hs, (w, h0, valid, resets, hs, saved)


def _recurrence_bwd(residuals: tuple[Array, ...], dhs: Array) -> tuple[Array, ...]:
    w, h0, valid, resets, hs, saved = residuals
    grads, dh0 = _backward(jnp.swapaxes(w, 1, 2), saved, hs, h0, valid, resets, dhs)
    d_gx = grads[:, :GATES]
    # The recurrent part: r's and z's pre-activation gradients, and that of h W_hn + b_hn.
    d_hh = jnp.concatenate([grads[:, :2], grads[:, 3:]], axis=1)
    dw = jnp.einsum("tbh,tkbj->khj", _pallas.starts(hs, h0, resets), d_hh)
    return d_gx, dw, jnp.sum(d_hh, axis=(0, 2)), dh0, jnp.zeros_like(valid), jnp.zeros_like(resets)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
