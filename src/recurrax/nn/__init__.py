"""Flax NNX modules over the pure cells, blocks and the scan engine — every NNX module of recurrax lives here.

A module owns the ``nnx.Param``\\ s that a pure ``init`` made
(:class:`ParamModule`) and calls the pure functions in ``__call__``; it adds no
math of its own. Stochastic parts draw from the ``"dropout"`` rng stream and
follow ``model.train()`` / ``model.eval()``. The recurrent layers are
:class:`RNN` (any cell) and one named layer per registered cell (``LSTM``,
``GRU``, ``SimpleRNN``, ``IndRNN``, ``QRNN``, ``MinGRU``, …), generated from
the cell registry.
"""

from typing import Any

from recurrax.cells._registry import registered_cells, registered_layer
from recurrax.nn._attention import (
    MultiHeadAttention,
    Transformer,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
)
from recurrax.nn._bidirectional import Bidirectional
from recurrax.nn._conv import TCN, Conv1D, TemporalBlock
from recurrax.nn._flax import FlaxCell
from recurrax.nn._layers import layer_for
from recurrax.nn._module import ParamModule
from recurrax.nn._precision import apply_precision
from recurrax.nn._probe import carry_probe
from recurrax.nn._recording import recording
from recurrax.nn._recurrent_block import RecurrentBlock, RecurrentStack
from recurrax.nn._rnn import RNN
from recurrax.nn._stacked import StackedRNN

_NAMED_LAYERS = {entry.layer: layer_for(entry) for entry in registered_cells()}
globals().update(_NAMED_LAYERS)

__all__ = [
    "RNN",
    "TCN",
    "Bidirectional",
    "Conv1D",
    "FlaxCell",
    "MultiHeadAttention",
    "ParamModule",
    "RecurrentBlock",
    "RecurrentStack",
    "StackedRNN",
    "TemporalBlock",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "apply_precision",
    "carry_probe",
    "layer_for",
    "recording",
]
__all__ += sorted(_NAMED_LAYERS)


def __getattr__(name: str) -> Any:
    return registered_layer(__name__, name, layer_for)
