"""recurrax.nn recurrent layers: parameter trees, parity with the pure scan, train/eval, NNX transforms."""

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

# One jitted entry point for every layer: layers with the same structure share compiles.
call = nnx.jit(lambda layer, xs, lengths: layer(xs, lengths=lengths))
pure_scan = jax.jit(recurrax.scan, static_argnums=0, static_argnames=("reverse", "time_major"))


def _shapes(module):
    return jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(module, nnx.Param)))


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "make, expected",
    [
        (
            lambda r: nn.SimpleRNN(D, H, rngs=r),
            {"params": {"input_kernel": (D, H), "recurrent_kernel": (H, H), "bias": (H,)}},
        ),
        (
            lambda r: nn.LSTM(D, H, rngs=r),
            {"params": {"input_kernel": (D, 4 * H), "recurrent_kernel": (H, 4 * H), "bias": (4 * H,)}},
        ),
        (
            lambda r: nn.LSTM(D, H, rngs=r, peephole=True, layer_norm=True, proj_size=2, learnable_initial_carry=True),
            {
                "params": {
                    "input_kernel": (D, 4 * H),
                    "recurrent_kernel": (2, 4 * H),
                    "bias": (4 * H,),
                    "peephole": (3, H),
                    "input_norm_scale": (4 * H,),
                    "recurrent_norm_scale": (4 * H,),
                    "cell_norm_scale": (H,),
                    "cell_norm_bias": (H,),
                    "projection_kernel": (H, 2),
                },
                "initial_carry": {"h": (2,), "c": (H,)},
            },
        ),
        (
            lambda r: nn.GRU(D, H, rngs=r, recurrent_dropout=0.2, zoneout=0.1),
            {
                "params": {
                    "input_kernel": (D, 3 * H),
                    "recurrent_kernel": (H, 3 * H),
                    "input_bias": (3 * H,),
                    "recurrent_bias": (3 * H,),
                }
            },
        ),
    ],
    ids=["simple_rnn", "lstm", "lstm_all_options", "gru_regularised"],
)
def test_exact_parameter_shapes(make, expected):
    module = nnx.eval_shape(lambda: make(nnx.Rngs(0)))  # shapes only: nothing is initialised
    assert _shapes(module) == expected


# ------------------------------------------------------------ parity, modes
@pytest.mark.parametrize(
    "make, options",
    [
        (lambda r, **kw: nn.SimpleRNN(D, H, rngs=r, activation="relu", **kw), {"reverse": True}),
        (lambda r, **kw: nn.LSTM(D, H, rngs=r, peephole=True, **kw), {}),
        (lambda r, **kw: nn.GRU(D, H, rngs=r, **kw), {"time_major": True}),
    ],
    ids=["simple_rnn_reverse", "lstm_peephole", "gru_time_major"],
)
def test_layer_equals_the_pure_scan_with_its_params(make, options):
    layer = make(nnx.Rngs(1), return_carry=True, **options)
    xs = jnp.swapaxes(XS, 0, 1) if options.get("time_major") else XS
    ys, carry = call(layer, xs, LENGTHS)
    want_ys, want_carry = pure_scan(layer.cell, layer.pure_params(), xs, lengths=LENGTHS, **options)
    chex.assert_trees_all_close((ys, carry), (want_ys, want_carry), atol=1e-6, rtol=1e-6)
    assert isinstance(layer, nn.RNN) and layer.out_features == H


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_regularised_layer_train_and_eval_match_the_pure_cell():
    make = lambda: nn.LSTM(D, H, rngs=nnx.Rngs(params=0, dropout=1), recurrent_dropout=0.3, zoneout=0.2)  # noqa: E731
    layer = make()
    params, cell = layer.pure_params(), layer.cell
    # The key a fresh layer draws on its first training call, from an identical rng stream.
    rngs = nnx.Rngs(params=0, dropout=1)
    rngs.params()
    key = rngs["dropout"].fork()()
    base0 = cell.base_cell.initial_carry((B,))
    want_train, _ = pure_scan(cell, params, XS, initial_carry=cell.wrap_carry(base0, key=key), lengths=LENGTHS)
    train_1 = call(layer, XS, LENGTHS)
    chex.assert_trees_all_close(train_1, want_train, atol=1e-6, rtol=1e-6)
    train_2 = call(layer, XS, LENGTHS)
    assert not np.allclose(train_1, train_2)  # the stream moved on: new masks

    layer.eval()
    assert layer.deterministic
    evaluation = cell.with_deterministic(True)
    want_eval, _ = pure_scan(evaluation, params, XS, initial_carry=evaluation.wrap_carry(base0), lengths=LENGTHS)
    chex.assert_trees_all_close(call(layer, XS, LENGTHS), want_eval, atol=1e-6, rtol=1e-6)
    chex.assert_trees_all_close(call(layer, XS, LENGTHS), want_eval, atol=1e-6, rtol=1e-6)  # and stays so
    layer.train()
    view = nnx.view(layer, deterministic=True)
    chex.assert_trees_all_close(call(view, XS, LENGTHS), want_eval, atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------ transforms
def test_nnx_jit_does_not_retrace_across_training_steps_and_grad_flows():
    layer = nn.GRU(D, H, rngs=nnx.Rngs(2), recurrent_dropout=0.25)

    @nnx.jit
    @chex.assert_max_traces(n=1)
    def train_step(layer, xs, lengths):
        def loss(layer):
            return jnp.mean(layer(xs, lengths=lengths) ** 2)

        value, grads = nnx.value_and_grad(loss)(layer)
        params = nnx.state(layer, nnx.Param)
        nnx.update(layer, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads))
        return value, grads

    losses = []
    for i in range(3):
        value, grads = train_step(layer, XS * (i + 1), LENGTHS)
        losses.append(float(value))
        leaves = jax.tree.leaves(grads)
        assert leaves and all(bool(jnp.all(jnp.isfinite(g))) and bool(jnp.any(g != 0)) for g in leaves)
    assert len(set(losses)) == 3


def test_nnx_vmap_over_data_and_over_an_ensemble():
    layer = nn.LSTM(D, H, rngs=nnx.Rngs(3))
    stacked_xs = jnp.stack([XS, -XS])  # [2, B, T, D]
    ys = nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(layer, stacked_xs)
    chex.assert_trees_all_close(ys[1], call(layer, -XS, jnp.full((B,), T)), atol=1e-6, rtol=1e-6)

    @nnx.split_rngs(splits=2)
    @nnx.vmap(in_axes=0, out_axes=0)
    def make_ensemble(rngs):
        return nn.LSTM(D, H, rngs=rngs)

    ensemble = make_ensemble(nnx.Rngs(4))
    assert ensemble.params["input_kernel"].shape == (2, D, 4 * H)
    outs = nnx.vmap(lambda m, x: m(x), in_axes=(0, None))(ensemble, XS)
    assert outs.shape == (2, B, T, H) and not np.allclose(outs[0], outs[1])
    member = nnx.merge(*nnx.split(layer))  # same structure as one member
    nnx.update(member, jax.tree.map(lambda p: p[0], nnx.state(ensemble, nnx.Param)))
    chex.assert_trees_all_close(outs[0], call(member, XS, jnp.full((B,), T)), atol=1e-6, rtol=1e-6)


def test_split_merge_with_plain_jax_jit():
    layer = nn.LSTM(D, H, rngs=nnx.Rngs(5), learnable_initial_carry=True)
    graphdef, state = nnx.split(layer)

    @jax.jit
    def forward(state, xs, lengths):
        return nnx.merge(graphdef, state)(xs, lengths=lengths)

    chex.assert_trees_all_close(forward(state, XS, LENGTHS), call(layer, XS, LENGTHS), atol=1e-6, rtol=1e-6)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_learnable_initial_carry_is_used_and_receives_gradient():
    layer = nn.LSTM(D, H, rngs=nnx.Rngs(6), learnable_initial_carry=True)
    nnx.update(layer, {"initial_carry": {"h": jnp.full((H,), 0.5), "c": jnp.linspace(-1, 1, H)}})
    carry0 = recurrax.LSTMCarry(h=jnp.full((B, H), 0.5), c=jnp.broadcast_to(jnp.linspace(-1, 1, H), (B, H)))
    want, _ = pure_scan(layer.cell, layer.pure_params(), XS, initial_carry=carry0, lengths=LENGTHS)
    chex.assert_trees_all_close(call(layer, XS, LENGTHS), want, atol=1e-6, rtol=1e-6)
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(XS, lengths=LENGTHS) ** 2)))(layer)
    for leaf in jax.tree.leaves(grads["initial_carry"]):
        assert leaf.shape == (H,) and bool(jnp.any(leaf != 0))
    # A given initial carry takes precedence over the learned one.
    given = recurrax.LSTMCarry(h=jnp.zeros((B, H)), c=jnp.zeros((B, H)))
    plain, _ = pure_scan(layer.cell, layer.pure_params(), XS, initial_carry=given, lengths=LENGTHS)
    with_carry = nnx.jit(lambda m, xs, carry: m(xs, initial_carry=carry, lengths=LENGTHS))
    chex.assert_trees_all_close(with_carry(layer, XS, given), plain, atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "run, error, match",
    [
        (lambda m: m(jnp.ones((B, T, D + 1))), ValueError, r"LSTM input xs has 4 features .* expect 3"),
        (lambda m: m(jnp.ones((B, T, D), jnp.int32)), TypeError, "floating dtype"),
        (lambda m: m(jnp.ones((D,))), ValueError, "at least 2 dims"),
        (lambda m: m(XS, initial_carry=jnp.zeros((B, H))), ValueError, "initial_carry has structure"),
        (
            lambda m: m(XS, initial_carry=recurrax.LSTMCarry(jnp.zeros((2, H)), jnp.zeros((2, H)))),
            ValueError,
            r"initial_carry leaf 0 has shape \(2, 4\), expected \(3, 4\)",
        ),
        (lambda m: m(XS, lengths=jnp.array([6, 1, 1])), ValueError, "lengths must be <= the sequence length"),
        (lambda m: nn.RNN("lstm", D, rngs=nnx.Rngs(0)), TypeError, "cell must be a recurrax Cell"),
        (lambda m: nn.RNN(recurrax.lstm(H), 0, rngs=nnx.Rngs(0)), ValueError, "in_features must be a positive int"),
        (lambda m: nn.RNN(recurrax.lstm(H), D, rngs=0), TypeError, "rngs must be an nnx.Rngs"),
        (lambda m: nn.LSTM(D, H, rngs=nnx.Rngs(0), method="fast"), ValueError, "method must be one of"),
        (lambda m: nn.LSTM(D, H, rngs=nnx.Rngs(0), zoneout=2.0), ValueError, r"rate must be in \[0, 1\]"),
    ],
)
def test_bad_input_is_a_clear_error(run, error, match):
    layer = nn.LSTM(D, H, rngs=nnx.Rngs(0))
    with pytest.raises(error, match=match):
        run(layer)
