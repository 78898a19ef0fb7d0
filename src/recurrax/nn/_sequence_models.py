"""Ready-made sequence models: a backbone, a readout, and a small dense head."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from recurrax._cell import Cell
from recurrax._validation import check_choice
from recurrax.nn._backbones import make_backbone
from recurrax.nn._readout import READOUTS, Readout, read_out

Array = jax.Array


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class SequenceModel(nnx.Module):
    """``backbone → readout → [Dense(dense_size, relu) → Dropout(dropout)] → Dense(num_outputs)``.

    The shared body of :class:`SequenceClassifier` and :class:`SequenceRegressor`;
    it returns the raw output of the last dense layer (logits or values).

    Shapes: ``xs[B, T, D]``, ``lengths[B]`` → ``[B, num_outputs]``, or
    ``[B, T, num_outputs]`` with ``readout="sequence"``.
    """

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        *,
        cell: str | Cell,
        hidden_size: int,
        dense_size: int | None,
        dropout: float,
        readout: Readout,
        rngs: nnx.Rngs,
        **backbone_options: Any,
    ) -> None:
        _check_positive_int(in_features, "in_features")
        _check_positive_int(num_outputs, "num_outputs")
        _check_positive_int(hidden_size, "hidden_size")
        if dense_size is not None:
            _check_positive_int(dense_size, "dense_size")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be a rate in [0, 1), got {dropout!r}")
        check_choice(readout, "readout", READOUTS)
        self.in_features = in_features
        self.num_outputs = num_outputs
        self.readout = readout
        self.backbone, features = make_backbone(cell, in_features, hidden_size, rngs=rngs, **backbone_options)
        if dense_size is None:
            self.hidden = None
            self.dropout = None
        else:
            self.hidden = nnx.Linear(features, dense_size, rngs=rngs)
            self.dropout = nnx.Dropout(float(dropout), rngs=rngs) if dropout > 0 else None
            features = dense_size
        self.output = nnx.Linear(features, num_outputs, rngs=rngs)

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        """``xs[B, T, D]`` (``lengths[B]`` optional) → ``[B, num_outputs]`` (``[B, T, num_outputs]`` per step)."""
        if xs.ndim != 3 or xs.shape[-1] != self.in_features:
            raise ValueError(f"xs must have shape [B, T, {self.in_features}], got {tuple(xs.shape)}")
        ys = self.backbone(xs, lengths=lengths)
        z = read_out(ys, lengths, self.readout)
        if self.hidden is not None:
            z = jax.nn.relu(self.hidden(z))
            if self.dropout is not None:
                z = self.dropout(z)
        return self.output(z)


class SequenceClassifier(SequenceModel):
    """The classic recurrent classifier, returning **logits**.

    With the defaults this is the Keras-era program
    ``LSTM(128) → Dense(64, relu) → Dropout(0.5) → Dense(num_outputs)``, with
    the final sigmoid (or softmax) left out: train it with a loss on logits
    (``recurrax.train``'s ``"binary_cross_entropy"`` or
    ``"softmax_cross_entropy"``). Folding the sigmoid into the loss is what
    keeps it finite: ``log(1 - σ(z))`` computed from a float32 ``sigmoid(z)``
    is ``log 0 = -inf`` for every ``z >= 17`` (a confident wrong answer gives
    an infinite loss and NaN gradients), while the loss on logits uses
    ``-softplus(z)``, exact there. For probabilities apply
    ``jax.nn.sigmoid`` (binary) or ``jax.nn.softmax`` to the output.

    Dropout obeys NNX modes: ``model.train()`` (the default) draws masks from
    the ``"dropout"`` stream of ``rngs``; ``model.eval()`` turns it off.

    Args:
      in_features: ``D``, features per step.
      num_outputs: 1 for a binary task (one logit), the number of classes otherwise.
      cell: a registered backbone name (:func:`backbone_names`: ``"lstm"``,
        ``"gru"``, ``"rnn"``, …) or a pure :class:`~recurrax.cells.Cell`, e.g.
        ``recurrax.lstm(128, layer_norm=True)``.
      hidden_size: the backbone's width (ignored when ``cell`` is a ``Cell``).
      dense_size: width of the ReLU layer, or ``None`` for none (then no dropout).
      dropout: dropout rate after the ReLU layer.
      readout: ``"last"`` (each example's last valid step), ``"mean"`` (mean over
        valid steps) or ``"sequence"`` (logits at every step, ``[B, T, C]``).
      rngs: ``nnx.Rngs`` with a ``"params"`` (or default) stream, and ``"dropout"`` for training.
      **backbone_options: passed to the backbone (e.g. ``layer_norm=True`` for an LSTM).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax.models import SequenceClassifier
      >>> model = SequenceClassifier(20, 1, cell="lstm", rngs=nnx.Rngs(0))
      >>> logits = model(jnp.ones((4, 7, 20)), lengths=jnp.array([7, 5, 3, 1]))
      >>> logits.shape
      (4, 1)
      >>> probabilities = jax.nn.sigmoid(logits)
    """

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        *,
        cell: str | Cell = "lstm",
        hidden_size: int = 128,
        dense_size: int | None = 64,
        dropout: float = 0.5,
        readout: Readout = "last",
        rngs: nnx.Rngs,
        **backbone_options: Any,
    ) -> None:
        super().__init__(
            in_features,
            num_outputs,
            cell=cell,
            hidden_size=hidden_size,
            dense_size=dense_size,
            dropout=dropout,
            readout=readout,
            rngs=rngs,
            **backbone_options,
        )


class SequenceRegressor(SequenceModel):
    """A backbone read out by a linear layer: real-valued predictions ``[B, num_outputs]``.

    The model of the adding problem: ``LSTM(hidden_size) → Dense(num_outputs)``
    on the last valid step, trained with ``"mse"``. ``dense_size`` adds a ReLU
    layer (and ``dropout`` after it) before the output.

    Args:
      in_features: ``D``, features per step.
      num_outputs: ``O``, values predicted per sequence (per step with ``readout="sequence"``).
      cell, hidden_size, readout, rngs: as in :class:`SequenceClassifier`.
      backbone_options: keyword arguments, as in :class:`SequenceClassifier`.
      dense_size: width of an optional ReLU layer before the output (default none).
      dropout: dropout rate after that layer.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax.models import SequenceRegressor
      >>> model = SequenceRegressor(2, cell="gru", hidden_size=16, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((3, 10, 2))).shape
      (3, 1)
    """

    def __init__(
        self,
        in_features: int,
        num_outputs: int = 1,
        *,
        cell: str | Cell = "lstm",
        hidden_size: int = 128,
        dense_size: int | None = None,
        dropout: float = 0.0,
        readout: Readout = "last",
        rngs: nnx.Rngs,
        **backbone_options: Any,
    ) -> None:
        super().__init__(
            in_features,
            num_outputs,
            cell=cell,
            hidden_size=hidden_size,
            dense_size=dense_size,
            dropout=dropout,
            readout=readout,
            rngs=rngs,
            **backbone_options,
        )
