"""Flax NNX modules over the pure cells and the scan engine.

A module owns the ``nnx.Param``\\ s that a cell's ``init`` made and calls
:func:`recurrax.scan` (or the composition helpers) in ``__call__``; it adds no
math of its own. Stochastic parts draw from the ``"dropout"`` rng stream and
follow ``model.train()`` / ``model.eval()``.
"""

from recurrax.attention._nnx import (
    MultiHeadAttention,
    Transformer,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
)
from recurrax.conv._nnx import TCN, Conv1D, TemporalBlock
from recurrax.nn._bidirectional import Bidirectional
from recurrax.nn._layers import GRU, LSTM, SimpleRNN
from recurrax.nn._probe import carry_probe
from recurrax.nn._rnn import RNN
from recurrax.nn._stacked import StackedRNN

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "TCN",
    "Bidirectional",
    "Conv1D",
    "MultiHeadAttention",
    "SimpleRNN",
    "StackedRNN",
    "TemporalBlock",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "carry_probe",
]
