"""The streaming causal convolution cell equals the full convolution."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax.conv import causal_conv1d

B, T, D, F = 2, 7, 4, 6
LENGTHS = np.array([7, 4])


def _setup(dtype=jnp.float64, **options):
    cell = causal_conv1d(F, options.pop("kernel_size", 3), in_features=D, param_dtype=dtype, **options)
    # Random values for every parameter (numpy: eager jax.random would compile once per shape).
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(functools.partial(cell.init, in_features=D), jax.random.key(0))
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)
    xs = rng.standard_normal((B, T, D)).astype(dtype)
    return cell, params, xs


@pytest.mark.parametrize(
    "options",
    [{"dilation": 2}, {"kernel_size": 4, "groups": 2}, {"weight_norm": True, "use_bias": False}, {"kernel_size": 1}],
    ids=["dilated", "grouped", "weight_norm", "pointwise"],
)
def test_streaming_equals_the_full_causal_convolution(options, x64):
    cell, params, xs = _setup(**options)
    streamed, window = recurrax.scan(cell, params, xs, lengths=LENGTHS)
    full = cell.conv.apply(params, xs, lengths=LENGTHS)
    np.testing.assert_allclose(streamed, full, atol=1e-12, rtol=1e-12)
    # The final carry is the window of each example's last inputs (zeros before the start).
    w = cell.window_size
    for b, length in enumerate(LENGTHS):
        padded = np.concatenate([np.zeros((w, D)), np.asarray(xs[b, :length])])
        np.testing.assert_array_equal(window[b], padded[len(padded) - w :])


def test_streaming_in_chunks_continues_from_the_carry():
    """Feeding T steps in two chunks (or one step at a time) gives the full convolution's outputs."""
    cell, params, xs = _setup(jnp.float32, dilation=2)
    first, carry = recurrax.scan(cell, params, xs[:, :3])
    second, _ = recurrax.scan(cell, params, xs[:, 3:], initial_carry=carry)
    full = cell.conv.apply(params, xs)
    np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), full, atol=1e-6)
    carry = cell.initial_carry((B,))
    step = jax.jit(cell.step)
    for t in range(T):
        carry, y = step(params, carry, xs[:, t])
        np.testing.assert_allclose(y, full[:, t], atol=1e-6)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="in_features=4, got in_features=3"):
        causal_conv1d(F, 3, in_features=4).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="dilation must be a positive int, got -2"):
        causal_conv1d(F, 3, in_features=4, dilation=-2)
    with pytest.raises(ValueError, match="groups=3 must divide in_features=4"):
        causal_conv1d(6, 3, in_features=4, groups=3)
    with pytest.raises(ValueError, match="kernel_size must be a positive int"):
        causal_conv1d(F, 0, in_features=4)
