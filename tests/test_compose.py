"""stacked_scan and bidirectional_scan: against hand-written loops, with lengths, resets, dropout, residual."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_reference as ref
import recurrax
from recurrax._compose import inverted_dropout, merge_directions
from recurrax.cells import recurrent_dropout, zoneout

B, T, D, H = 3, 5, 3, 4
LENGTHS = np.array([5, 3, 1])
FULL = np.full(B, T)
NO_RESETS = np.zeros((B, T), bool)
XS = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, D)), jnp.float32)


@functools.cache
def _params(cell, input_size=D, seed=1):
    """Random non-default parameters with the cell's shapes, drawn by numpy (no XLA compile for init)."""
    shapes = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.uniform(-0.5, 0.5, s.shape), s.dtype), shapes)


bidirectional = jax.jit(
    recurrax.bidirectional_scan,
    static_argnums=(0, 2),
    static_argnames=("merge", "time_major", "deterministic", "fused"),
)
scan = jax.jit(recurrax.scan, static_argnums=0)
stacked = jax.jit(
    recurrax.stacked_scan, static_argnums=0, static_argnames=("residual", "dropout", "deterministic", "time_major")
)


# ------------------------------------------------------------ bidirectional
def test_bidirectional_equals_forward_and_reverse_loops_within_lengths(x64):
    fwd, bwd = recurrax.gru(H, param_dtype=jnp.float64), recurrax.lstm(H, param_dtype=jnp.float64)
    pf = jax.tree.map(lambda a: a.astype(jnp.float64), _params(recurrax.gru(H)))
    pb = jax.tree.map(lambda a: a.astype(jnp.float64), _params(recurrax.lstm(H)))
    xs = XS.astype(jnp.float64)
    carry_f = jnp.full((B, H), 0.2)
    carry_b = recurrax.LSTMCarry(h=jnp.full((B, H), -0.1), c=jnp.full((B, H), 0.3))
    (ys_f, ys_b), (final_f, final_b) = bidirectional(
        fwd, pf, bwd, pb, xs, merge=None, lengths=LENGTHS, initial_carry=(carry_f, carry_b)
    )
    np_f, np_b = jax.tree.map(np.asarray, pf), jax.tree.map(np.asarray, pb)
    want_f, want_final_f = ref.scan_loop(lambda c, x: ref.gru_step(np_f, c, x), xs, carry_f, lengths=LENGTHS)

    # The backward direction, written out: each example from its last valid step down to 0.
    want_b = np.zeros((B, T, H))
    want_final_b = []
    for b in range(B):
        carry = (np.asarray(carry_b.h[b]), np.asarray(carry_b.c[b]))
        for t in reversed(range(LENGTHS[b])):
            carry, want_b[b, t] = ref.lstm_step(np_b, carry, np.asarray(xs[b, t]))
        want_final_b.append(carry)

    np.testing.assert_allclose(ys_f, want_f, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ys_b, want_b, rtol=1e-12, atol=1e-12)  # padding included: zeros
    np.testing.assert_allclose(final_f, want_final_f, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(final_b.h, np.stack([c[0] for c in want_final_b]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(final_b.c, np.stack([c[1] for c in want_final_b]), rtol=1e-12, atol=1e-12)


def test_merge_modes():
    a, b = jnp.asarray(np.random.default_rng(1).normal(size=(2, B, T, H)), jnp.float32)
    np.testing.assert_array_equal(merge_directions(a, b, "concat"), np.concatenate([a, b], -1))
    np.testing.assert_array_equal(merge_directions(a, b, "sum"), a + b)
    np.testing.assert_allclose(merge_directions(a, b, "mean"), (np.asarray(a) + np.asarray(b)) / 2, rtol=1e-7)
    np.testing.assert_array_equal(merge_directions(a, b, "mul"), a * b)
    pair = merge_directions(a, b, None)
    assert pair[0] is a and pair[1] is b
    with pytest.raises(ValueError, match="merge must be one of"):
        merge_directions(a, b, "max")


def test_bidirectional_concat_keeps_padding_zero_and_time_major_agrees():
    cell = recurrax.gru(H)
    p = _params(cell)
    ys, _ = bidirectional(cell, p, cell, p, XS, lengths=LENGTHS)
    assert ys.shape == (B, T, 2 * H)
    for b, length in enumerate(LENGTHS):
        assert np.all(np.asarray(ys[b, length:]) == 0)
    ys_tm, _ = bidirectional(cell, p, cell, p, jnp.swapaxes(XS, 0, 1), lengths=LENGTHS, time_major=True)
    chex.assert_trees_all_close(jnp.swapaxes(ys_tm, 0, 1), ys, atol=1e-6, rtol=1e-6)


def test_bidirectional_resets_equal_separate_episodes():
    """Packed episodes: neither direction sees across an episode boundary."""
    fwd, bwd = recurrax.gru(H), recurrax.lstm(H)
    pf, pb = _params(fwd), _params(bwd)

    def run(xs, lengths, resets):
        return bidirectional(fwd, pf, bwd, pb, xs, merge="concat", lengths=lengths, resets=resets)

    resets = NO_RESETS.copy()
    resets[:, 3] = True
    packed, _ = run(XS, FULL, resets)
    # The same episodes on their own (shorter runs as padded inputs cut by lengths: one compile).
    first, _ = run(XS, np.full(B, 3), NO_RESETS)
    second, _ = run(jnp.concatenate([XS[:, 3:], XS[:, :3]], axis=1), np.full(B, 2), NO_RESETS)
    chex.assert_trees_all_close(packed, jnp.concatenate([first[:, :3], second[:, :2]], 1), atol=1e-6, rtol=1e-6)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_bidirectional_regularised_cells():
    base = recurrax.lstm(H)
    p = _params(base)
    plain, _ = bidirectional(base, p, base, p, XS, lengths=LENGTHS, fused=False)  # the wrappers' path
    dropout_only = recurrent_dropout(base, 0.3)
    evaluation, _ = bidirectional(dropout_only, p, dropout_only, p, XS, lengths=LENGTHS, deterministic=True)
    chex.assert_trees_all_equal(evaluation, plain)
    cell = zoneout(dropout_only, 0.2)
    training, (carry_f, carry_b) = bidirectional(cell, p, cell, p, XS, lengths=LENGTHS, key=jax.random.key(2))
    assert not np.allclose(training, plain)
    assert carry_f.inner.mask.shape == (B, H) and carry_b.key.shape[0] == B
    assert not np.array_equal(carry_f.inner.mask, carry_b.inner.mask)  # each direction its own randomness
    with pytest.raises(ValueError, match=r"key is required in training \(forward_cell"):
        recurrax.bidirectional_scan(cell, p, base, p, XS)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"merge": "max"}, ValueError, "merge must be one of"),
        ({"merge": "sum", "backward": recurrax.gru(H + 1)}, ValueError, "same number of features"),
        ({"initial_carry": (None,)}, ValueError, r"initial_carry must be None or a pair"),
        ({"backward_params": True}, ValueError, "backward_params.* made for 4 input features, the input has 3"),
        ({"forward": "gru"}, TypeError, "forward_cell must be a recurrax Cell"),
        ({"resets": np.zeros((B, T))}, TypeError, "resets must be boolean"),
    ],
)
def test_bidirectional_bad_input(kwargs, error, match):
    fwd, p = recurrax.gru(H), _params(recurrax.gru(H))
    bwd = kwargs.pop("backward", fwd)
    pb = _params(fwd, H) if kwargs.pop("backward_params", None) else p  # H = D + 1 input features
    forward = kwargs.pop("forward", fwd)
    with pytest.raises(error, match=match):
        recurrax.bidirectional_scan(forward, p, bwd, pb, XS, **kwargs)


# ------------------------------------------------------------------ stacking
def _manual_stack(cells, params, xs, lengths, residual):
    x = xs
    finals = []
    for i, (cell, p) in enumerate(zip(cells, params, strict=True)):
        y, final = scan(cell, p, x, lengths=lengths)
        finals.append(final)
        x = y + x if residual and i > 0 else y
    return x, finals


def test_stacked_equals_a_layer_by_layer_loop_with_residual_and_lengths():
    cells = (recurrax.lstm(H), recurrax.gru(H), recurrax.simple_rnn(H))
    params = [_params(cells[0]), _params(cells[1], H), _params(cells[2], H)]
    ys, finals = stacked(cells, params, XS, lengths=LENGTHS, residual=True)
    want, want_finals = _manual_stack(cells, params, XS, LENGTHS, residual=True)
    chex.assert_trees_all_close(ys, want, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(finals, tuple(want_finals), atol=1e-6, rtol=1e-6)
    for b, length in enumerate(LENGTHS):
        assert np.all(np.asarray(ys[b, length:]) == 0)


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_stacked_dropout_is_off_in_evaluation_and_random_in_training():
    cells = (recurrax.lstm(H), recurrax.gru(H))
    params = [_params(cells[0]), _params(cells[1], H)]
    plain, _ = stacked(cells, params, XS, lengths=LENGTHS)
    evaluation, _ = stacked(cells, params, XS, lengths=LENGTHS, dropout=0.5, deterministic=True)
    chex.assert_trees_all_equal(evaluation, plain)
    train_a, _ = stacked(cells, params, XS, lengths=LENGTHS, dropout=0.5, key=jax.random.key(3))
    train_b, _ = stacked(cells, params, XS, lengths=LENGTHS, dropout=0.5, key=jax.random.key(3))
    train_c, _ = stacked(cells, params, XS, lengths=LENGTHS, dropout=0.5, key=jax.random.key(4))
    chex.assert_trees_all_equal(train_a, train_b)
    assert not np.allclose(train_a, train_c) and not np.allclose(train_a, plain)
    for b, length in enumerate(LENGTHS):
        assert np.all(np.asarray(train_a[b, length:]) == 0)

    grads = jax.jit(
        jax.grad(lambda p: jnp.sum(recurrax.stacked_scan(cells, p, XS, dropout=0.5, key=jax.random.key(3))[0] ** 2))
    )(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) and bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads))


def test_inverted_dropout_keep_rate_and_scale():
    x = jnp.ones((200, 100))
    dropped = np.asarray(inverted_dropout(x, 0.25, jax.random.key(5)))
    kept = dropped != 0
    np.testing.assert_array_equal(dropped[kept], np.float32(1 / 0.75))
    assert abs(kept.mean() - 0.75) < 0.015  # 20000 draws: ~5 standard deviations


def test_stacked_regularised_cells_draw_from_the_key():
    base = recurrax.gru(H)
    cells = (recurrent_dropout(base, 0.3), zoneout(base, 0.3))
    params = [_params(base), _params(base, H)]
    # deterministic=True puts every wrapper in evaluation mode: keys then change nothing.
    eval_a, _ = stacked(cells, params, XS, deterministic=True, key=jax.random.key(6))
    eval_b, _ = stacked(cells, params, XS, deterministic=True, key=jax.random.key(7))
    chex.assert_trees_all_equal(eval_a, eval_b)
    training, finals = stacked(cells, params, XS, key=jax.random.key(6))
    assert finals[0].mask.shape == (B, H) and finals[1].key.shape[0] == B
    assert not np.allclose(training, eval_a)
    with pytest.raises(ValueError, match=r"key is required in training \(cells\[0\] is a regularised cell\)"):
        recurrax.stacked_scan(cells, params, XS)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"residual": True, "second": recurrax.gru(H + 1)}, ValueError, "layer 1 maps 4 features to 5"),
        ({"dropout": 0.5}, ValueError, r"key is required in training \(dropout=0.5\)"),
        ({"dropout": 1.0}, ValueError, r"dropout must be a float in \[0, 1\)"),
        ({"second_input": True}, ValueError, r"params\[1\].* made for 3 input features, the input has 4"),
        ({"initial_carry": [None]}, ValueError, "one entry per layer"),
        ({"params": 1}, ValueError, "one entry per cell"),
        ({"xs": jnp.ones((B, T, D + 1))}, ValueError, r"params\[0\].* made for 3 input features, the input has 4"),
    ],
)
def test_stacked_bad_input(kwargs, error, match):
    second = kwargs.pop("second", recurrax.gru(H))
    cells = [recurrax.lstm(H), second]
    # params[1] takes H features (D with second_input: a mismatch); only their shapes matter here.
    second_params = _params(recurrax.gru(H), H)
    if kwargs.pop("second_input", None):
        second_params = _params(recurrax.gru(H), D)
    params = [_params(cells[0]), second_params]
    params = params[: kwargs.pop("params", 2)]
    xs = kwargs.pop("xs", XS)
    with pytest.raises(error, match=match):
        recurrax.stacked_scan(cells, params, xs, **kwargs)
