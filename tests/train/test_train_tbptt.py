"""Truncated BPTT: the forward pass equals full BPTT's, the gradient equals stop_gradient at chunk boundaries."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from recurrax import nn, train
from train.train_helpers import B, Regressor, Streaming, T, regression_data, streaming_data


def masked_mse(preds, targets, lengths):
    per_step = jnp.mean((preds - targets) ** 2, axis=-1)
    if lengths is None:
        return jnp.mean(per_step)
    mask = (jnp.arange(T)[None, :] < lengths[:, None]).astype(per_step.dtype)
    return jnp.sum(per_step * mask) / jnp.sum(mask)


@nnx.jit(static_argnums=(2,))
def reference(model, batch, chunk_size):
    """A plain loop over chunks with stop_gradient on the carry between them."""

    def loss(model):
        lengths = batch.get("lengths")
        carry, preds = None, []
        for start in range(0, T, chunk_size):
            stop = min(start + chunk_size, T)
            kwargs = {} if lengths is None else {"lengths": jnp.clip(lengths - start, 0, stop - start)}
            ys, carry = model(batch["inputs"][:, start:stop], initial_carry=carry, **kwargs)
            carry = jax.lax.stop_gradient(carry)
            preds.append(ys)
        preds = jnp.concatenate(preds, axis=1)
        return masked_mse(preds, batch["targets"], lengths), preds

    (value, preds), grads = nnx.value_and_grad(loss, has_aux=True)(model)
    return value, preds, grads


@pytest.mark.slow
@pytest.mark.parametrize(
    ("layer", "chunk_size", "lengths"),
    [(nn.LSTM, 2, False), (nn.SimpleRNN, 4, True)],  # scanned chunks, tuple carry; a short last chunk, lengths
)
def test_forward_equals_full_bptt_and_gradient_equals_stopped_carry(layer, chunk_size, lengths):
    model = Streaming(nnx.Rngs(0), layer=layer)
    batch = {k: jnp.asarray(v) for k, v in streaming_data(B, lengths=lengths).items()}
    (value, metrics, preds), grads = train.tbptt_value_and_grad(model, batch, chunk_size=chunk_size)
    full_value, full_preds, full_grads = reference(model, batch, T)  # one chunk: full BPTT
    np.testing.assert_allclose(preds, full_preds, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(value, full_value, rtol=1e-6)
    assert metrics == {}

    _, ref_preds, ref_grads = reference(model, batch, chunk_size)
    np.testing.assert_allclose(ref_preds, preds, rtol=1e-6, atol=1e-6)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(nnx.state(ref_grads)), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
    gap = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(nnx.state(full_grads)), strict=True)
    )
    assert gap > 1e-4  # truncation really cuts gradient paths


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_fit_with_a_step_per_chunk_matches_a_manual_streaming_loop():
    data = streaming_data(lengths=True)
    chunk, lr = 4, 0.1  # chunks of 4 and 2 steps
    trainer = train.Trainer(Streaming(nnx.Rngs(0), layer=nn.SimpleRNN), optax.sgd(lr), tbptt=chunk)
    history = trainer.fit(data, epochs=1, batch_size=B, shuffle=False, progress=False)
    assert trainer.step == 6 and [r["step"] for r in history.steps] == [1, 2, 3, 4, 5, 6]
    assert len(history.epochs) == 1 and np.isfinite(history.epochs[0]["loss"])

    model = Streaming(nnx.Rngs(0), layer=nn.SimpleRNN)
    graphdef, params = nnx.split(model)

    @jax.jit
    def chunk_step(params, carry, xs, ys, lens):
        def loss(p):
            ys_hat, new_carry = nnx.merge(graphdef, p)(xs, initial_carry=carry, lengths=lens)
            per_step = jnp.mean((ys_hat - ys) ** 2, axis=-1)
            mask = (jnp.arange(xs.shape[1])[None, :] < lens[:, None]).astype(per_step.dtype)
            return jnp.sum(per_step * mask) / jnp.maximum(jnp.sum(mask), 1.0), (new_carry, jnp.sum(mask))

        (value, (new_carry, count)), g = jax.value_and_grad(loss, has_aux=True)(params)
        # A chunk past every example's end has no mean: the history logs NaN (its gradient is zero).
        value = jnp.where(count > 0, value, jnp.nan)
        return jax.tree.map(lambda p, g: p - lr * g, params, g), jax.lax.stop_gradient(new_carry), value

    losses = []
    for b in range(0, len(data["inputs"]), B):
        carry = model.rnn.cell.initial_carry((B,))
        for start in (0, chunk):
            stop = min(start + chunk, T)
            lens = jnp.clip(jnp.asarray(data["lengths"][b : b + B]) - start, 0, stop - start)
            params, carry, value = chunk_step(
                params, carry, data["inputs"][b : b + B, start:stop], data["targets"][b : b + B, start:stop], lens
            )
            losses.append(float(value))
    np.testing.assert_allclose([r["loss"] for r in history.steps], losses, rtol=1e-5)
    for got, want in zip(
        jax.tree.leaves(trainer.params), jax.tree.leaves(nnx.state(nnx.merge(graphdef, params), nnx.Param)), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_one_step_per_sequence_applies_the_summed_chunk_gradient():
    batch = {k: jnp.asarray(v[:B]) for k, v in streaming_data().items()}
    model = Streaming(nnx.Rngs(0))
    (_, _, _), grads = train.tbptt_value_and_grad(model, batch, chunk_size=2)
    trainer = train.Trainer(Streaming(nnx.Rngs(0)), optax.sgd(0.5), tbptt=2, tbptt_update="sequence")
    before = trainer.params
    metrics = trainer.train_step(batch)
    assert trainer.step == 1 and np.ndim(metrics["loss"]) == 0
    for new, old, g in zip(*(jax.tree.leaves(t) for t in (trainer.params, before, grads)), strict=True):
        np.testing.assert_allclose(new, old - 0.5 * g, rtol=1e-5, atol=1e-6)


def test_bad_tbptt_inputs():
    per_sequence = regression_data()  # targets [N, 1]: no time axis
    with pytest.raises(ValueError, match=r"per-step targets \[B, T, ...\]"):
        train.Trainer(Streaming(nnx.Rngs(0)), optax.sgd(0.1), tbptt=2).fit(per_sequence, progress=False)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        train.tbptt_value_and_grad(Streaming(nnx.Rngs(0)), streaming_data(), chunk_size=0)
    with pytest.raises(TypeError, match="needs a streaming model"):
        batch = streaming_data(B)
        batch["targets"] = batch["targets"][..., :1]
        train.tbptt_value_and_grad(_NotStreaming(nnx.Rngs(0)), batch, chunk_size=3)


class _NotStreaming(Regressor):
    def __call__(self, xs, initial_carry=None, lengths=None):
        return self.head(self.rnn(xs))
