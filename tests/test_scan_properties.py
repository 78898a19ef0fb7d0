"""Property tests: for any lengths, resets, direction and padding, ``scan`` is its documented loop.

Hypothesis draws the masks and the garbage in the padding; the shapes stay
fixed, so each cell's scan compiles once and every example reuses it. The
reference is ``numpy_reference.scan_loop``, the engine's docstring loop, run
over the cell's own (jitted) single step one example at a time.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import recurrax
from numpy_reference import scan_loop

B, T, D, H = 3, 6, 2, 4
CELLS = {
    "lstm fused": (recurrax.lstm(H), {}),
    "gru step loop": (recurrax.gru(H), {"fused": False}),
    "min_gru parallel": (recurrax.min_gru(H), {"method": "parallel"}),
    "qrnn parallel": (recurrax.qrnn(H, window=2), {"method": "parallel"}),
}


@st.composite
def masked_batches(draw):
    """``(xs, lengths, resets, reverse)``: garbage (NaN, Inf, huge) past each example's length."""
    lengths = np.array(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    resets = np.array(draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))).reshape(B, T)
    seed = draw(st.integers(0, 2**16))
    garbage = draw(st.sampled_from([np.nan, np.inf, -1e30, 0.0]))
    xs = np.random.default_rng(seed).normal(size=(B, T, D)).astype(np.float32)
    xs[np.arange(T)[None, :] >= lengths[:, None]] = garbage
    return xs, lengths, resets, draw(st.booleans())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CELLS))
def test_scan_equals_its_loop_for_any_masks(name):
    cell, options = CELLS[name]
    params = cell.init(jax.random.key(0), D)
    c0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(1), a.shape, a.dtype), cell.initial_carry((B,)))
    run = jax.jit(
        lambda xs, lengths, resets, reverse: recurrax.scan(
            cell, params, xs, initial_carry=c0, lengths=lengths, resets=resets, reverse=reverse, **options
        ),
        static_argnums=3,
    )
    step = jax.jit(lambda carry, x: cell.step(params, carry, x))

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(masked_batches())
    def check(batch):
        xs, lengths, resets, reverse = batch
        ys, final = run(xs, lengths, resets, reverse)
        want_ys, want_final = scan_loop(step, xs, c0, lengths=lengths, resets=resets, reverse=reverse)
        np.testing.assert_allclose(ys, want_ys, rtol=2e-5, atol=2e-6)
        for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(want_final), strict=True):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)

    check()
