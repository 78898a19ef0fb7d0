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

    def kernel(gx_ref: Any, w_ref: Any, b_ref: Any, h0_ref: Any, v_ref: Any, r_ref: Any, *out_refs: Any) -> None:
        hs_ref = out_refs[0]
        h_init = h0_ref[...]

        def body(t: Any, h: Array) -> Array:
            reset = _pallas.row(r_ref, t)
            h_start = jnp.where(reset, h_init, h)
            hh = [jnp.dot(h_start, w_ref[k], preferred_element_type=jnp.float32) + b_ref[k] for k in range(GATES)]
            r = jax.nn.sigmoid(gx_ref[t, 0] + hh[0])
            z = jax.nn.sigmoid(gx_ref[t, 1] + hh[1])
            n = jnp.tanh(gx_ref[t, 2] + r * hh[2])
            h_new = jnp.where(_pallas.row(v_ref, t), (1 - z) * n + z * h_start, h)
            hs_ref[t] = h_new
            if save:
                saved_ref = out_refs[1]
                for k, value in enumerate((r, z, n, hh[2])):
                    saved_ref[t, k] = value
            return h_new

        jax.lax.fori_loop(0, num_steps, body, h_init)

    outputs: list[tuple[tuple[int, ...], int | None]] = [((num_steps, batch, hidden), 1)]
    if save:
        outputs.append(((num_steps, GATES + 1, batch, hidden), 2))
    inputs = [(gx, 2), (w, None), (b, None), (h0, 0), (valid, 1), (resets, 1)]
    return _pallas.call(kernel, inputs, outputs, batch, "recurrax_gru_forward")


def _backward(w_t: Array, saved: Array, hs: Array, h0: Array, valid: Array, resets: Array, dhs: Array) -> list[Array]:
    """Per-step gradients ``[T, 4, B, H]`` (of r's, z's, n's pre-activations and of ``h W_hn + b_hn``) and ``dh0``."""
    num_steps, _, batch, hidden = saved.shape

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
        h_init = h0_ref[...]
        zeros = jnp.zeros_like(h_init)

        def body(step: Any, carry: tuple[Array, Array]) -> tuple[Array, Array]:
            t = num_steps - 1 - step
            dh, dh0 = carry
            dh = dh + dhs_ref[t]
            keep, reset = _pallas.row(v_ref, t), _pallas.row(r_ref, t)
            r, z, n, hn = (saved_ref[t, k] for k in range(GATES + 1))
            h_prev = jnp.where(t > 0, hs_ref[jnp.maximum(t - 1, 0)], h_init)
            h_start = jnp.where(reset, h_init, h_prev)
            dn = dh * (1 - z) * (1 - n * n)
            dr = dn * hn * r * (1 - r)
            dz = dh * (h_start - n) * z * (1 - z)
            grads = tuple(jnp.where(keep, d, zeros) for d in (dr, dz, dn, dn * r))
            for k in range(GATES + 1):
                dz_ref[t, k] = grads[k]
            dh_start = jnp.where(keep, dh * z, zeros) + grads[0] @ w_ref[0] + grads[1] @ w_ref[1] + grads[3] @ w_ref[2]
            # A valid step's gradient goes to the state it started from (the initial carry at a
            # reset); an invalid step passed its carry through unchanged.
            dh_prev = jnp.where(keep, zeros, dh) + jnp.where(reset, zeros, dh_start)
            return dh_prev, dh0 + jnp.where(reset, dh_start, zeros)

        dh, dh0 = jax.lax.fori_loop(0, num_steps, body, (zeros, zeros))
        dh0_ref[...] = dh0 + dh

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
