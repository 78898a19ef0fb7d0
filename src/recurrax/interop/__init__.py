"""Interoperability with other frameworks: PyTorch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` weights in and out.

``nn.Linear`` layers come in through :func:`from_torch_linear`, for the cells
whose papers build gates from separate linear layers (minGRU, minLSTM).

torch is optional and imported only when a function needs it: :func:`from_torch_state_dict`
(numpy arrays in torch's naming) and :func:`to_nnx` on such a state dict work without it.
"""

from recurrax.interop._torch_convert import from_torch, from_torch_state_dict, to_torch, to_torch_state_dict
from recurrax.interop._torch_linear import from_torch_linear
from recurrax.interop._torch_nnx import to_nnx
from recurrax.interop._torch_rnn import TorchRNN

__all__ = [
    "TorchRNN",
    "from_torch",
    "from_torch_linear",
    "from_torch_state_dict",
    "to_nnx",
    "to_torch",
    "to_torch_state_dict",
]
