"""Independent numpy references for the cells and the scan engine.

Written from the papers' equations, not from recurrax's code, so that a shared
mistake is unlikely. Used for the options PyTorch lacks (peepholes, layer
norm, GRU reset-before) and for the engine's documented Python loop.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _layer_norm(x, scale, bias=None, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps) * scale
    return y if bias is None else y + bias


def lstm_step(p, carry, x, *, peephole=False, layer_norm=False, proj=False, gates=False):
    """One LSTM step; with ``gates`` the output is ``[i | f | g | o | c']`` (what a recording names) instead of h'."""
    h, c = carry
    H = c.shape[-1]
    wx = x @ p["input_kernel"]
    wh = h @ p["recurrent_kernel"]
    if layer_norm:
        wx = _layer_norm(wx, p["input_norm_scale"])
        wh = _layer_norm(wh, p["recurrent_norm_scale"])
    z = wx + wh + p["bias"]
    zi, zf, zg, zo = z[..., :H], z[..., H : 2 * H], z[..., 2 * H : 3 * H], z[..., 3 * H :]
    if peephole:
        zi = zi + p["peephole"][0] * c
        zf = zf + p["peephole"][1] * c
    c_new = sigmoid(zf) * c + sigmoid(zi) * np.tanh(zg)
    if peephole:
        zo = zo + p["peephole"][2] * c_new
    c_act = _layer_norm(c_new, p["cell_norm_scale"], p["cell_norm_bias"]) if layer_norm else c_new
    h_new = sigmoid(zo) * np.tanh(c_act)
    if proj:
        h_new = h_new @ p["projection_kernel"]
    if gates:
        return (h_new, c_new), np.concatenate([sigmoid(zi), sigmoid(zf), np.tanh(zg), sigmoid(zo), c_new], axis=-1)
    return (h_new, c_new), h_new


def gru_step(p, h, x, *, reset_after=True, gates=False):
    """One GRU step; with ``gates`` the output is ``[r | z | n]`` (what a recording names) instead of h'."""
    H = h.shape[-1]
    wx = x @ p["input_kernel"] + p["input_bias"]
    w_h, b_h = p["recurrent_kernel"], p["recurrent_bias"]
    r = sigmoid(wx[..., :H] + h @ w_h[:, :H] + b_h[:H])
    z = sigmoid(wx[..., H : 2 * H] + h @ w_h[:, H : 2 * H] + b_h[H : 2 * H])
    if reset_after:
        n = np.tanh(wx[..., 2 * H :] + r * (h @ w_h[:, 2 * H :] + b_h[2 * H :]))
    else:
        n = np.tanh(wx[..., 2 * H :] + (r * h) @ w_h[:, 2 * H :] + b_h[2 * H :])
    h_new = (1 - z) * n + z * h
    if gates:
        return h_new, np.concatenate([r, z, n], axis=-1)
    return h_new, h_new


def simple_rnn_step(p, h, x, *, activation="tanh"):
    z = x @ p["input_kernel"] + h @ p["recurrent_kernel"] + p["bias"]
    h_new = np.tanh(z) if activation == "tanh" else np.maximum(z, 0)
    return h_new, h_new


def scan_loop(step, xs, initial_carry, lengths=None, resets=None, reverse=False):
    """The scan engine's documented Python loop, one example at a time.

    xs: [B, T, D]; initial_carry: pytree (tuple or array) with leaves [B, ...].
    Returns ys [B, T, O] and the final carry (same structure).
    """
    import jax

    B, T = xs.shape[:2]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    ys_rows, finals = [], []
    for b in range(B):
        c0 = jax.tree.map(lambda a, b=b: np.asarray(a)[b], initial_carry)
        carry = c0
        steps = range(int(lengths[b]))
        rows = {}
        for t in reversed(steps) if reverse else steps:
            # Backwards, an episode (which starts where resets is set) is entered at its last step.
            if resets is None:
                starts_here = False
            else:
                starts_here = (t + 1 < T and resets[b, t + 1]) if reverse else resets[b, t]
            if starts_here:
                carry = c0
            carry, y = step(carry, np.asarray(xs[b, t]))
            rows[t] = y
        out_dim = next(iter(rows.values())).shape[-1]
        ys_rows.append(np.stack([rows.get(t, np.zeros(out_dim)) for t in range(T)]))
        finals.append(carry)
    final = jax.tree.map(lambda *leaves: np.stack(leaves), *finals)
    return np.stack(ys_rows), final
