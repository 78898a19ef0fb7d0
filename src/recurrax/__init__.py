"""recurrax: pure recurrent cells, one scan engine, Flax NNX modules and optax training."""

# Subpackages: the pure attention and convolution blocks (no Flax import), and interop
# (torch-free until one of its functions is called).
from recurrax import attention, conv, interop
from recurrax._compose import bidirectional_scan, stacked_scan
from recurrax._scan import scan
from recurrax.cells import (
    GRU,
    LRU,
    LSTM,
    Cell,
    LinearCell,
    LSTMCarry,
    MinGRU,
    MinLSTM,
    SimpleRNN,
    gru,
    lru,
    lstm,
    min_gru,
    min_lstm,
    simple_rnn,
)

__version__ = "0.1.0"

__all__ = [
    "GRU",
    "LRU",
    "LSTM",
    "Cell",
    "LSTMCarry",
    "LinearCell",
    "MinGRU",
    "MinLSTM",
    "SimpleRNN",
    "attention",
    "bidirectional_scan",
    "conv",
    "gru",
    "interop",
    "lru",
    "lstm",
    "min_gru",
    "min_lstm",
    "scan",
    "simple_rnn",
    "stacked_scan",
]

# Heavier subpackages (Flax, optax, orbax, matplotlib) load on first access, so
# `import recurrax` stays light while `recurrax.nn.LSTM` still works.
_LAZY_SUBPACKAGES = ("nn", "train", "tasks", "models")


def __getattr__(name: str):
    if name in _LAZY_SUBPACKAGES:
        import importlib

        return importlib.import_module(f"recurrax.{name}")
    raise AttributeError(f"module 'recurrax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_SUBPACKAGES])
