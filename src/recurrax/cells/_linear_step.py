"""One step of the linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t``, forwards and backwards, on its parts.

What both variants of the linear Pallas scan compute per step inside their
time loops (``cells/_pallas_linear.py`` for Triton, ``cells/_pallas_linear_tpu.py``
for Mosaic TPU): a complex state travels as its real and imaginary parts,
since the kernels run float32 arithmetic only; a real state as one part.
"""

from __future__ import annotations

import jax.numpy as jnp

from recurrax._types import Array

#: An array's real part, or its real and imaginary parts.
Parts = tuple[Array, ...]


def mul(x: Parts, y: Parts, *, conjugate: bool = False) -> Parts:
    """``x ⊙ y`` (``x ⊙ conj(y)`` with ``conjugate``) on real, or real and imaginary, parts."""
    if len(x) == 1:
        return (x[0] * y[0],)
    (xr, xi), (yr, yi) = x, y
    if conjugate:
        return xr * yr + xi * yi, xi * yr - xr * yi
    return xr * yr - xi * yi, xr * yi + xi * yr


def where(mask: Array, x: Parts, y: Parts) -> Parts:
    """``x`` where ``mask`` holds, else ``y``, part by part (``mask`` broadcasts against each part)."""
    return tuple(jnp.where(mask, p, q) for p, q in zip(x, y, strict=True))


def advance(h: Parts, a_t: Parts, b_t: Parts, keep: Array | None, reset: Array | None, start: Parts) -> Parts:
    """One step forwards: the state after step t from the state ``h`` before it (both kernel variants).

    ``keep``, ``reset``: the step's masks as ``[B, 1]`` booleans, or None.
    """
    h_start = h if reset is None else where(reset, start, h)
    h_new = tuple(p + q for p, q in zip(mul(a_t, h_start), b_t, strict=True))
    return h_new if keep is None else where(keep, h_new, h)


def retreat(
    g: Parts,
    dh0: Parts,
    a_t: Parts,
    h_prev: Parts,
    dh_t: Parts,
    keep: Array | None,
    reset: Array | None,
    start: Parts,
) -> tuple[Parts, Parts, Parts, Parts]:
    """One step backwards: ``(∂a_t, ∂b_t, g, dh0)`` with ``g`` the cotangent passed to the state before step t.

    ``g``: the cotangent of the state after step t from later steps; ``dh0``:
    ``h0``'s, so far; ``h_prev``: the state before step t (``h0`` at t = 0).
    """
    g = tuple(p + q for p, q in zip(g, dh_t, strict=True))
    h_start = h_prev if reset is None else where(reset, start, h_prev)
    zeros = tuple(jnp.zeros_like(p) for p in g)
    da, db, passed = mul(g, h_start, conjugate=True), g, mul(g, a_t, conjugate=True)
    if reset is not None:
        # A valid step that restarts sends its gradient to h0, not to the step before it.
        to_h0 = reset if keep is None else jnp.logical_and(reset, keep)
        dh0 = tuple(p + q for p, q in zip(dh0, where(to_h0, passed, zeros), strict=True))
        passed = where(reset, zeros, passed)
    if keep is not None:
        # Past an example's end the state was carried unchanged: its gradient passes through.
        da, db, passed = where(keep, da, zeros), where(keep, db, zeros), where(keep, passed, g)
    return da, db, passed, dh0
