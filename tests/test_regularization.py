"""Recurrent dropout and zoneout as cell wrappers: exact limits, references, masks, jit and grad."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
import recurrax
from recurrax.cells import RecurrentDropoutCarry, ZoneoutCarry, recurrent_dropout, zoneout

B, T, D, H = 3, 5, 3, 4
LENGTHS = np.array([5, 3, 1])
XS = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, D)), jnp.float32)

BASE_CELLS = {
    "simple_rnn": lambda **kw: recurrax.simple_rnn(H, **kw),
    "lstm": lambda **kw: recurrax.lstm(H, **kw),
    "gru": lambda **kw: recurrax.gru(H, **kw),
    "gru_reset_before": lambda **kw: recurrax.gru(H, reset_after=False, **kw),
}


# One jitted engine for the whole file: each (cell, options, shapes) compiles once.
scan = jax.jit(
    recurrax.scan,
    static_argnums=0,
    static_argnames=("reverse", "time_major", "return_carries", "hoist_input_projection", "fused"),
)


@functools.cache
def _params(cell, input_size=D, seed=1):
    """Random non-default parameters with the cell's shapes, drawn by numpy (no XLA compile for init)."""
    shapes = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.uniform(-0.5, 0.5, s.shape), s.dtype), shapes)


def _exact(a, b):
    chex.assert_trees_all_equal(a, b)


# ----------------------------------------------------------------- limits
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_recurrent_dropout_without_randomness_is_the_plain_cell_exactly(name):
    base = BASE_CELLS[name]()
    params = _params(base)
    # The plain step path (the wrappers' path): the same ops, so equality is exact.
    ys, carry = scan(base, params, XS, lengths=LENGTHS, fused=False)
    key = jax.random.key(2)
    evaluation = recurrent_dropout(base, 0.4, deterministic=True)
    got_ys, got_carry = scan(
        evaluation, params, XS, lengths=LENGTHS, initial_carry=evaluation.initial_carry((B,), key=key)
    )
    _exact(got_ys, ys)
    _exact(got_carry.inner, carry)
    # Training mode, but the engine's default carry holds no key: no dropout.
    got_ys, got_carry = scan(recurrent_dropout(base, 0.4), params, XS, lengths=LENGTHS)
    _exact(got_ys, ys)
    _exact(got_carry.inner, carry)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_zoneout_rate_zero_is_the_plain_cell_and_rate_one_keeps_the_carry(name):
    base = BASE_CELLS[name]()
    params = _params(base)
    key = jax.random.key(3)
    # The plain step path (the wrappers' path): the same ops, so equality is exact.
    ys, carry = scan(base, params, XS, lengths=LENGTHS, fused=False)
    cell = zoneout(base, 0.0)
    got_ys, got_carry = scan(cell, params, XS, lengths=LENGTHS, initial_carry=cell.initial_carry((B,), key=key))
    _exact(got_ys, ys)
    _exact(got_carry.inner, carry)

    frozen = zoneout(base, 1.0)
    start = jax.tree.map(lambda a: a + 0.25, base.initial_carry((B,)))
    carry0 = frozen.wrap_carry(start, key=key)
    got_ys, got_carry = scan(frozen, params, XS, initial_carry=carry0)
    _exact(got_carry.inner, start)
    h0 = start.h if name == "lstm" else start
    _exact(got_ys, jnp.broadcast_to(h0[:, None], (B, T, H)))


# ------------------------------------------------------- recurrent dropout
def test_recurrent_dropout_mask_keep_rate_and_scale():
    rate = 0.3
    cell = recurrent_dropout(recurrax.lstm(H), rate)
    mask = np.asarray(cell.initial_carry((5000,), key=jax.random.key(4)).mask)
    assert mask.shape == (5000, H)
    kept = mask != 0
    np.testing.assert_array_equal(mask[kept], np.float32(1 / (1 - rate)))
    # 20000 Bernoulli(0.7) draws: 5 standard deviations is 0.016.
    assert abs(kept.mean() - (1 - rate)) < 0.016
    assert abs(mask.mean() - 1.0) < 0.016 / (1 - rate)
    other = np.asarray(cell.initial_carry((5000,), key=jax.random.key(5)).mask)
    assert not np.array_equal(mask, other)


def test_recurrent_dropout_mask_is_the_same_at_every_step():
    """A ReLU RNN with identity recurrence and no input: h_t = h_{t-1} ⊙ m, so h_t = m^t exactly."""
    cell = recurrent_dropout(recurrax.simple_rnn(H, activation="relu"), 0.5)
    params = {"input_kernel": jnp.zeros((D, H)), "recurrent_kernel": jnp.eye(H), "bias": jnp.zeros(H)}
    carry0 = cell.wrap_carry(jnp.ones((B, H)), key=jax.random.key(6))
    mask = carry0.mask
    assert 0 < int(jnp.sum(mask == 0)) < mask.size  # both kept and dropped units
    ys, carry = scan(cell, params, XS, initial_carry=carry0)
    for t in range(T):
        _exact(ys[:, t], mask ** (t + 1))
    _exact(carry.mask, mask)


def _gru_dropped_step(p, h, x, mask, *, reset_after):
    """Keras-style GRU recurrent dropout: masked h in every matmul, plain h in the interpolation."""
    hm = h * mask
    wx = x @ p["input_kernel"] + p["input_bias"]
    w_h, b_h = p["recurrent_kernel"], p["recurrent_bias"]
    r = ref.sigmoid(wx[..., :H] + hm @ w_h[:, :H] + b_h[:H])
    z = ref.sigmoid(wx[..., H : 2 * H] + hm @ w_h[:, H : 2 * H] + b_h[H : 2 * H])
    if reset_after:
        n = np.tanh(wx[..., 2 * H :] + r * (hm @ w_h[:, 2 * H :] + b_h[2 * H :]))
    else:
        n = np.tanh(wx[..., 2 * H :] + (r * hm) @ w_h[:, 2 * H :] + b_h[2 * H :])
    return (1 - z) * n + z * h


def _reference_step(name, p):
    """numpy step over (inner_carry, mask) for recurrent dropout."""

    def step(carry, x):
        inner, mask = carry
        if name == "lstm":
            (h, c), y = ref.lstm_step(p, (inner[0] * mask, inner[1]), x)
            return ((h, c), mask), y
        if name == "simple_rnn":
            h, y = ref.simple_rnn_step(p, inner * mask, x)
            return (h, mask), y
        h = _gru_dropped_step(p, inner, x, mask, reset_after=name == "gru")
        return (h, mask), h

    return step


@pytest.mark.parametrize("name", list(BASE_CELLS))
def test_recurrent_dropout_matches_numpy_reference_with_lengths(name, x64):
    base = BASE_CELLS[name](param_dtype=jnp.float64)
    cell = recurrent_dropout(base, 0.5)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), _params(BASE_CELLS[name]()))
    xs = XS.astype(jnp.float64)
    carry0 = cell.wrap_carry(jax.tree.map(lambda a: a + 0.3, base.initial_carry((B,))), key=jax.random.key(7))
    ys, carry = scan(cell, params, xs, lengths=LENGTHS, initial_carry=carry0)
    p = jax.tree.map(np.asarray, params)
    inner0 = tuple(carry0.inner) if name == "lstm" else carry0.inner
    ref_ys, (ref_inner, ref_mask) = ref.scan_loop(_reference_step(name, p), xs, (inner0, carry0.mask), lengths=LENGTHS)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(carry.mask, ref_mask)
    got_inner = tuple(carry.inner) if name == "lstm" else carry.inner
    chex.assert_trees_all_close(got_inner, ref_inner, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ zoneout
def test_zoneout_evaluation_is_the_expectation(x64):
    base = recurrax.lstm(H, param_dtype=jnp.float64)
    rates = recurrax.LSTMCarry(h=0.2, c=0.6)
    cell = zoneout(base, rates, deterministic=True)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), _params(recurrax.lstm(H)))
    xs = XS.astype(jnp.float64)
    ys, carry = scan(cell, params, xs, lengths=LENGTHS, initial_carry=cell.initial_carry((B,), key=jax.random.key(8)))
    p = jax.tree.map(np.asarray, params)

    def step(c, x):
        (h, cc), _ = ref.lstm_step(p, c, x)
        h = 0.2 * c[0] + 0.8 * h
        cc = 0.6 * c[1] + 0.4 * cc
        return (h, cc), h

    ref_ys, ref_carry = ref.scan_loop(step, xs, tuple(base.initial_carry((B,))), lengths=LENGTHS)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-12, atol=1e-12)
    chex.assert_trees_all_close(tuple(carry.inner), ref_carry, rtol=1e-12, atol=1e-12)


def test_zoneout_training_keeps_each_unit_or_updates_it_at_the_given_rate():
    """Every unit is either exactly its previous value or exactly the cell's update, at the zoneout rate."""
    base = recurrax.gru(H)
    rate = 0.3
    cell = zoneout(base, rate)
    params = _params(base)
    batch = 400
    xs = jnp.asarray(np.random.default_rng(9).normal(size=(batch, T, D)), jnp.float32)
    carry0 = cell.initial_carry((batch,), key=jax.random.key(10))
    ys, _, carries = scan(cell, params, xs, initial_carry=carry0, return_carries=True, hoist_input_projection=False)
    hs = np.asarray(carries.inner)
    previous = np.concatenate([np.zeros((batch, 1, H), np.float32), hs[:, :-1]], axis=1)
    step = jax.jit(base.step)
    updates = np.stack([np.asarray(step(params, previous[:, t], xs[:, t])[0]) for t in range(T)], axis=1)
    kept = np.isclose(hs, previous, rtol=0, atol=1e-6)
    updated = np.isclose(hs, updates, rtol=0, atol=1e-6)
    assert np.all(kept | updated)
    decisive = kept != updated  # where previous and update differ
    fraction = kept[decisive].mean()
    assert decisive.sum() > 7000
    assert abs(fraction - rate) < 0.03  # ~5 standard deviations
    np.testing.assert_array_equal(ys, hs)  # the output is the zoned-out h
    # Each example draws its own masks: no two examples share their keep pattern.
    pattern = kept.reshape(batch, -1)
    assert len({row.tobytes() for row in pattern}) > batch - 5


def test_randomness_freezes_with_lengths_restarts_with_resets_and_carries_across_chunks():
    cell = zoneout(recurrent_dropout(recurrax.lstm(H), 0.3), 0.3)
    params = _params(cell.base_cell)

    # One compiled function for every case (new keys, lengths, resets must not retrace);
    # shorter runs are the same input padded and cut with lengths.
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(xs, carry0, lengths, resets):
        return recurrax.scan(cell, params, xs, initial_carry=carry0, lengths=lengths, resets=resets)

    full, no_resets = np.full(B, T), np.zeros((B, T), bool)
    carry0 = cell.initial_carry((B,), key=jax.random.key(11))
    ys, carry = run(XS, carry0, full, no_resets)
    other, _ = run(XS, cell.initial_carry((B,), key=jax.random.key(12)), full, no_resets)
    assert not np.allclose(ys, other)  # new key, new masks

    # Truncated BPTT: two chunks (3 + 2 steps), the carry (its key and mask included) handed on.
    tail = jnp.concatenate([XS[:, 3:], XS[:, :3]], axis=1)  # steps 3, 4 first; the rest is padding
    first, mid = run(XS, carry0, np.full(B, 3), no_resets)
    second, end = run(tail, mid, np.full(B, 2), no_resets)
    chex.assert_trees_all_close(jnp.concatenate([first[:, :3], second[:, :2]], 1), ys, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(end, carry, atol=1e-6, rtol=1e-6)
    # lengths: each example ends with the carry after its own last step, randomness included.
    _, frozen = run(XS, carry0, LENGTHS, no_resets)
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], frozen), jax.tree.map(lambda a: a[1], mid), atol=1e-6)
    # resets: a packed episode draws what the same episode draws on its own.
    resets = no_resets.copy()
    resets[:, 3] = True
    packed, _ = run(XS, carry0, full, resets)
    episode, _ = run(tail, carry0, np.full(B, 2), no_resets)
    chex.assert_trees_all_close(packed[:, 3:], episode[:, :2], atol=1e-6, rtol=1e-6)


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_gradient_matches_a_finite_difference(x64):
    base = recurrax.lstm(H, param_dtype=jnp.float64)
    cell = zoneout(recurrent_dropout(base, 0.3), recurrax.LSTMCarry(h=0.2, c=0.4))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), _params(recurrax.lstm(H)))
    xs = XS.astype(jnp.float64)
    carry0 = cell.initial_carry((B,), key=jax.random.key(14))

    def loss(params):
        ys, carry = recurrax.scan(cell, params, xs, initial_carry=carry0, lengths=LENGTHS)
        return jnp.sum(ys**2) + jnp.sum(carry.inner.inner.c)

    value_and_grad = jax.jit(jax.value_and_grad(loss))  # one compile for all three evaluations

    # The masks are fixed by carry0, so the loss is smooth in params: compare the
    # gradient with a central difference along a random direction.
    rng = np.random.default_rng(15)
    direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), params)
    eps = 1e-6
    shifted = [jax.tree.map(lambda p, d, s=s: p + s * eps * d, params, direction) for s in (1, -1)]
    finite_difference = (value_and_grad(shifted[0])[0] - value_and_grad(shifted[1])[0]) / (2 * eps)
    grads = value_and_grad(params)[1]
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True))
    np.testing.assert_allclose(analytic, finite_difference, rtol=1e-7)
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))


# ---------------------------------------------------------- structure, errors
def test_carries_wrap_and_unwrap():
    cell = zoneout(recurrent_dropout(recurrax.lstm(H), 0.2), 0.1)
    base = recurrax.lstm(H).initial_carry((B,))
    carry = cell.wrap_carry(base, key=jax.random.key(15))
    assert isinstance(carry, ZoneoutCarry) and isinstance(carry.inner, RecurrentDropoutCarry)
    assert carry.key.dtype == jnp.uint32 and carry.key.shape[:1] == (B,)
    _exact(cell.unwrap_carry(carry), base)
    other = jax.tree.map(lambda a: a + 1, base)
    replaced = cell.replace_base_carry(carry, other)
    _exact(cell.unwrap_carry(replaced), other)
    _exact(replaced.key, carry.key)
    _exact(replaced.inner.mask, carry.inner.mask)
    evaluation = cell.with_deterministic(True)
    assert evaluation.deterministic and evaluation.cell.deterministic
    assert evaluation.with_deterministic(False) == cell
    assert cell.base_cell == recurrax.lstm(H)
    assert cell.output_size == H and cell.supports_input_projection


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: recurrent_dropout(recurrax.lstm(H), 1.0), ValueError, r"rate must be in \[0, 1\)"),
        (lambda: recurrent_dropout(recurrax.lstm(H), "0.1"), TypeError, "rate must be a finite float"),
        (lambda: zoneout(recurrax.lstm(H), 1.5), ValueError, r"rate must be in \[0, 1\]"),
        (lambda: zoneout(recurrax.lstm(H), (0.1, 0.2)), ValueError, "carry structure"),
        (lambda: recurrent_dropout(zoneout(recurrax.gru(H), 0.1), 0.1), TypeError, "put zoneout outside"),
        (lambda: recurrent_dropout("lstm", 0.1), TypeError, "wraps a recurrax Cell"),
        (lambda: zoneout(object(), 0.1), TypeError, "zoneout wraps a recurrax Cell"),
    ],
)
def test_bad_options_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_cells_without_a_recurrent_state_are_refused():
    # The wrappers ask the cell for its recurrent state (Cell.recurrent_state); a cell
    # whose gates see only x (minGRU) has none, and says so.
    for wrap in (lambda c: recurrent_dropout(c, 0.1), lambda c: zoneout(c, 0.1)):
        with pytest.raises(TypeError, match="MinGRUCell exposes no recurrent state"):
            wrap(recurrax.min_gru(H))


def test_a_cell_of_your_own_is_regularised_through_the_contract():
    # A user cell that exposes its recurrent state gets recurrent dropout and zoneout,
    # with no list of known cells anywhere.
    class Decay(recurrax.Cell):
        def init(self, key, in_features):
            return {"w": jax.random.normal(key, (in_features, self.hidden_size))}

        def initial_carry(self, batch_shape=(), dtype=None):
            return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

        def step(self, params, carry, x):
            h = 0.5 * carry + jnp.tanh(x @ params["w"])
            return h, h

        def recurrent_state(self, carry):
            return carry

    cell = zoneout(recurrent_dropout(Decay(H), 0.5), 0.5)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.ones((2, T, D))
    ys, _ = recurrax.scan(cell, params, xs, initial_carry=cell.initial_carry((2,), key=jax.random.key(1)))
    plain, _ = recurrax.scan(Decay(H), params, xs)
    assert ys.shape == plain.shape and not jnp.allclose(ys, plain)
    evaluation, _ = recurrax.scan(cell.with_deterministic(True), params, xs)
    expected, h = [], jnp.zeros((2, H))
    for t in range(T):  # the evaluation form: h = 0.5·h_prev + 0.5·candidate
        h = 0.5 * h + 0.5 * (0.5 * h + jnp.tanh(xs[:, t] @ params["w"]))
        expected.append(h)
    np.testing.assert_allclose(evaluation, jnp.stack(expected, axis=1), rtol=1e-6)
