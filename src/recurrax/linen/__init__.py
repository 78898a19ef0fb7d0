"""Thin Flax Linen wrappers of recurrax's recurrent layers, for existing Linen codebases.

``RNN(cell=...)`` runs any cell; ``LSTM(hidden_size=...)``, ``GRU``, ``IndRNN``,
``QRNN``, … (one per registered cell) build their cell from their fields. The
cell's parameters live in the module's ``"params"`` collection under
``"cell"``, with the pure names (``{"cell": {"input_kernel": ...}}``).
Recurrax's first-class modules are the Flax NNX ones in :mod:`recurrax.nn`.
"""

from typing import Any

from recurrax.cells._registry import registered_cells, registered_layer
from recurrax.linen._rnn import RNN, linen_layer_for

_NAMED_LAYERS = {entry.layer: linen_layer_for(entry) for entry in registered_cells()}
globals().update(_NAMED_LAYERS)

__all__ = ["RNN", "linen_layer_for"]
__all__ += sorted(_NAMED_LAYERS)


def __getattr__(name: str) -> Any:
    return registered_layer(__name__, name, linen_layer_for)
