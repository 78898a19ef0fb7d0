"""Saturation and memory of a model's gates, per recurrent layer, and a callback that logs them during training.

From the recordings (:func:`recurrax.nn.recording`) of one batch: how many gate
values sit in a sigmoid's flat ends (where their gradient vanishes), the mean
"keep" gate and the memory it implies, and the size of the state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from recurrax._types import Array
from recurrax._validation import check_lengths, check_sequence
from recurrax.nn._probe import carry_probe
from recurrax.nn._recording import recording
from recurrax.train._callbacks import Callback

# The gates in (0, 1), by the names the cells record them under.
SIGMOID_GATES = ("i", "f", "o", "r", "z")


def _keep_gate(records: Mapping[str, Array]) -> Array | None:
    """The gate that weighs the old state in the update, where the cell has one."""
    if "f" in records:  # LSTM, minLSTM (normalised), QRNN: c' = f ⊙ c + …
        return records["f"]
    if "z" in records and "r" in records:  # GRU: h' = (1 − z) ⊙ n + z ⊙ h
        return records["z"]
    if "z" in records and "h_tilde" in records:  # minGRU: h' = (1 − z) ⊙ h + z ⊙ h̃
        return 1 - records["z"]
    return None


def _run(model: Callable[..., Any], xs: Array, lengths: Array | None) -> tuple[list[Any], list[Any]]:
    with recording() as records, carry_probe() as carries:
        model(xs, lengths=lengths)
    return records, carries


# One compiled program per model structure (eagerly, every op of every step would compile on its own).
_record = nnx.jit(_run)


def gate_statistics(
    model: Callable[..., Any], inputs: Any, *, lengths: Any = None, threshold: float = 0.05
) -> dict[str, float]:
    """Per recurrent layer call ``k`` of ``model(inputs, lengths=lengths)``, over the valid steps:

    * ``layer{k}/saturated_fraction``: the share of sigmoid gate values (``i f o r z``)
      below ``threshold`` or above ``1 − threshold``;
    * ``layer{k}/keep_mean``: the mean of the gate that keeps the old state (LSTM
      and minLSTM ``f``, GRU ``z``, minGRU ``1 − z``, QRNN ``f``), and
      ``layer{k}/time_constant`` = ``1 / (1 − keep_mean)``, the memory in steps it implies;
    * ``layer{k}/state_norm``: the mean L2 norm of the carry after each step.

    A layer without such gates reports only what applies. ``inputs`` ``[B, T, D]``;
    run NNX models in eval mode (dropout would move the numbers).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> from recurrax.interpret import gate_statistics
      >>> stats = gate_statistics(nn.LSTM(3, 4, rngs=nnx.Rngs(0)), jnp.ones((2, 5, 3)))
      >>> sorted(stats)
      ['layer0/keep_mean', 'layer0/saturated_fraction', 'layer0/state_norm', 'layer0/time_constant']
    """
    xs = check_sequence(inputs, "inputs", time_major=False, features=None)
    if not 0 < threshold < 0.5:
        raise ValueError(f"threshold must be in (0, 0.5), got {threshold!r}")
    B, T = xs.shape[0], xs.shape[-2]
    lengths = None if lengths is None else check_lengths(lengths, (B,), T)
    records, carries = _record(model, xs, lengths) if isinstance(model, nnx.Module) else _run(model, xs, lengths)
    valid = np.ones((B, T), bool) if lengths is None else np.arange(T) < np.asarray(lengths)[:, None]
    stats: dict[str, float] = {}
    for k, (layer_records, layer_carries) in enumerate(zip(records, carries, strict=True)):
        prefix = f"layer{k}/"
        gates = [np.asarray(layer_records[n]) for n in SIGMOID_GATES if n in layer_records]
        if gates:
            saturated = sum(((g < threshold) | (g > 1 - threshold))[valid].sum() for g in gates)
            total = sum(g[valid].size for g in gates)
            stats[prefix + "saturated_fraction"] = float(saturated / total)
        keep = _keep_gate(layer_records)
        if keep is not None:
            keep_mean = float(np.asarray(keep)[valid].mean())
            stats[prefix + "keep_mean"] = keep_mean
            stats[prefix + "time_constant"] = 1.0 / (1.0 - keep_mean) if keep_mean < 1 else math.inf
        leaves = [np.abs(np.asarray(leaf)).reshape(B, T, -1) for leaf in jax.tree.leaves(layer_carries)]
        if leaves:
            norms = np.sqrt(sum(np.sum(leaf**2, axis=-1) for leaf in leaves))
            stats[prefix + "state_norm"] = float(norms[valid].mean())
    return stats


class GateStatistics(Callback):
    """Logs :func:`gate_statistics` of a fixed batch into each epoch's (or evaluation period's) history row.

    The keys appear in ``history.epochs`` (and ``history.json``), so
    ``history.series("layer0/saturated_fraction")`` and the run's plots read
    them like any metric. The model runs in eval mode on ``inputs``.

    Example::

        probe = data.validation.inputs[:64]
        fit(model, optimizer, data.train, ..., callbacks=[GateStatistics(probe)])
        history.series("layer0/time_constant")
    """

    def __init__(self, inputs: Any, *, lengths: Any = None, threshold: float = 0.05) -> None:
        self.inputs = jnp.asarray(check_sequence(inputs, "inputs", time_major=False, features=None))
        self.lengths = lengths
        self.threshold = threshold

    def on_epoch_end(self, trainer: Any, epoch: int, logs: Mapping[str, float]) -> None:
        # The trainer has synced its weights into trainer.model and keeps it in eval mode between steps.
        stats = gate_statistics(trainer.model, self.inputs, lengths=self.lengths, threshold=self.threshold)
        trainer.history.epochs[-1].update(stats)
