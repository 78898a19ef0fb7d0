"""The LSTM's cuDNN path: recurrax's parameters in cuDNN's layout, and cuDNN's semantics equal to the step loop.

Without a GPU, ``jax.experimental.rnn.lstm_ref`` — JAX's pure reference of its
cuDNN LSTM, same flat weight layout, same ``seq_lengths`` semantics — stands in
for the cuDNN call, so everything but the kernel call itself is proven here:
the weight packing, lengths, an initial carry, gradients to parameters,
inputs and carry, the fallbacks (``resets``, ``reverse``: declined by name).
Where cuDNN exists, the same comparison runs on it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn

import recurrax
from recurrax.cells import _cudnn

BATCH, T, D, H = 3, 5, 2, 4
LENGTHS = jnp.array([5, 2, 4])


def _reference_lstm(x, h_0, c_0, weights, seq_lengths, *, input_size, hidden_size, num_layers, dropout, bidirectional):
    """``jax.experimental.rnn.lstm``'s signature, computed by its reference from the unpacked weights."""
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size, num_layers, bidirectional)
    return rnn.lstm_ref(
        x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size, hidden_size, num_layers, dropout, bidirectional
    )


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)])


def _parity():
    cell = recurrax.lstm(H)
    k_p, k_x, k_c, k_w = jax.random.split(jax.random.key(5), 4)
    params = jax.tree.map(lambda a: 0.7 * a, _random_like(k_p, cell.init(k_p, D)))
    xs = jax.random.normal(k_x, (BATCH, T, D))
    carry = jax.tree.map(lambda a: 0.5 * a, _random_like(k_c, cell.initial_carry((BATCH,))))
    weights = jax.random.normal(k_w, (BATCH, T, H))

    def loss(params, xs, carry, kernel):
        options = recurrax.ScanOptions(fused=kernel == "cudnn", kernel="cudnn")
        ys, final = recurrax.scan(cell, params, xs, initial_carry=carry, lengths=LENGTHS, options=options)
        return jnp.sum(ys * weights) + jnp.sum(jnp.sin(final.h)) + jnp.sum(final.c**2), (ys, final)

    grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
    results = jax.jit(lambda *a: (grad(*a, "loop"), grad(*a, "cudnn")))(params, xs, carry)
    (value, (ys, final)), grads = results[0]
    (c_value, (c_ys, c_final)), c_grads = results[1]
    np.testing.assert_allclose(c_value, value, rtol=1e-5)
    assert not np.any(np.asarray(c_ys)[1, 2:]), "outputs past an example's length are zero"
    for got, want in zip(jax.tree.leaves((c_ys, c_final, c_grads)), jax.tree.leaves((ys, final, grads)), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.slow  # 3 s: the step loop and the reference, each with its gradients
def test_through_the_reference_the_cudnn_path_equals_the_step_loop(monkeypatch):
    monkeypatch.setattr(_cudnn, "rnn_lstm", _reference_lstm)
    monkeypatch.setattr(_cudnn, "unavailable", lambda: None)
    _parity()


@pytest.mark.skipif(_cudnn.unavailable() is not None, reason="needs a CUDA GPU")
def test_on_cudnn_the_path_equals_the_step_loop():
    _parity()


def test_the_packed_weights_are_cudnns_layout():
    params = recurrax.lstm(H).init(jax.random.key(1), D)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(_cudnn.pack_lstm_weights(params), D, H, 1, False)
    # cuDNN's W_ih is [4H, D], gates (i, f, g, o) as PyTorch's weight_ih_l0: recurrax's kernel transposed.
    np.testing.assert_array_equal(w_ih[0], params["input_kernel"].T)
    np.testing.assert_array_equal(w_hh[0], params["recurrent_kernel"].T)
    np.testing.assert_array_equal(b_ih[0], params["bias"])
    np.testing.assert_array_equal(b_hh[0], np.zeros(4 * H, np.float32))
    assert _cudnn.pack_lstm_weights(params).shape == (rnn.get_num_params_in_lstm(D, H, 1, False),)


def test_what_cudnn_cannot_run_falls_back_or_raises_by_name(monkeypatch):
    cell = recurrax.lstm(H)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.zeros((BATCH, T, D))
    if _cudnn.unavailable() is not None:
        with pytest.raises(ValueError, match=r"kernel='cudnn'.*cuDNN needs a CUDA GPU"):
            recurrax.scan(cell, params, xs, kernel="cudnn", fused=True)
    monkeypatch.setattr(_cudnn, "unavailable", lambda: None)
    resets = jnp.zeros((BATCH, T), bool).at[0, 2].set(True)
    with pytest.raises(ValueError, match="LSTMCell: fused=True, but kernel='cudnn' cannot run this call: resets"):
        recurrax.scan(cell, params, xs, resets=resets, kernel="cudnn", fused=True)
    with pytest.raises(ValueError, match=r"kernel='cudnn'.*reverse=True \(cuDNN's results"):
        recurrax.scan(cell, params, xs, reverse=True, kernel="cudnn", fused=True)
    backwards, _ = recurrax.scan(cell, params, xs + 1.0, reverse=True, kernel="cudnn")  # falls back to the loop
    np.testing.assert_array_equal(backwards, recurrax.scan(cell, params, xs + 1.0, reverse=True, kernel="xla")[0])
    peephole = recurrax.lstm(H, peephole=True)
    reason = peephole.sequence_unsupported(
        peephole.init(jax.random.key(0), D),
        peephole.initial_carry((BATCH,)),
        jnp.swapaxes(xs, 0, 1),  # the cell sees time-major inputs
        recurrax.ScanOptions(kernel="cudnn"),
    )
    assert reason is not None and "peepholes" in reason
