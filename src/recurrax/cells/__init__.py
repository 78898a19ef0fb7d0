"""Pure recurrent cells: parameters and carries are plain pytrees."""

from recurrax.cells._base import Carry, Cell, LinearCell, Params, tree_where
from recurrax.cells._causal_conv import CausalConv1D, causal_conv1d
from recurrax.cells._conv_lstm import ConvLSTM, conv_lstm
from recurrax.cells._gru import GRU, gru
from recurrax.cells._initializers import GateBlocksOrthogonal, chrono_bias
from recurrax.cells._linear_recurrences import LRU, MinGRU, MinLSTM, lru, min_gru, min_lstm
from recurrax.cells._lstm import LSTM, LSTMCarry, layer_norm, lstm
from recurrax.cells._regularization import (
    RecurrentDropoutCarry,
    RegularizedCell,
    ZoneoutCarry,
    recurrent_dropout,
    zoneout,
)
from recurrax.cells._simple_rnn import SimpleRNN, simple_rnn

__all__ = [
    "GRU",
    "LRU",
    "LSTM",
    "Carry",
    "CausalConv1D",
    "Cell",
    "ConvLSTM",
    "GateBlocksOrthogonal",
    "LSTMCarry",
    "LinearCell",
    "MinGRU",
    "MinLSTM",
    "Params",
    "RecurrentDropoutCarry",
    "RegularizedCell",
    "SimpleRNN",
    "ZoneoutCarry",
    "causal_conv1d",
    "chrono_bias",
    "conv_lstm",
    "gru",
    "layer_norm",
    "lru",
    "lstm",
    "min_gru",
    "min_lstm",
    "recurrent_dropout",
    "simple_rnn",
    "tree_where",
    "zoneout",
]
