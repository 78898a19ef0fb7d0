"""recurrax.nn.Bidirectional and StackedRNN: parity with the pure compositions, modes, carry_probe."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax
from recurrax import nn

B, T, D, H = 3, 5, 3, 4
LENGTHS = jnp.array([5, 3, 1])
XS = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, D)), jnp.float32)

call = nnx.jit(lambda module, xs, lengths: module(xs, lengths=lengths))


def _bidirectional(rngs, merge="concat", **options):
    return nn.Bidirectional(nn.GRU(D, H, rngs=rngs), nn.LSTM(D, H, rngs=rngs, reverse=True), merge=merge, **options)


# ---------------------------------------------------------------- bidirectional
def test_bidirectional_equals_bidirectional_scan_with_resets():
    layer = _bidirectional(nnx.Rngs(0), return_carry=True)
    resets = np.zeros((B, T), bool)
    resets[:, 2] = True
    run = nnx.jit(lambda m, xs, lengths, resets: m(xs, lengths=lengths, resets=resets))
    ys, (carry_f, carry_b) = run(layer, XS, LENGTHS, resets)
    want, (want_f, want_b) = jax.jit(recurrax.bidirectional_scan, static_argnums=(0, 2))(
        layer.forward.cell,
        layer.forward.pure_params(),
        layer.backward.cell,
        layer.backward.pure_params(),
        XS,
        lengths=LENGTHS,
        resets=resets,
    )
    chex.assert_trees_all_close((ys, carry_f, carry_b), (want, want_f, want_b), atol=1e-6, rtol=1e-6)
    assert ys.shape == (B, T, 2 * H) and layer.out_features == 2 * H
    for b, length in enumerate(np.asarray(LENGTHS)):
        assert np.all(np.asarray(ys[b, length:]) == 0)


def test_bidirectional_merge_none_returns_both_directions():
    layer = _bidirectional(nnx.Rngs(0), merge=None)
    ys_f, ys_b = layer(XS)
    assert ys_f.shape == ys_b.shape == (B, T, H) and layer.out_features is None


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda r: nn.Bidirectional(nn.GRU(D, H, rngs=r), nn.GRU(D, H, rngs=r)), "backward must be built with reverse"),
        (
            lambda r: nn.Bidirectional(nn.GRU(D, H, rngs=r, reverse=True), nn.GRU(D, H, rngs=r, reverse=True)),
            "forward must be built with reverse=False",
        ),
        (
            lambda r: nn.Bidirectional(nn.GRU(D, H, rngs=r), nn.GRU(D, H + 1, rngs=r, reverse=True), merge="sum"),
            "same number of features",
        ),
        (
            lambda r: nn.Bidirectional(nn.GRU(D, H, rngs=r), nn.GRU(D + 1, H, rngs=r, reverse=True)),
            "same input features",
        ),
        (lambda r: nn.Bidirectional(recurrax.gru(H), nn.GRU(D, H, rngs=r, reverse=True)), "recurrax.nn.RNN layer"),
        (lambda r: _bidirectional(r, merge="max"), "merge must be one of"),
        (lambda r: _bidirectional(r)(XS, initial_carry=(None,)), "pair"),
    ],
)
def test_bidirectional_bad_input(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nnx.eval_shape(lambda: make(nnx.Rngs(0)))


# ------------------------------------------------------------------ stacking
def _stack(rngs, **options):
    return nn.StackedRNN(
        [_bidirectional(rngs), nn.LSTM(2 * H, 2 * H, rngs=rngs), nn.GRU(2 * H, 2 * H, rngs=rngs)],
        rngs=rngs,
        **options,
    )


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_stacked_equals_stacked_scan_in_evaluation_and_is_random_in_training():
    rngs = nnx.Rngs(params=1, dropout=2)
    stack = nn.StackedRNN(
        [nn.LSTM(D, H, rngs=rngs), nn.GRU(H, H, rngs=rngs)], dropout=0.3, residual=True, rngs=rngs, return_carry=True
    )
    stack.eval()
    ys, finals = call(stack, XS, LENGTHS)
    cells = [layer.cell for layer in stack.layers]
    params = [layer.pure_params() for layer in stack.layers]
    want = recurrax.stacked_scan(cells, params, XS, lengths=LENGTHS, dropout=0.3, residual=True, deterministic=True)
    chex.assert_trees_all_close((ys, finals), want, atol=1e-6, rtol=1e-6)

    stack.train()
    train_1, _ = call(stack, XS, LENGTHS)
    train_2, _ = call(stack, XS, LENGTHS)
    assert not np.allclose(train_1, ys) and not np.allclose(train_1, train_2)
    for b, length in enumerate(np.asarray(LENGTHS)):
        assert np.all(np.asarray(train_1[b, length:]) == 0)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda r: nn.StackedRNN([nn.LSTM(D, H, rngs=r), nn.LSTM(D, H, rngs=r)]), "layers\\[1\\] takes 3 features"),
        (
            lambda r: nn.StackedRNN([nn.LSTM(D, H, rngs=r), nn.LSTM(H, H + 1, rngs=r)], residual=True),
            "layer 1 maps 4 features to 5",
        ),
        (lambda r: nn.StackedRNN([nn.LSTM(D, H, rngs=r)], dropout=0.5), "rngs is required when dropout > 0"),
        (lambda r: nn.StackedRNN([_bidirectional(r, merge=None)]), "merge=None"),
        (lambda r: nn.StackedRNN([]), "at least one layer"),
        (
            lambda r: nn.StackedRNN([nn.LSTM(D, H, rngs=r), nn.LSTM(H, H, rngs=r, time_major=True)]),
            "same time_major",
        ),
    ],
)
def test_stacked_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        nnx.eval_shape(lambda: make(nnx.Rngs(0)))


# --------------------------------------------------------------- carry_probe
def _zero_perturbations(forward):
    """Zeros shaped like the carries that ``forward()`` records, found without running it."""

    def record():
        with nn.carry_probe() as carries:
            forward()
        return carries

    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(record))


def test_carry_probe_records_every_layer_call():
    stack = _stack(nnx.Rngs(3))
    carries = _zero_perturbations(lambda: stack(XS))
    assert len(carries) == 4  # forward, backward, LSTM, GRU
    assert carries[0].shape == (B, T, H)
    assert isinstance(carries[1], recurrax.LSTMCarry) and carries[1].c.shape == (B, T, H)
    assert carries[2].h.shape == (B, T, 2 * H) and carries[3].shape == (B, T, 2 * H)
    layer = nn.GRU(D, H, rngs=nnx.Rngs(3), time_major=True, zoneout=0.2)
    with nn.carry_probe() as carries:
        nnx.eval_shape(lambda m: m(jnp.swapaxes(XS, 0, 1)), layer)
    assert len(carries) == 1 and carries[0].shape == (T, B, H)  # the cell's carry, not the zoneout key


def test_carry_probe_gradient_is_dl_dh_entering_each_step():
    """Checked against an independent computation: run to step t, then differentiate the rest in the carry."""
    layer = nn.LSTM(D, H, rngs=nnx.Rngs(4))
    cell, params = layer.cell, layer.pure_params()

    def loss_of_outputs(ys):
        return jnp.sum(jnp.sin(ys))

    zeros = _zero_perturbations(lambda: layer(XS))

    def loss(perturbations):
        with nn.carry_probe(perturbations):
            return loss_of_outputs(layer(XS))

    grads = jax.jit(jax.grad(loss))(zeros)[0]
    t = 2
    head, carry_t = recurrax.scan(cell, params, XS[:, :t])

    def rest(carry):
        tail, _ = recurrax.scan(cell, params, XS[:, t:], initial_carry=carry)
        return loss_of_outputs(jnp.concatenate([head, tail], axis=1))

    want = jax.grad(rest)(carry_t)
    chex.assert_trees_all_close(jax.tree.map(lambda g: g[:, t], grads), want, atol=1e-6, rtol=1e-5)


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_carry_probe_gradient_matches_a_finite_difference_through_a_stack(x64):
    rngs = nnx.Rngs(5)
    f64 = {"param_dtype": jnp.float64}
    stack = nn.StackedRNN(
        [
            nn.Bidirectional(nn.GRU(D, H, rngs=rngs, **f64), nn.GRU(D, H, rngs=rngs, reverse=True, **f64)),
            nn.SimpleRNN(2 * H, H, rngs=rngs, **f64),
        ]
    )
    xs = XS.astype(jnp.float64)
    zeros = _zero_perturbations(lambda: stack(xs, lengths=LENGTHS))

    def loss(perturbations):
        with nn.carry_probe(perturbations):
            return jnp.sum(jnp.sin(stack(xs, lengths=LENGTHS)))

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    grads = value_and_grad(zeros)[1]
    rng = np.random.default_rng(6)
    direction = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), zeros)
    eps = 1e-6
    plus, minus = (jax.tree.map(lambda d, s=s: s * eps * d, direction) for s in (1, -1))
    finite_difference = (value_and_grad(plus)[0] - value_and_grad(minus)[0]) / (2 * eps)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True))
    np.testing.assert_allclose(analytic, finite_difference, rtol=1e-6)
    # Past each example's end nothing depends on the carry: zero gradient there.
    for grad in jax.tree.leaves(grads):
        assert np.all(np.asarray(grad[2, 1:]) == 0)


@pytest.mark.parametrize(
    "perturbations, match",
    [
        ([], "got 0 perturbations, but recurrent layer call #0"),
        ([jnp.zeros((B, T, H)), jnp.zeros((B, T, H))], "got 2 perturbations, but 1 recurrent layer calls ran"),
        ([jnp.zeros((B, T, H + 1))], r"perturbations\[0\] \(GRU\) leaf 0 has shape \(3, 5, 5\)"),
        ("zeros", "must be None or a list"),
    ],
)
def test_carry_probe_bad_perturbations(perturbations, match):
    layer = nnx.eval_shape(lambda: nn.GRU(D, H, rngs=nnx.Rngs(0)))
    with pytest.raises((ValueError, TypeError), match=match), nn.carry_probe(perturbations):
        nnx.eval_shape(lambda m: m(XS), layer)
