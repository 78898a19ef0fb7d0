"""One call from a PyTorch recurrent model (module or state dict) to the matching :mod:`recurrax.nn` layers.

Flax and :mod:`recurrax.nn` are imported when :func:`to_nnx` is called, so
``import recurrax.interop`` stays as light as ``import recurrax``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax.interop._torch_convert import as_numpy, from_torch, from_torch_state_dict
from recurrax.interop._torch_rnn import TorchRNN

if TYPE_CHECKING:
    import torch
    from flax import nnx


def to_nnx(
    source: torch.nn.Module | TorchRNN | Mapping[str, Any],
    *,
    rngs: nnx.Rngs,
    head: torch.nn.Module | Mapping[str, Any] | None = None,
    mode: str | None = None,
    batch_first: bool | None = None,
    dtype: DTypeLike | None = None,
    allow_subclass: bool = False,
) -> nnx.Module:
    """Builds the :mod:`recurrax.nn` layers that compute what a PyTorch ``nn.RNN``/``LSTM``/``GRU`` computes.

    The recurrent part is a :class:`recurrax.nn.StackedRNN` with one layer per
    torch layer: an :class:`recurrax.nn.RNN` (one direction) or an
    :class:`recurrax.nn.Bidirectional` (``forward``/``backward``, concatenated
    as torch does), holding the converted weights, with torch's inter-layer
    ``dropout``. With ``head`` (a torch ``nn.Linear`` applied to every step's
    output, as in ``linear(lstm(xs)[0])``) the result is
    ``nnx.Sequential(stack, nnx.Linear)``. Built from a torch module, the
    result starts in the module's mode (``model.eval()`` when the module is in
    eval mode); otherwise in NNX's training mode (dropout, if any, on).

    Shapes: ``model(xs, lengths=None)`` with ``xs[B, T, D]`` when ``batch_first``,
    else ``[T, B, D]`` → ``[…, num_directions·H_out]``, or ``[…, out_features]`` with a head.
    Padded steps (past ``lengths``) are zero before the head, as torch's
    ``pad_packed_sequence`` gives them.

    Args:
      source: a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU``, a :class:`TorchRNN`, or a
        state dict (see :func:`from_torch_state_dict`; needs ``mode``).
      rngs: ``nnx.Rngs`` for the layers' construction and the ``"dropout"`` stream.
      head: a torch ``nn.Linear``, or its state dict ``{"weight": [O, F], "bias": [O]}``
        (``bias`` optional) of arrays, with ``F = num_directions·H_out``.
      mode: the state dict's kind (``"LSTM"``, ``"GRU"``, ``"RNN_TANH"``, ``"RNN_RELU"``);
        only for a state dict.
      batch_first: the layout of ``xs``; default the module's (``False`` for a state dict).
      dtype: dtype of the parameters; default the weights' own.
      allow_subclass: as in :func:`from_torch`.

    Returns:
      the ``StackedRNN``, or ``nnx.Sequential(StackedRNN, nnx.Linear)`` with ``head``.

    Example:
      >>> import numpy as np, torch, recurrax
      >>> from flax import nnx
      >>> lstm, linear = torch.nn.LSTM(3, 8, num_layers=2, batch_first=True).eval(), torch.nn.Linear(8, 2)
      >>> model = recurrax.interop.to_nnx(lstm, head=linear, rngs=nnx.Rngs(0))
      >>> xs = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
      >>> expected = linear(lstm(torch.from_numpy(xs))[0]).detach().numpy()
      >>> bool(np.allclose(model(xs), expected, atol=1e-5))
      True
    """
    from flax import nnx

    from recurrax import nn

    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"rngs must be an nnx.Rngs, got {type(rngs).__name__}")
    if batch_first is not None and not isinstance(batch_first, bool):
        raise TypeError(f"batch_first must be a bool or None, got {batch_first!r}")
    if mode is not None and not isinstance(source, Mapping):
        raise ValueError(f"mode is read off the {type(source).__name__}; pass it only with a state dict, got {mode!r}")
    if isinstance(source, TorchRNN):
        if dtype is not None:
            raise ValueError("dtype cannot recast a TorchRNN; cast it first (jax.tree.map(lambda p: p.astype(t), rnn))")
        rnn = source
        rnn.check_params()
    elif isinstance(source, Mapping):
        if mode is None:
            raise ValueError("mode is required when source is a state dict: 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU'")
        rnn = from_torch_state_dict(source, mode=mode, dtype=dtype)
    else:
        rnn = from_torch(source, dtype=dtype, allow_subclass=allow_subclass)
    if batch_first is None:
        batch_first = rnn.batch_first

    cell = rnn.cell
    layers = []
    for layer in range(rnn.num_layers):
        directions = []
        for direction in range(rnn.num_directions):
            built = nn.RNN(
                cell, rnn.layer_input_size(layer), rngs=rngs, time_major=not batch_first, reverse=direction == 1
            )
            for key, value in rnn.params[layer][direction].items():
                built.params[key][...] = value
            directions.append(built)
        layers.append(directions[0] if len(directions) == 1 else nn.Bidirectional(*directions))
    model: nnx.Module = nn.StackedRNN(layers, dropout=rnn.dropout, rngs=rngs)
    if head is not None:
        model = nnx.Sequential(model, _linear_head(head, rnn, cast=dtype is not None, rngs=rngs))
    training = getattr(source, "training", None)
    if training is False:
        model.eval()
    return model


def _linear_head(head: Any, rnn: TorchRNN, *, cast: bool, rngs: nnx.Rngs) -> nnx.Linear:
    """An ``nnx.Linear`` holding a torch ``nn.Linear``'s (or its state dict's) weights, in ``rnn``'s dtype.

    The head must already have that dtype unless ``cast`` (the caller gave ``dtype``).
    """
    from flax import nnx

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(head, torch.nn.Module):
        if not isinstance(head, torch.nn.Linear):
            raise TypeError(f"head must be a torch.nn.Linear or its state dict, got {type(head).__name__}")
        head = dict(head.named_parameters())
    if not isinstance(head, Mapping):
        raise TypeError(f"head must be a torch.nn.Linear or its state dict, got {type(head).__name__}")
    unexpected = sorted(set(head) - {"weight", "bias"})
    if "weight" not in head or unexpected:
        raise ValueError(
            f"head's state dict must have 'weight' and optionally 'bias', got keys {sorted(head)} "
            f"(unexpected {unexpected})"
        )
    arrays = {key: as_numpy(value, f"head[{key!r}]") for key, value in head.items()}
    features = rnn.num_directions * rnn.output_size
    weight, weight_dtype = arrays["weight"]
    if weight.ndim != 2 or weight.shape[1] != features:
        raise ValueError(
            f"head['weight'] has shape {weight.shape}, expected [out_features, {features}] "
            f"(num_directions·H_out of the recurrent layers)"
        )
    out_features = int(weight.shape[0])
    if "bias" in arrays and arrays["bias"][0].shape != (out_features,):
        raise ValueError(f"head['bias'] has shape {arrays['bias'][0].shape}, expected ({out_features},)")
    for key, (_, own) in arrays.items():
        if own != weight_dtype:
            raise TypeError(f"head[{key!r}] has dtype {own}, but head['weight'] has {weight_dtype}")
    if not cast and weight_dtype != rnn.dtype:
        raise TypeError(
            f"head has dtype {weight_dtype}, but the recurrent weights are {rnn.dtype}; torch would refuse "
            "the mix too: convert one of them, or pass dtype=... to cast both"
        )
    linear = nnx.Linear(
        features, out_features, use_bias="bias" in arrays, dtype=rnn.dtype, param_dtype=rnn.dtype, rngs=rngs
    )
    # Widened tensors were exact, so this is the head's own value in rnn's dtype.
    linear.kernel[...] = jnp.asarray(weight).astype(rnn.dtype).T
    if "bias" in arrays and linear.bias is not None:  # use_bias=True made it
        linear.bias[...] = jnp.asarray(arrays["bias"][0]).astype(rnn.dtype)
    return linear
