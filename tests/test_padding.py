"""Padding is garbage by definition: whatever it holds never reaches a value or a gradient.

PyTorch's packed sequences never read padding; recurrax's masked scan must
match that. Every registered cell (less variants that only change a kept
case's step math), both of its paths (fused/step loop, or parallel/sequential
for a linear cell), forwards and in reverse, with resets, through
bidirectional_scan, an ``nn`` layer and ``fit``. Each test compiles
once and feeds NaN, Inf and 1e30 padding to the same program, comparing against
zero padding. Lengths out of range under ``jit`` follow the documented clamp.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.experimental import checkify

import recurrax
from cell_registry import BATCH, CELL_CASES, FEATURES, STEPS, CellCase, randomized_params

LENGTHS = jnp.array([6, 4, 1])
RESETS = np.zeros((BATCH, STEPS), bool)
RESETS[0, 3] = RESETS[1, 1] = RESETS[1, 4] = True
POISONS = [float("nan"), float("inf"), -float("inf"), 1e30]


def _padded(poison: float) -> jax.Array:
    xs = jax.random.normal(jax.random.key(7), (BATCH, STEPS, FEATURES))
    valid = jnp.arange(STEPS) < LENGTHS[:, None]
    return jnp.where(valid[..., None], xs, poison)


def _assert_same_as_zero_padding(fn, *args_before_xs):
    """``fn(*args, xs)`` gives exactly what zero padding gives, for every poison."""
    want = fn(*args_before_xs, _padded(0.0))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(want) if leaf.dtype != jnp.int32)
    for poison in POISONS:
        got = fn(*args_before_xs, _padded(poison))
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(g, w, err_msg=f"padding {poison}")


def _paths(case: CellCase) -> list[dict]:
    if case.linear:
        return [{"method": "parallel"}, {"method": "sequential"}]
    return [{}, {"fused": False, "hoist_input_projection": False}]


# Variants that only change a step's math take the engine path of a case that stays: simple_rnn_relu is
# simple_rnn_tanh with another activation; lstm_peephole and lstm_layer_norm run the generic step loop
# (no fused loop for them) with LSTMCarry, as lstm_proj does (which stays: its h is narrower than c);
# gru_reset_before runs the generic step loop with the plain carry of gru (as gru_zoneout_eval's inner
# cell does). The padding is cleaned where it enters the engine and the carry frozen there, before
# any step runs; test_cells.py holds every variant's lengths to its numpy step.
SAME_PATH_AS_A_KEPT_CASE = {"simple_rnn_relu", "lstm_peephole", "lstm_layer_norm", "gru_reset_before"}
PADDING_CASES = [case for case in CELL_CASES if case.name not in SAME_PATH_AS_A_KEPT_CASE]


@pytest.mark.slow
@pytest.mark.parametrize("case", PADDING_CASES, ids=[case.name for case in PADDING_CASES])
def test_padding_never_reaches_values_or_gradients(case: CellCase):
    cell = case.make()
    params = randomized_params(cell, jax.random.key(0))

    def total(params, xs):
        out = 0.0
        # One path forwards, the other in reverse: the inputs are cleaned where they
        # enter the engine, before the path or the direction is chosen.
        for options, reverse in zip(_paths(case), (False, True), strict=True):
            ys, carry = recurrax.scan(cell, params, xs, lengths=LENGTHS, resets=RESETS, reverse=reverse, **options)
            leaves = [ys, *jax.tree.leaves(carry)]
            # |.|² keeps complex carries (LRU) real; integer leaves (zoneout keys) have no gradient.
            out = out + sum(jnp.sum(jnp.abs(a) ** 2) for a in leaves if jnp.issubdtype(a.dtype, jnp.inexact))
        return out

    value_and_grad = jax.jit(jax.value_and_grad(total, argnums=(0, 1), allow_int=True))
    _assert_same_as_zero_padding(value_and_grad, params)


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_padding_in_bidirectional_scan_and_nn_layer():
    forward, backward = recurrax.lstm(5), recurrax.gru(4)
    params = (forward.init(jax.random.key(0), FEATURES), backward.init(jax.random.key(1), FEATURES))

    def bidirectional(params, xs):
        ys, _ = recurrax.bidirectional_scan(forward, params[0], backward, params[1], xs, lengths=LENGTHS)
        return jnp.sum(ys**2)

    _assert_same_as_zero_padding(jax.jit(jax.value_and_grad(bidirectional, argnums=(0, 1))), params)

    layer = recurrax.nn.Bidirectional(
        recurrax.nn.LSTM(FEATURES, 5, rngs=nnx.Rngs(0)), recurrax.nn.GRU(FEATURES, 4, reverse=True, rngs=nnx.Rngs(1))
    )

    @nnx.jit
    def layer_grads(layer, xs):
        value, (layer_grad, xs_grad) = nnx.value_and_grad(
            lambda m, xs: jnp.sum(m(xs, lengths=LENGTHS) ** 2), argnums=(0, 1)
        )(layer, xs)
        return value, jax.tree.leaves(layer_grad), xs_grad

    _assert_same_as_zero_padding(lambda xs: layer_grads(layer, xs))


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_fit_on_nan_padded_batches_stays_finite():
    data = {
        "inputs": np.asarray(_padded(float("nan"))),
        "targets": np.array([1.0, 0.0, 1.0], np.float32)[:, None],
        "lengths": np.asarray(LENGTHS),
    }
    model = recurrax.models.SequenceClassifier(
        FEATURES, 1, cell="gru", hidden_size=4, dense_size=None, rngs=nnx.Rngs(0)
    )
    history = recurrax.train.fit(
        model, optax.adam(1e-2), data, loss="binary_cross_entropy", epochs=2, batch_size=3, progress=False
    )
    assert np.isfinite(history.epochs[-1]["loss"])
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_lengths_out_of_range_under_jit_are_clamped_and_checkable():
    cell = recurrax.lstm(4)
    params = cell.init(jax.random.key(0), FEATURES)
    xs = _padded(0.0)
    run = jax.jit(lambda lengths: recurrax.scan(cell, params, xs, lengths=lengths))
    ys, carry = run(jnp.array([STEPS + 3, -1, 0]))
    want_ys, want_carry = recurrax.scan(cell, params, xs, lengths=jnp.array([STEPS, STEPS, STEPS]))
    np.testing.assert_allclose(ys[0], want_ys[0], rtol=1e-6, atol=1e-6)  # above T acts as T
    np.testing.assert_allclose(carry.h[0], want_carry.h[0], rtol=1e-6, atol=1e-6)
    assert not jnp.any(ys[1:]) and not jnp.any(carry.h[1:])  # 0 or less: initial carry, zero outputs

    error, _ = checkify.checkify(run, errors=checkify.user_checks)(jnp.array([STEPS + 3, -1, 0]))
    with pytest.raises(checkify.JaxRuntimeError, match=r"lengths must be in \[1, T=6\], got min -1 and max 9"):
        error.throw()
    error, _ = checkify.checkify(run, errors=checkify.user_checks)(LENGTHS)
    assert error.get() is None
    with pytest.raises(ValueError, match="lengths must be <= the sequence length T=6"):
        recurrax.scan(cell, params, xs, lengths=jnp.array([STEPS + 3, 1, 1]))  # concrete: refused at once
