"""The parallel path is the hand-written associative scan: same outputs and gradients, and lean masks.

``benchmarks/linear_reference.py`` is minGRU as a researcher writes it with
``jax.lax.associative_scan``; the ``linear`` benchmark suite times recurrax
against it, and this test holds the two to the same numbers. The engine's
shortcuts for the common call (no initial carry, no resets, no lengths: nothing
folded in, the scan along the caller's time axis) are checked against the step
loop on each branch they leave.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import linear_reference  # noqa: E402

B, T, D, H = 2, 4, 3, 4  # T a power of 2: the smallest associative scan, the cheapest compile
SPACES = {"linear": (False, linear_reference.min_gru_linear), "log": (True, linear_reference.min_gru_log)}


def _params():
    """minGRU's parameters, drawn in numpy (no initialiser to compile); non-zero biases, so a dropped one shows."""
    rng = np.random.default_rng(1)
    return {
        "input_kernel": rng.normal(0, 0.6, (D, 2 * H)).astype(np.float32),
        "bias": rng.uniform(-0.5, 0.5, 2 * H).astype(np.float32),
    }


def _xs():
    return np.random.default_rng(2).standard_normal((B, T, D)).astype(np.float32)


def _mean_square(ys):
    return jnp.mean(jnp.square(ys))


def _step_loop(params, xs, h0, lengths, resets, log_space):
    """minGRU's documented step loop in numpy (float64), one example at a time."""
    k, pre = np.split(xs.astype(np.float64) @ params["input_kernel"] + params["bias"], 2, axis=-1)
    z = 1 / (1 + np.exp(-k))
    candidate = np.where(pre >= 0, pre + 0.5, 1 / (1 + np.exp(-pre))) if log_space else pre
    ys, finals = np.zeros((B, T, H)), np.zeros((B, H))
    for b in range(B):
        h = h0[b]
        for t in range(lengths[b]):
            h = h0[b] if resets[b, t] else h
            h = (1 - z[b, t]) * h + z[b, t] * candidate[b, t]
            ys[b, t] = h
        finals[b] = h
    return ys, finals


@pytest.mark.parametrize("space", list(SPACES))
def test_parallel_equals_the_hand_written_scan(space):
    log_space, reference = SPACES[space]
    cell = recurrax.min_gru(H, log_space=log_space)

    def parallel(params, xs):
        return recurrax.scan(cell, params, xs, method="parallel")[0]

    @jax.jit
    def both(params, xs):
        return [jax.value_and_grad(lambda p, f=f: _mean_square(f(p, xs)))(params) for f in (parallel, reference)]

    params, xs = _params(), _xs()
    (got_loss, got_grads), (want_loss, want_grads) = both(params, xs)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for name in params:
        np.testing.assert_allclose(got_grads[name], want_grads[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("space", list(SPACES))
def test_every_shortcut_equals_the_step_loop(space):
    """Each branch of the parallel path: initial carry or not, resets or not, lengths (a traced 0 among them)."""
    log_space = space == "log"
    cell = recurrax.min_gru(H, log_space=log_space)
    resets = np.zeros((B, T), bool)
    resets[0, 2] = resets[1, 3] = True  # the second one lies in example 1's padding
    h0 = np.random.default_rng(3).standard_normal((B, H)).astype(np.float32)
    lengths = np.array([T, 3])
    cases = {  # (initial carry, lengths, resets)
        "initial carry, lengths": (True, True, False),
        "default carry, resets, lengths": (False, True, True),
        "initial carry, resets, a traced length 0": (True, True, True),
    }

    @jax.jit
    def run(params, xs, lengths_0):
        out = {}
        for name, (carry, masked, reset) in cases.items():
            given = lengths_0 if "0" in name else lengths
            out[name] = recurrax.scan(
                cell,
                params,
                xs,
                initial_carry=h0 if carry else None,
                lengths=given if masked else None,
                resets=resets if reset else None,
                method="parallel",
            )
        return out

    params, xs = _params(), _xs()
    results = run(params, xs, np.array([0, 3]))  # traced, so 0 is allowed: the initial carry, zero outputs
    for name, (carry, masked, reset) in cases.items():
        want = _step_loop(
            params,
            xs,
            h0 if carry else np.zeros((B, H)),
            ([0, 3] if "0" in name else lengths) if masked else [T, T],
            resets if reset else np.zeros((B, T), bool),
            log_space,
        )
        for got, expected in zip(results[name], want, strict=True):
            np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6, err_msg=name)
