"""The linear recurrence in chunks of time scanned at once: more programs for the Pallas kernel when ``B·H`` is small.

The kernel of ``cells/_pallas_linear.py`` runs one program per tile of the
state ``[B, H]``, each looping over all T steps: at small ``B·H`` and long T a
GPU has few programs to run, each with a long sequential loop.
:func:`chunked_linear_scan` splits time into ``C`` chunks of ``L`` steps and
runs them as ``C`` times as many examples (``[L, C·B, H]``), in three passes:

1. every chunk scanned from a zero state by the kernel: ``l_t``; and the
   running product of its coefficients, ``p_t = a_{start} ⊙ … ⊙ a_t`` (the
   same kernel with ``b = 0`` from a state of ones);
2. the state entering each chunk, from the chunks' totals ``(p_last, l_last)``
   by an associative scan over the ``C`` chunks (small, in XLA);
3. ``h_t = l_t + p_t ⊙ h_in`` for every step of a chunk (elementwise, in XLA).

Masks and the initial carry are folded into the coefficients first, so the
kernel scans a plain recurrence from zero: a valid step that starts an
episode (step 0, or a reset) gets ``a' = 0, b' = a ⊙ h0 + b``; an invalid step
``a' = 1, b' = 0`` (at step 0: ``a' = 0, b' = h0``); time is padded with
``a' = 1, b' = 0`` steps. Gradients flow through the kernel's own
:func:`jax.custom_vjp` and through the XLA around it. The cost: ``a`` is read
by two kernel calls and ``p`` and ``l`` are materialised (about three times
the memory traffic of one pass), for ``C`` times the parallelism. Which wins
at which sizes is **unmeasured**: no GPU has run either
(``_pallas_linear.TIME_CHUNK`` turns this path on; ``docs/kernels.md``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from recurrax._ops import linear_combine
from recurrax._types import Array

#: A linear scan from a zero state, ``(a[T, B, H], b[T, B, H], h0[B, H]) -> hs[T, B, H]``: the kernel.
Scan = Callable[[Array, Array, Array], Array]


def fold_masks(a: Array, b: Array, h0: Array, valid: Array | None, resets: Array | None) -> tuple[Array, Array]:
    """``(a', b')`` whose scan from a zero state equals the masked scan of ``a``, ``b`` from ``h0``.

    ``valid``/``resets``: ``[T, B]`` booleans or None, the meaning
    ``linear_scan_pallas`` gives them (a reset on an invalid step changes nothing).
    """
    num_steps, batch = a.shape[:2]
    first = (jnp.arange(num_steps) == 0)[:, None]
    valid_steps = jnp.ones((num_steps, batch), bool) if valid is None else valid
    starts = first if resets is None else first | resets
    restart = (valid_steps & starts)[..., None]
    frozen = (~valid_steps)[..., None]
    # (At step 0 the scan's state before it is zero, so a'_0 does not matter.)
    a_folded = jnp.where(restart, jnp.zeros_like(a), jnp.where(frozen, jnp.ones_like(a), a))
    b_restart = a * h0[None] + b
    b_frozen = jnp.where(first[..., None], jnp.broadcast_to(h0[None], b.shape), jnp.zeros_like(b))
    b_folded = jnp.where(restart, b_restart, jnp.where(frozen, b_frozen, b))
    return a_folded, b_folded


def chunked_linear_scan(
    scan: Scan,
    a: Array,
    b: Array,
    h0: Array,
    *,
    valid: Array | None,
    resets: Array | None,
    chunk: int,
) -> Array:
    """``hs[T, B, H]`` of ``h_t = a_t ⊙ h_{t-1} + b_t`` (``h_{-1} = h0``, masked) in chunks of ``chunk`` steps.

    ``scan`` is the kernel (scanning from a given state, no masks); the result
    equals ``scan``'s on the whole sequence with the masks, up to rounding.
    """
    a, b = fold_masks(a, b, h0, valid, resets)
    num_steps, batch, hidden = a.shape
    num_chunks = -(-num_steps // chunk)
    pad = num_chunks * chunk - num_steps
    a = jnp.pad(a, ((0, pad), (0, 0), (0, 0)), constant_values=1)
    b = jnp.pad(b, ((0, pad), (0, 0), (0, 0)))

    def to_chunks(x: Array) -> Array:  # [C·L, B, H] → [L, C·B, H]: every chunk an example of its own
        return x.reshape(num_chunks, chunk, batch, hidden).swapaxes(0, 1).reshape(chunk, num_chunks * batch, hidden)

    def from_chunks(x: Array) -> Array:  # [L, C·B, H] → [C, L, B, H]
        return x.reshape(chunk, num_chunks, batch, hidden).swapaxes(0, 1)

    a_c, b_c = to_chunks(a), to_chunks(b)
    zeros = jnp.zeros(a_c.shape[1:], a.dtype)
    local = from_chunks(scan(a_c, b_c, zeros))  # 1. each chunk from zero
    running = from_chunks(scan(a_c, jnp.zeros_like(b_c), jnp.ones_like(zeros)))  # its running product of a
    # 2. the state after each chunk, h_c = p_c ⊙ h_{c-1} + l_c, and so the state entering it (h_{-1} = 0).
    _, after = jax.lax.associative_scan(linear_combine, (running[:, -1], local[:, -1]), axis=0)
    entering = jnp.concatenate([jnp.zeros_like(after[:1]), after[:-1]], axis=0)
    # 3. every step: its chunk's local state plus what entered the chunk, carried by the running product.
    hs = local + running * entering[:, None]
    return hs.reshape(num_chunks * chunk, batch, hidden)[:num_steps]
