"""recurrax: pure recurrent cells, one scan engine, Flax NNX modules and optax training.

Names: a cell class has the ``Cell`` suffix (``LSTMCell``) and a lowercase
factory (``lstm``); the Flax layer has the plain name (``recurrax.nn.LSTM``).
Sizes are ``in_features`` (inputs) and ``hidden_size`` (state) everywhere.
"""

from typing import Any

# Subpackages: the pure attention and convolution blocks (no Flax import), and interop
# (torch-free until one of its functions is called).
from recurrax import attention, cells, conv, interop
from recurrax._compose import bidirectional_scan, stacked_scan
from recurrax._deprecation import moved_attribute
from recurrax._options import ScanOptions
from recurrax._params import params_in_features
from recurrax._scan import scan
from recurrax.cells import *  # noqa: F403 — the cells, their factories and the contract, as recurrax.X

__version__ = "0.1.0"

__all__ = [
    "ScanOptions",
    "attention",
    "bidirectional_scan",
    "cells",
    "conv",
    "interop",
    "params_in_features",
    "scan",
    "stacked_scan",
]
__all__ += cells.__all__

# Heavier subpackages (Flax, optax, orbax, matplotlib) load on first access, so
# `import recurrax` stays light while `recurrax.nn.LSTM` still works.
_LAZY_SUBPACKAGES = ("nn", "train", "tasks", "models", "linen")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBPACKAGES:
        import importlib

        return importlib.import_module(f"recurrax.{name}")
    # The earlier releases' names (recurrax.LSTM was the pure cell, easily taken for recurrax.nn.LSTM).
    return moved_attribute(__name__, name, cells._MOVED)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_SUBPACKAGES])
