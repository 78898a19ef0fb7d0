"""gate_statistics and the GateStatistics callback: the numbers recomputed from scan(record=True) by hand."""

from __future__ import annotations

import types

import jax
import numpy as np
import pytest
from flax import nnx

import recurrax
from recurrax import nn, train
from recurrax.interpret import GateStatistics, gate_statistics

B, T, D, H = 3, 7, 2, 4
XS = np.random.default_rng(0).standard_normal((B, T, D)).astype(np.float32)
LENGTHS = np.array([7, 4, 2])


def test_an_lstm_layers_statistics_are_its_recorded_gates_and_carries():
    layer = nn.LSTM(D, H, rngs=nnx.Rngs(0))
    stats = gate_statistics(layer, XS, lengths=LENGTHS, threshold=0.3)
    scan = jax.jit(lambda p: recurrax.scan(layer.cell, p, XS, lengths=LENGTHS, return_carries=True, record=True))
    _, _, carries, records = scan(layer.pure_params())
    valid = np.arange(T) < LENGTHS[:, None]
    gates = [np.asarray(records[n])[valid] for n in ("i", "f", "o")]
    saturated = sum(((g < 0.3) | (g > 0.7)).sum() for g in gates) / sum(g.size for g in gates)
    keep = float(np.asarray(records["f"])[valid].mean())
    norm = np.sqrt(np.sum(np.asarray(carries.h) ** 2, -1) + np.sum(np.asarray(carries.c) ** 2, -1))[valid].mean()
    assert stats["layer0/saturated_fraction"] == pytest.approx(saturated)
    assert stats["layer0/keep_mean"] == pytest.approx(keep, rel=1e-6)
    assert stats["layer0/time_constant"] == pytest.approx(1 / (1 - keep), rel=1e-6)
    assert stats["layer0/state_norm"] == pytest.approx(norm, rel=1e-5)
    with pytest.raises(ValueError, match="threshold must be in"):
        gate_statistics(layer, XS, threshold=0.5)


def test_the_callback_writes_per_layer_statistics_into_the_epochs_history_row():
    # The fit loop calls on_epoch_end with the trainer after syncing the weights into trainer.model
    # (eval mode) and before saving the history: the callback adds its keys to the row just logged.
    model = recurrax.models.SequenceRegressor(D, cell="gru", hidden_size=H, depth=2, rngs=nnx.Rngs(0))
    model.eval()
    history = train.History()
    history.log_epoch({"epoch": 1, "step": 3, "loss": 0.5})
    trainer = types.SimpleNamespace(model=model, history=history)
    GateStatistics(XS, lengths=LENGTHS).on_epoch_end(trainer, 0, history.epochs[-1])
    row = history.epochs[-1]
    assert row["loss"] == 0.5
    for k in (0, 1):  # a GRU keeps the old state with z
        assert 0 < row[f"layer{k}/keep_mean"] < 1 and row[f"layer{k}/time_constant"] > 1
        assert 0 <= row[f"layer{k}/saturated_fraction"] <= 1 and row[f"layer{k}/state_norm"] > 0
    assert history.series("layer1/keep_mean") == [row["layer1/keep_mean"]]
