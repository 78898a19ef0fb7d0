"""Pure recurrent cells: parameters and carries are plain pytrees.

Every cell is a frozen dataclass (``LSTMCell``, ``GRUCell``, …) whose fields are
its options, declared once; the lowercase factory (``lstm``, ``gru``, …), the
``recurrax.nn`` layer and the backbone are derived from its registry line below.
"""

from typing import Any

from recurrax._cell import Cell, Steps
from recurrax._deprecation import moved_attribute
from recurrax._linear_cell import LinearCell, LinearTerms
from recurrax._ops import layer_norm, tree_where
from recurrax._projected_cell import ProjectedStepCell
from recurrax._types import Carry, GateBlocksOrthogonal, Params, chrono_bias
from recurrax.cells._conv_lstm import ConvLSTMCell
from recurrax.cells._gru import GRUCell
from recurrax.cells._indrnn import IndRNNCell
from recurrax.cells._linear_recurrences import LRUCell, MinGRUCell, MinLSTMCell
from recurrax.cells._lstm import LSTMCarry, LSTMCell
from recurrax.cells._matmul_gated import MatmulGatedCell
from recurrax.cells._qrnn import QRNNCarry, QRNNCell
from recurrax.cells._registry import CellEntry, aliased_factory, cell_entry, register_cell, registered_cells
from recurrax.cells._regularization import (
    RecurrentDropoutCarry,
    RegularizedCell,
    ZoneoutCarry,
    recurrent_dropout,
    zoneout,
)
from recurrax.cells._simple_rnn import SimpleRNNCell

# One line per cell: its factory (returned), its recurrax.nn layer, its backbone. An alias
# (`mingru`) is another spelling of the factory's name, as attribute and as backbone name.
simple_rnn = register_cell(
    SimpleRNNCell,
    "simple_rnn",
    layer="SimpleRNN",
    backbone="rnn",
    summary="Elman RNN with tanh (vanishing gradients: the baseline)",
)
lstm = register_cell(LSTMCell, "lstm", layer="LSTM", summary="LSTM (Hochreiter & Schmidhuber 1997)")
gru = register_cell(GRUCell, "gru", layer="GRU", summary="GRU (Cho et al. 2014)")
indrnn = register_cell(
    IndRNNCell, "indrnn", layer="IndRNN", summary="IndRNN (Li et al. 2018), one recurrent weight per unit"
)
min_gru = register_cell(
    MinGRUCell,
    "min_gru",
    layer="MinGRU",
    aliases=("mingru",),
    layer_options={"method": "parallel"},
    block={},
    summary="minGRU (Feng et al. 2024) in its residual block, parallel scan over time",
)
min_lstm = register_cell(
    MinLSTMCell,
    "min_lstm",
    layer="MinLSTM",
    aliases=("minlstm",),
    layer_options={"method": "parallel"},
    block={},
    summary="minLSTM (Feng et al. 2024) in its residual block, parallel scan over time",
)
lru = register_cell(
    LRUCell,
    "lru",
    layer="LRU",
    layer_options={"method": "parallel"},
    block={"output_glu": True, "mlp": None},
    summary="LRU (Orvieto et al. 2023) in its residual block, diagonal complex recurrence",
)
qrnn = register_cell(
    QRNNCell,
    "qrnn",
    layer="QRNN",
    layer_options={"method": "parallel"},
    summary="QRNN (Bradbury et al. 2017), convolutional gates + fo-pooling",
)
conv_lstm = register_cell(
    ConvLSTMCell,
    "conv_lstm",
    layer="ConvLSTM",
    backbone=None,
    positional=("hidden_size", "spatial_shape"),
    summary="ConvLSTM (Shi et al. 2015) over flattened frames",
)

__all__ = [
    "Carry",
    "Cell",
    "CellEntry",
    "ConvLSTMCell",
    "GRUCell",
    "GateBlocksOrthogonal",
    "IndRNNCell",
    "LRUCell",
    "LSTMCarry",
    "LSTMCell",
    "LinearCell",
    "LinearTerms",
    "MatmulGatedCell",
    "MinGRUCell",
    "MinLSTMCell",
    "Params",
    "ProjectedStepCell",
    "QRNNCarry",
    "QRNNCell",
    "RecurrentDropoutCarry",
    "RegularizedCell",
    "SimpleRNNCell",
    "Steps",
    "ZoneoutCarry",
    "cell_entry",
    "chrono_bias",
    "conv_lstm",
    "gru",
    "indrnn",
    "layer_norm",
    "lru",
    "lstm",
    "min_gru",
    "min_lstm",
    "qrnn",
    "recurrent_dropout",
    "register_cell",
    "registered_cells",
    "simple_rnn",
    "tree_where",
    "zoneout",
]

# Names of the earlier releases: importable, with a warning that names what replaced them.
_MOVED = {
    "SimpleRNN": "recurrax.cells:SimpleRNNCell",
    "LSTM": "recurrax.cells:LSTMCell",
    "GRU": "recurrax.cells:GRUCell",
    "MinGRU": "recurrax.cells:MinGRUCell",
    "MinLSTM": "recurrax.cells:MinLSTMCell",
    "LRU": "recurrax.cells:LRUCell",
    "ConvLSTM": "recurrax.cells:ConvLSTMCell",
    # The streaming convolution lives next to the convolution it streams.
    "CausalConv1D": "recurrax.conv:CausalConv1DCell",
    "causal_conv1d": "recurrax.conv:causal_conv1d",
}


def __getattr__(name: str) -> Any:
    factory = aliased_factory(name)
    if factory is not None:
        return factory
    return moved_attribute(__name__, name, _MOVED)
