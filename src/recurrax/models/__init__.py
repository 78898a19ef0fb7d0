"""Ready-made sequence models whose backbone (LSTM, GRU, …) is picked by one argument.

``SequenceClassifier`` is the classic ``LSTM → Dense(relu) → Dropout → Dense``
program returning logits; ``SequenceRegressor`` reads a backbone out linearly.
The backbone registry (:func:`register_backbone`) lets new sequence layers
plug in by name; every registered cell is a backbone already. The modules
themselves live in :mod:`recurrax.nn` (every Flax NNX module does); this
package names the ready-made models and fits them to a task.
"""

from recurrax.models._for_task import model_for_task
from recurrax.nn._backbones import (
    Backbone,
    BackboneFactory,
    BackboneSpec,
    backbone_names,
    backbone_spec,
    make_backbone,
    register_backbone,
)
from recurrax.nn._readout import READOUTS, Readout, read_out
from recurrax.nn._sequence_models import SequenceClassifier, SequenceModel, SequenceRegressor

__all__ = [
    "READOUTS",
    "Backbone",
    "BackboneFactory",
    "BackboneSpec",
    "Readout",
    "SequenceClassifier",
    "SequenceModel",
    "SequenceRegressor",
    "backbone_names",
    "backbone_spec",
    "make_backbone",
    "model_for_task",
    "read_out",
    "register_backbone",
]
