"""The scan engine's semantics: each option against the documented loop or an equivalent run."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from cell_registry import BATCH, FEATURES, HIDDEN, STEPS, randomized_params

CELL = recurrax.lstm(HIDDEN)
# From numpy: at import, every xdist worker would compile jax.random's program.
XS = jnp.asarray(np.random.default_rng(1).standard_normal((BATCH, STEPS, FEATURES)).astype(np.float32))
LENGTHS = jnp.array([6, 4, 1])


@functools.cache
def _params():
    """The LSTM's randomized params, made by the first test that needs them (not by every worker at import)."""
    return randomized_params(CELL, jax.random.key(0))


def _assert_trees_close(a, b, atol=1e-6):
    chex.assert_trees_all_close(a, b, atol=atol, rtol=atol)


def test_lengths_zero_padding_and_final_carry_equals_truncated_run():
    ys, carry = recurrax.scan(CELL, _params(), XS, lengths=LENGTHS)
    for b, length in enumerate(np.asarray(LENGTHS)):
        assert np.all(np.asarray(ys[b, length:]) == 0)
        alone_ys, alone_carry = recurrax.scan(CELL, _params(), XS[b, :length])
        _assert_trees_close(ys[b, :length], alone_ys)
        _assert_trees_close(jax.tree.map(lambda a, b=b: a[b], carry), alone_carry)


def test_reverse_runs_backwards_within_each_length():
    ys, carry = recurrax.scan(CELL, _params(), XS, lengths=LENGTHS, reverse=True)
    for b, length in enumerate(np.asarray(LENGTHS)):
        flipped_ys, flipped_carry = recurrax.scan(CELL, _params(), XS[b, :length][::-1])
        _assert_trees_close(ys[b, :length], flipped_ys[::-1])
        assert np.all(np.asarray(ys[b, length:]) == 0)
        _assert_trees_close(jax.tree.map(lambda a, b=b: a[b], carry), flipped_carry)


def test_resets_equal_separate_episodes():
    resets = np.zeros((BATCH, STEPS), bool)
    resets[:, 2] = True
    ys, carry = recurrax.scan(CELL, _params(), XS, resets=resets)
    first, _ = recurrax.scan(CELL, _params(), XS[:, :2])
    second, second_carry = recurrax.scan(CELL, _params(), XS[:, 2:])
    _assert_trees_close(ys, jnp.concatenate([first, second], axis=1))
    _assert_trees_close(carry, second_carry)


def test_reverse_resets_run_each_episode_backwards_on_its_own():
    resets = np.zeros((BATCH, STEPS), bool)
    resets[:, 2] = True
    ys, carry = recurrax.scan(CELL, _params(), XS, resets=resets, reverse=True)
    first, first_carry = recurrax.scan(CELL, _params(), XS[:, :2], reverse=True)
    second, _ = recurrax.scan(CELL, _params(), XS[:, 2:], reverse=True)
    _assert_trees_close(ys, jnp.concatenate([first, second], axis=1))
    _assert_trees_close(carry, first_carry)


def test_resets_restart_from_the_given_initial_carry():
    c0 = jax.tree.map(lambda a: a + 0.5, CELL.initial_carry((BATCH,)))
    resets = np.zeros((BATCH, STEPS), bool)
    resets[:, 3] = True
    ys, _ = recurrax.scan(CELL, _params(), XS, initial_carry=c0, resets=resets)
    tail, _ = recurrax.scan(CELL, _params(), XS[:, 3:], initial_carry=c0)
    _assert_trees_close(ys[:, 3:], tail)


def test_time_major_equals_batch_major():
    ys, carry = recurrax.scan(CELL, _params(), XS, lengths=LENGTHS, reverse=True)
    ys_tm, carry_tm = recurrax.scan(
        CELL, _params(), jnp.swapaxes(XS, 0, 1), lengths=LENGTHS, reverse=True, time_major=True
    )
    _assert_trees_close(ys, jnp.swapaxes(ys_tm, 0, 1))
    _assert_trees_close(carry, carry_tm)


def test_unbatched_and_multiple_batch_dims():
    ys, _ = recurrax.scan(CELL, _params(), XS)
    single, _ = recurrax.scan(CELL, _params(), XS[0])
    _assert_trees_close(single, ys[0])
    grid = jnp.stack([XS, XS[::-1]])  # [2, B, T, D]
    lengths = jnp.stack([LENGTHS, LENGTHS[::-1]])
    ys_grid, _ = recurrax.scan(CELL, _params(), grid, lengths=lengths)
    ys_flat, _ = recurrax.scan(CELL, _params(), grid.reshape(-1, STEPS, FEATURES), lengths=lengths.reshape(-1))
    _assert_trees_close(ys_grid.reshape(ys_flat.shape), ys_flat)


@functools.partial(jax.jit, static_argnames=("unroll", "remat", "hoist_input_projection"))
def _value_and_grad(params, xs, **options):
    def loss(params, xs):
        ys, carry = recurrax.scan(CELL, params, xs, lengths=LENGTHS, **options)
        return jnp.sum(ys**2) + jnp.sum(carry.c)

    return jax.value_and_grad(loss, argnums=(0, 1))(params, xs)


@pytest.mark.parametrize(
    "options",
    [{"unroll": 3}, {"unroll": True}, {"remat": True}, {"hoist_input_projection": False}],
    ids=["unroll3", "unroll_full", "remat", "no_hoist"],
)
def test_execution_options_change_nothing_numerically(options):
    value, grads = _value_and_grad(_params(), XS)
    value_o, grads_o = _value_and_grad(_params(), XS, **options)
    np.testing.assert_allclose(value_o, value, rtol=1e-6)
    _assert_trees_close(grads_o, grads, atol=1e-5)


def test_jit_equals_eager():
    eager = recurrax.scan(CELL, _params(), XS, lengths=LENGTHS, reverse=True)
    jitted = jax.jit(lambda p, x, n: recurrax.scan(CELL, p, x, lengths=n, reverse=True))(_params(), XS, LENGTHS)
    _assert_trees_close(eager, jitted)


def test_same_shapes_trace_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(params, xs, lengths):
        return recurrax.scan(recurrax.lstm(HIDDEN), params, xs, lengths=lengths)

    run(_params(), XS, LENGTHS)
    run(_params(), XS + 1.0, LENGTHS - 1)


def test_return_carries_are_the_carry_after_each_step():
    ys, carry, carries = recurrax.scan(CELL, _params(), XS, lengths=LENGTHS, return_carries=True)
    assert carries.h.shape == (BATCH, STEPS, HIDDEN)
    _assert_trees_close(carries.h, jnp.where(jnp.arange(STEPS)[None, :, None] < LENGTHS[:, None, None], ys, carries.h))
    last = jax.tree.map(lambda a: a[jnp.arange(BATCH), LENGTHS - 1], carries)
    _assert_trees_close(last, carry)


def test_carry_perturbation_gradient_is_gradient_with_respect_to_each_carry():
    """∂L/∂h_t via a zero perturbation equals the finite difference of a real perturbation."""
    _, _, carries = recurrax.scan(CELL, _params(), XS, return_carries=True)
    zeros = jax.tree.map(jnp.zeros_like, carries)

    @jax.jit
    def loss(perturbation):
        ys, _ = recurrax.scan(CELL, _params(), XS, carry_perturbation=perturbation)
        return jnp.sum(ys[:, -1] ** 2)

    grads = jax.grad(loss)(zeros)
    value0 = loss(zeros)
    # A nudge of the h that step 2 of example 1 receives, unit 0.
    eps = 1e-3
    nudged = zeros._replace(h=zeros.h.at[1, 2, 0].set(eps))
    finite_difference = (loss(nudged) - value0) / eps
    np.testing.assert_allclose(grads.h[1, 2, 0], finite_difference, rtol=2e-2, atol=1e-4)
    # The state entering the last step reaches the loss through the last output.
    assert float(jnp.abs(grads.h[:, -1]).min()) > 0


def test_plain_step_function_and_initial_carry():
    def running_sum(carry, x):
        carry = carry + x
        return carry, 2 * carry

    ys, total = recurrax.scan(running_sum, None, XS, initial_carry=jnp.zeros((BATCH, FEATURES)), lengths=LENGTHS)
    np.testing.assert_allclose(total, jnp.stack([XS[b, :n].sum(0) for b, n in enumerate([6, 4, 1])]), rtol=1e-5)
    np.testing.assert_allclose(ys[:, 0], 2 * XS[:, 0], rtol=1e-6)


def test_plain_step_function_needs_initial_carry():
    with pytest.raises(ValueError, match="initial_carry is required"):
        recurrax.scan(lambda c, x: (c, x), None, XS)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"xs": jnp.ones((STEPS,))}, ValueError, r"xs must have shape \[\*B, T, D\].*got shape \(6,\)"),
        ({"xs": jnp.ones((BATCH, STEPS, 4))}, ValueError, "made for 3 input features, the input has 4"),
        ({"xs": jnp.ones((BATCH, STEPS, FEATURES), jnp.int32)}, TypeError, "floating dtype, got int32"),
        ({"xs": jnp.ones((BATCH, 0, FEATURES))}, ValueError, "zero time steps"),
        ({"lengths": jnp.array([6, 4])}, ValueError, r"lengths must have the batch shape \(3,\), got shape \(2,\)"),
        ({"lengths": jnp.array([6, 0, 1])}, ValueError, "lengths must be >= 1"),
        ({"lengths": jnp.array([7, 4, 1])}, ValueError, "lengths must be <= the sequence length T=6"),
        ({"lengths": jnp.array([6.0, 4.0, 1.0])}, TypeError, "lengths must be integers"),
        ({"resets": np.zeros((STEPS, BATCH), bool)}, ValueError, r"resets must have shape \(3, 6\)"),
        ({"resets": np.zeros((BATCH, STEPS))}, TypeError, "resets must be boolean"),
        ({"initial_carry": recurrax.lstm(HIDDEN).initial_carry((2,))}, ValueError, "initial_carry leaf 0 has shape"),
        ({"initial_carry": jnp.zeros((BATCH, HIDDEN))}, ValueError, "initial_carry has structure"),
        (
            {"initial_carry": recurrax.lstm(HIDDEN).initial_carry((BATCH,), dtype=jnp.bfloat16)},
            TypeError,
            "initial_carry leaf 0 has dtype bfloat16, expected float32",
        ),
        ({"method": "fast"}, ValueError, "method must be one of"),
        ({"method": "parallel"}, ValueError, "needs a linear-recurrence cell"),
        ({"unroll": 0}, ValueError, "unroll must be None, a positive int"),
        ({"hoist_input_projection": True, "cell": lambda c, x: (c, x)}, ValueError, "initial_carry is required"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, error, match):
    args = {"cell": CELL, "params": _params(), "xs": XS} | kwargs
    cell, params, xs = args.pop("cell"), args.pop("params"), args.pop("xs")
    with pytest.raises(error, match=match):
        recurrax.scan(cell, params, xs, **args)


def test_bad_cell_argument():
    with pytest.raises(TypeError, match="cell must be a recurrax Cell"):
        recurrax.scan("lstm", _params(), XS)
