"""A PyTorch ``nn.Linear``'s weights as arrays, for cells built from separate linear layers (minGRU, minLSTM)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recurrax.interop._torch_convert import as_numpy, import_torch


def from_torch_linear(module: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``(weight[out, in], bias[out] or None)`` of a torch ``nn.Linear``, as numpy arrays in torch's layout.

    For :meth:`recurrax.MinGRUCell.params_from_linears` (and minLSTM's) with
    ``layout="torch"``: the papers' reference code builds each gate and the
    candidate as its own ``nn.Linear``. float16/bfloat16 weights come back
    widened to float32 (exactly); the cell casts them to its ``param_dtype``.

    Example:
      >>> import torch, recurrax
      >>> from recurrax.interop import from_torch_linear
      >>> linear_z, linear_h = torch.nn.Linear(3, 4), torch.nn.Linear(3, 4, bias=False)
      >>> params = recurrax.min_gru(4).params_from_linears(
      ...     z=from_torch_linear(linear_z), h=from_torch_linear(linear_h), layout="torch")
      >>> params["input_kernel"].shape
      (3, 8)
    """
    torch = import_torch()
    if not isinstance(module, torch.nn.Linear):
        raise TypeError(f"expected a torch.nn.Linear, got {type(module).__name__}")
    weight, _ = as_numpy(module.weight, "weight")
    bias = None if module.bias is None else as_numpy(module.bias, "bias")[0]
    return weight, bias
