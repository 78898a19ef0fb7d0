"""The documented calls as a user writes them, for mypy (``make typecheck``), not pytest.

Each function below mirrors an example of README.md or docs/*.md with its
types spelled out where a reader would rely on them, so that a public
signature that stops accepting a documented call (as ``plot_gradient_flow``
refused ``steps=recorder.steps``, an ndarray) fails CI. Nothing here runs:
the examples themselves run in tests/test_readme.py and tests/test_docs.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import recurrax
import recurrax.interop
from recurrax import models, nn, tasks, train
from recurrax.cells import LSTMCarry


def cells_and_scan() -> tuple[jax.Array, int]:
    """README "A cell is pure functions": a factory, init, scan (two and three results)."""
    cell = recurrax.lstm(128, chrono_max_timescale=200)
    params = cell.init(jax.random.key(0), in_features=16)
    xs = jnp.ones((32, 200, 16))
    lengths = jnp.full((32,), 200).at[0].set(50)
    ys, carry = recurrax.scan(cell, params, xs, lengths=lengths)
    ys_b, _ = recurrax.scan(cell, params, xs, lengths=lengths, reverse=True)
    ys_c, final, carries = recurrax.scan(cell, params, xs, return_carries=True)
    lstm_carry: LSTMCarry = cell.initial_carry((32,))
    return ys + ys_b + ys_c + carries.h[:, -1:], int(carry.h.shape[0] + final.h.shape[0] + lstm_carry.h.shape[0])


def step_function_scan() -> jax.Array:
    """README: any ``step(carry, x) -> (carry, y)`` function runs in ``recurrax.scan``."""

    def step(carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        carry = carry + x
        return carry, carry

    ys, _ = recurrax.scan(step, None, jnp.ones((2, 5, 3)), initial_carry=jnp.zeros((2, 3)))
    return ys


class Regressor(nnx.Module):
    """docs/training.md's model: an ``nn.LSTM`` and a linear head."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.rnn = nn.LSTM(2, 32, rngs=rngs)
        self.head = nnx.Linear(32, 1, rngs=rngs)

    def __call__(self, xs: jax.Array) -> jax.Array:
        ys, _ = self.rnn(xs)
        return self.head(ys[:, -1])


def fit_and_trainer() -> dict[str, float]:
    """docs/training.md: build_optimizer, fit with callbacks and a Checkpointer, Trainer, plots."""
    data = {
        "inputs": np.random.rand(256, 50, 2).astype(np.float32),
        "targets": np.random.rand(256, 1).astype(np.float32),
    }
    model = Regressor(nnx.Rngs(0))
    tx = train.build_optimizer("adam", 1e-3, clip_norm=1.0)
    history = train.fit(
        model,
        tx,
        data,
        loss="mse",
        epochs=5,
        batch_size=32,
        validation_data=data,
        callbacks=[train.EarlyStopping("val_loss", patience=2)],
        checkpoint=train.Checkpointer("runs/ckpt", every_steps=100, monitor="val_loss"),
        history_dir="runs",
    )
    train.plot_history(history, "runs/loss.png")
    train.plot_gradient_norms(history, "runs/grad_norms.png")

    trainer = train.Trainer(model, optax.adam(1e-3), loss="mse", metrics=["mae"])
    trainer.fit(data, steps=48, eval_every=16, steps_per_call=8, batch_size=32, validation_data=data)
    ckpt = train.Checkpointer("runs/ckpt", every_steps=500, keep=3, monitor="val_loss", mode="min")
    train.fit(model, tx, data, loss="mse", epochs=1, checkpoint=ckpt, resume=True)
    predictions: np.ndarray = trainer.predict(data["inputs"])
    scores = trainer.evaluate(data)
    return {**scores, "first": float(predictions.ravel()[0])}


def gradient_flow(model: Regressor, batch: dict[str, np.ndarray]) -> None:
    """docs/training.md "Gradient flow through time", with ``steps=recorder.steps``."""
    flow = train.gradient_flow(model, batch, loss="mse")
    train.plot_gradient_flow({"LSTM": flow}, "flow.png", title="‖∂L/∂h_t‖")
    recorder = train.GradientFlowRecorder(batch, every_steps=50)
    train.fit(model, train.build_optimizer("adam", 1e-2, clip_norm=1.0), batch, loss="mse", callbacks=[recorder])
    train.plot_gradient_flow({"LSTM": recorder.flows}, "flow_heatmap.png", steps=recorder.steps)


def classic_program() -> None:
    """README "The classic program": a task, a model from ``models``, fit."""
    data = tasks.sentiment()
    model = models.SequenceClassifier(data.info.in_features, 1, cell="lstm", rngs=nnx.Rngs(0))
    train.fit(
        model,
        optax.adam(1e-3),
        data.train,
        loss="binary_cross_entropy",
        metrics=["binary_accuracy"],
        epochs=10,
        batch_size=32,
        validation_data=data.validation,
    )


def attention_and_conv() -> tuple[jax.Array, jax.Array]:
    """The blocks: ``return_weights`` decides the result's type, ``output_length`` follows its input's."""
    attention = nn.MultiHeadAttention(4, 16, rngs=nnx.Rngs(0))
    xs = jnp.ones((2, 10, 16))
    ys: jax.Array = attention(xs)
    ys_w, weights = attention(xs, return_weights=True)
    conv = nn.Conv1D(16, 8, kernel_size=5, stride=2, padding=2, rngs=nnx.Rngs(0))
    steps: int = conv.output_length(10)
    lengths: jax.Array = conv.output_length(jnp.array([10, 7]))
    return ys + ys_w + weights.sum() + steps, lengths


def torch_free_interop(state_dict: dict[str, np.ndarray]) -> jax.Array:
    """README "PyTorch weights": a saved state dict loads without torch."""
    rnn = recurrax.interop.from_torch_state_dict(state_dict, mode="lstm")
    output, _ = rnn(jnp.ones((2, 5, 16)))
    saved: dict[str, np.ndarray] = recurrax.interop.to_torch_state_dict(rnn)
    return output + len(saved)
