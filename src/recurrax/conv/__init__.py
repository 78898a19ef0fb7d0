"""Convolutions over time: causal, strided and dilated Conv1D, residual TCN blocks, receptive fields.

Every block is pure: an immutable description with ``init(key, in_features)``
and ``apply(params, xs, *, lengths=None, time_major=False, ...)``, taking
``xs[*B, T, D]`` like the scan engine. Steps past an example's ``lengths`` are
zero in the output and never reach the valid steps of a causal block. The
Flax NNX modules that own their parameters are in :mod:`recurrax.nn`; the
streaming form of a causal convolution is the cell :class:`CausalConv1DCell`
(:func:`causal_conv1d`), which :func:`recurrax.scan` runs step by step.
"""

from recurrax.conv._conv1d import PADDINGS, Conv1D, conv1d, conv_output_length, padding_pair, weight_norm
from recurrax.conv._receptive_field import receptive_field
from recurrax.conv._streaming import CausalConv1DCell, causal_conv1d
from recurrax.conv._tcn import TCN, TemporalBlock

__all__ = [
    "PADDINGS",
    "TCN",
    "CausalConv1DCell",
    "Conv1D",
    "TemporalBlock",
    "causal_conv1d",
    "conv1d",
    "conv_output_length",
    "padding_pair",
    "receptive_field",
    "weight_norm",
]
