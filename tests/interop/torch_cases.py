"""Shared PyTorch reference setup for the interop tests: one set of shapes, randomised modules.

Every test uses the same ``B, T, D, H, P`` so that XLA compiles are shared.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

B, T, D, H, P = 3, 5, 3, 4, 2
LENGTHS = np.array([5, 2, 4])  # unsorted: exercises pack_padded_sequence(enforce_sorted=False)

# kind → (torch class, extra constructor kwargs, recurrax mode)
KINDS: dict[str, tuple[Any, dict[str, Any], str]] = {
    "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}, "RNN_TANH"),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}, "RNN_RELU"),
    "lstm": (torch.nn.LSTM, {}, "LSTM"),
    "lstm_proj": (torch.nn.LSTM, {"proj_size": P}, "LSTM"),
    "gru": (torch.nn.GRU, {}, "GRU"),
}
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def make_module(
    kind: str,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    batch_first: bool = False,
    bias: bool = True,
    double: bool = False,
    seed: int = 0,
) -> Any:
    """A torch module with every weight and bias re-drawn from U(-0.5, 0.5), in eval mode.

    Non-default, non-zero values everywhere: a zero bias would hide a missing bias.
    """
    cls, extra, _ = KINDS[kind]
    torch.manual_seed(seed)
    module = cls(D, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first, bias=bias, **extra)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.5, 0.5)
    module.eval()
    return module.double() if double else module


def is_lstm(kind: str) -> bool:
    return KINDS[kind][2] == "LSTM"


def output_size(kind: str) -> int:
    return P if kind == "lstm_proj" else H


def random_inputs(
    kind: str, *, num_states: int, batch_first: bool, dtype: str, seed: int = 1, batched: bool = True
) -> tuple[np.ndarray, Any]:
    """Inputs in the module's layout and a random initial state in torch's ``[L·N, B, ·]`` shape."""
    rng = np.random.default_rng(seed)
    x_shape = ((B, T, D) if batch_first else (T, B, D)) if batched else (T, D)
    batch = (B,) if batched else ()
    xs = rng.normal(size=x_shape).astype(dtype)
    h0 = (0.5 * rng.normal(size=(num_states, *batch, output_size(kind)))).astype(dtype)
    if is_lstm(kind):
        c0 = (0.5 * rng.normal(size=(num_states, *batch, H))).astype(dtype)
        return xs, (h0, c0)
    return xs, h0


def torch_state(state: Any) -> Any:
    if isinstance(state, tuple):
        return tuple(torch.from_numpy(s) for s in state)
    return torch.from_numpy(state)


def run_torch(module: Any, xs: Any, *, lengths: np.ndarray | None = None, initial_state: Any = None) -> tuple[Any, Any]:
    """PyTorch's own forward pass; with ``lengths`` through a packed sequence, padded back to ``T``."""
    if lengths is not None:
        xs = torch.nn.utils.rnn.pack_padded_sequence(
            xs, torch.from_numpy(lengths), batch_first=module.batch_first, enforce_sorted=False
        )
    with warnings.catch_warnings():
        # torch's CPU backend notes that it falls back from oneDNN for projected LSTMs; the result is the same.
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        output, state = module(xs, initial_state)
    if lengths is not None:
        output, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=module.batch_first, total_length=T)
    return output, state


def max_abs_diff(ours: Any, theirs: Any) -> float:
    """The largest absolute difference between matching (possibly nested tuple) arrays and tensors."""
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        return max(max_abs_diff(a, b) for a, b in zip(ours, theirs, strict=True))
    ours, theirs = _numpy(ours), _numpy(theirs)
    assert ours.shape == theirs.shape, f"shape {ours.shape} != torch's {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"dtype {ours.dtype} != torch's {theirs.dtype}"
    return float(np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64))))


def _numpy(array: Any) -> np.ndarray:
    return array.detach().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
