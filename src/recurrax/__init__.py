"""recurrax: pure recurrent cells, one scan engine, Flax NNX modules and optax training."""

from recurrax import interop  # torch-free until one of its functions is called
from recurrax._compose import bidirectional_scan, stacked_scan
from recurrax._scan import scan
from recurrax.cells import GRU, LSTM, Cell, LinearCell, LSTMCarry, SimpleRNN, gru, lstm, simple_rnn

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LSTM",
    "Cell",
    "LSTMCarry",
    "LinearCell",
    "SimpleRNN",
    "bidirectional_scan",
    "gru",
    "interop",
    "lstm",
    "scan",
    "simple_rnn",
    "stacked_scan",
]
