"""recurrax: pure recurrent cells, one scan engine, Flax NNX modules and optax training.

Names: a cell class has the ``Cell`` suffix (``LSTMCell``) and a lowercase
factory (``lstm``); the Flax layer has the plain name (``recurrax.nn.LSTM``).
Sizes are ``in_features`` (inputs) and ``hidden_size`` (state) everywhere.
"""

import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The library logs to the "recurrax" logger hierarchy ("recurrax.train._loop", ...) and
# configures nothing: the application chooses handlers and levels (the logging HOWTO's
# advice for libraries). The NullHandler keeps Python's last-resort handler from printing
# records of WARNING and above to stderr when the application has set up no logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# Every name loads on first access, so `import recurrax` does not import jax:
# the `recurrax` command (recurrax.cli) answers --help and argument errors in
# ~0.1 s instead of waiting 2-5 s for jax. `recurrax.lstm`, `from recurrax
# import scan` and `from recurrax import *` work as with eager imports.
_SUBPACKAGES = ("attention", "cells", "conv", "interop", "interpret", "nn", "train", "tasks", "models", "linen")
_NAMES = {
    "RecurrentBlock": "recurrax._recurrent_block",
    "RecurrentStack": "recurrax._recurrent_block",
    "ScanOptions": "recurrax._options",
    "bidirectional_scan": "recurrax._compose",
    "stacked_scan": "recurrax._compose",
    "params_in_features": "recurrax._params",
    "Precision": "recurrax._precision",
    "precision_policy": "recurrax._precision",
    "scan": "recurrax._scan",
    "sequence_parallel_scan": "recurrax._sequence_parallel",
}

if TYPE_CHECKING:  # what static checkers see: the names, eagerly
    from recurrax import attention, cells, conv, interop
    from recurrax._compose import bidirectional_scan, stacked_scan
    from recurrax._options import ScanOptions
    from recurrax._params import params_in_features
    from recurrax._precision import Precision, precision_policy
    from recurrax._recurrent_block import RecurrentBlock, RecurrentStack
    from recurrax._scan import scan
    from recurrax._sequence_parallel import sequence_parallel_scan
    from recurrax.cells import *  # noqa: F403

    __all__ = ["Precision", "RecurrentBlock", "RecurrentStack", "ScanOptions", "attention", "bidirectional_scan",
               "cells", "conv", "interop", "params_in_features", "precision_policy", "scan", "sequence_parallel_scan",
               "stacked_scan"]  # fmt: skip
    __all__ += cells.__all__


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"recurrax.{name}")
    if name.startswith("__") and name != "__all__":  # tools probing for __path__-like hooks need no jax
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if importlib.util.find_spec(f"recurrax.{name}") is not None:  # `from recurrax import info`: a module
        return importlib.import_module(f"recurrax.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        cells = importlib.import_module("recurrax.cells")
        if name == "__all__":
            value = [*_NAMES, "attention", "cells", "conv", "interop", *cells.__all__]
        elif name in cells.__all__:  # the cells, their factories and the contract, as recurrax.X
            value = getattr(cells, name)
        elif (factory := cells._registry.aliased_factory(name)) is not None:  # recurrax.mingru is recurrax.min_gru
            value = factory
        else:
            # The earlier releases' names (recurrax.LSTM was the pure cell, easily taken for recurrax.nn.LSTM).
            from recurrax._deprecation import moved_attribute

            return moved_attribute(__name__, name, cells._MOVED)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBPACKAGES, *_NAMES, *__getattr__("__all__")})
