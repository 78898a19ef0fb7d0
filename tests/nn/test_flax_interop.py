"""Flax's own RNN API both ways (a recurrax cell inside ``nnx.RNN``, Flax cells in ``recurrax.scan``) and Linen."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax
import recurrax.linen

B, T, D, H = 3, 6, 3, 5
LENGTHS = jnp.array([6, 4, 2])


def _xs():
    return jax.random.normal(jax.random.key(0), (B, T, D))


def test_a_recurrax_cell_runs_inside_flax_nnx_rnn():
    flax_cell = recurrax.nn.FlaxCell(recurrax.lstm(H, peephole=True), D, rngs=nnx.Rngs(0))
    flax_rnn = nnx.RNN(flax_cell, return_carry=True)
    carry, ys = flax_rnn(_xs())
    expected, expected_carry = recurrax.scan(flax_cell.cell, flax_cell.pure_params(), _xs())
    np.testing.assert_allclose(ys, expected, rtol=1e-6, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), carry, expected_carry)
    with pytest.raises(TypeError, match="must be a recurrax Cell"):
        recurrax.nn.FlaxCell(nnx.GRUCell(D, H, rngs=nnx.Rngs(0)), D, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("make", [nnx.GRUCell, nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.SimpleCell])
def test_flax_nnx_cells_run_in_recurrax_scan_with_lengths(make):
    cell = make(D, H, rngs=nnx.Rngs(1))
    ys, carry = recurrax.scan(cell, None, _xs(), lengths=LENGTHS)
    flax_carry, flax_ys = nnx.RNN(cell, return_carry=True)(_xs(), seq_lengths=LENGTHS)
    valid = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    np.testing.assert_allclose(np.where(valid[..., None], ys, 0), np.where(valid[..., None], flax_ys, 0), rtol=1e-5)
    # recurrax zeroes the padding outputs (Flax leaves them as computed) and returns each example's own end.
    assert not np.any(np.asarray(ys)[~valid])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), carry, flax_carry)


def test_gradients_through_a_flax_cell_in_recurrax_scan_equal_flax_rnn():
    cell = nnx.GRUCell(D, H, rngs=nnx.Rngs(2))

    def ours(cell):
        ys, _ = recurrax.scan(cell, None, _xs(), reverse=True)
        return jnp.sum(jnp.sin(ys))

    def flax(cell):
        return jnp.sum(jnp.sin(nnx.RNN(cell, reverse=True, keep_order=True)(_xs())))

    got, want = nnx.grad(ours)(cell), nnx.grad(flax)(cell)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)


def test_linen_rnn_is_the_scan_of_its_cell():
    layer = recurrax.linen.RNN(cell=recurrax.gru(H), options=recurrax.ScanOptions(reverse=True), return_carry=True)
    variables = layer.init(jax.random.key(0), _xs())
    ys, carry = layer.apply(variables, _xs(), lengths=LENGTHS)
    expected, expected_carry = recurrax.scan(
        recurrax.gru(H), variables["params"]["cell"], _xs(), lengths=LENGTHS, reverse=True
    )
    np.testing.assert_array_equal(ys, expected)
    np.testing.assert_array_equal(carry, expected_carry)


def test_linen_named_layers_match_the_nnx_layers_on_the_same_parameters():
    nnx_layer = recurrax.nn.LSTM(D, H, rngs=nnx.Rngs(0), layer_norm=True, time_major=True)
    linen_layer = recurrax.linen.LSTM(hidden_size=H, layer_norm=True, options=recurrax.ScanOptions(time_major=True))
    xs = jnp.swapaxes(_xs(), 0, 1)
    variables = {"params": {"cell": nnx_layer.pure_params()}}
    np.testing.assert_array_equal(linen_layer.apply(variables, xs), nnx_layer(xs))


def test_linen_regularised_layers_draw_from_the_dropout_rng():
    layer = recurrax.linen.GRU(hidden_size=H, recurrent_dropout=0.5, zoneout=0.1)
    variables = layer.init(jax.random.key(0), _xs(), deterministic=True)
    a = layer.apply(variables, _xs(), deterministic=False, rngs={"dropout": jax.random.key(1)})
    b = layer.apply(variables, _xs(), deterministic=False, rngs={"dropout": jax.random.key(2)})
    evaluation = layer.apply(variables, _xs(), deterministic=True)
    assert not np.allclose(a, b) and not np.allclose(a, evaluation)
    with pytest.raises(ValueError, match="deterministic"):
        layer.apply(variables, _xs())
