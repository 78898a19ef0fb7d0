"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` weights in and out of recurrax.

torch is an optional dependency: it is imported inside these functions only,
so ``import recurrax`` never imports it.

Layout of the conversion, for one layer and direction (``G`` gates)::

    input_kernel      = weight_ih.T                [in, G·H]
    recurrent_kernel  = weight_hh.T                [H_out, G·H]
    projection_kernel = weight_hr.T                [H, P]      (LSTM proj_size)
    bias              = bias_ih + bias_hh          [G·H]       (RNN, LSTM)
    input_bias, recurrent_bias = bias_ih, bias_hh  [3H]        (GRU: b_hn sits inside r ⊙ (·))

The RNN's and LSTM's two biases only ever appear as a sum, so recurrax keeps
one; exporting writes it to ``bias_ih`` and zeros to ``bias_hh``.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from recurrax.interop._torch_rnn import TorchRNN

if TYPE_CHECKING:
    import torch

_TORCH_CLASS = {"RNN_TANH": "RNN", "RNN_RELU": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def import_torch() -> Any:
    """Imports torch, or raises an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            "recurrax.interop needs PyTorch, an optional dependency that is not installed. Install a CPU "
            "build, e.g. `pip install torch --index-url https://download.pytorch.org/whl/cpu` "
            "(an unpinned `pip install torch` may pull the multi-GB CUDA build)."
        ) from err
    return torch


def _weight_names(layer: int, direction: int, *, bias: bool, proj: bool) -> dict[str, str]:
    """torch's parameter names for one layer and direction (role → name), in its state_dict order."""
    suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
    roles = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else []) + (["weight_hr"] if proj else [])
    return {role: role + suffix for role in roles}


def _target_dtype(dtype: DTypeLike | None, module_dtype: Any, torch: Any) -> jnp.dtype:
    if dtype is None:
        by_torch = {torch.float16: jnp.float16, torch.bfloat16: jnp.bfloat16, torch.float32: jnp.float32}
        by_torch[torch.float64] = jnp.float64
        if module_dtype not in by_torch:
            raise TypeError(f"module has parameters of dtype {module_dtype}; expected a floating dtype")
        target = jnp.dtype(by_torch[module_dtype])
    else:
        try:
            target = jnp.dtype(dtype)
        except TypeError as err:
            raise TypeError(f"dtype must be a floating dtype, got {dtype!r}") from err
        if target not in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64):
            raise TypeError(f"dtype must be float16, bfloat16, float32 or float64, got {target}")
    if target == jnp.float64 and jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:
        raise ValueError(
            "the parameters are float64 but JAX's 64-bit mode is off, so they would be silently rounded to "
            "float32; enable it (jax.config.update('jax_enable_x64', True) or `with jax.enable_x64(True):`) "
            "or pass dtype=jnp.float32"
        )
    return target


def _to_jax(tensor: torch.Tensor, dtype: jnp.dtype) -> jax.Array:
    """Copies a torch tensor to a JAX array of ``dtype`` (exact unless ``dtype`` is narrower)."""
    import torch

    tensor = tensor.detach().cpu()
    # numpy has no bfloat16: widen first (float16/bfloat16 → float32 is exact).
    if tensor.dtype != torch.float64:
        tensor = tensor.to(torch.float32)
    return jnp.asarray(tensor.numpy()).astype(dtype)


def from_torch(module: torch.nn.Module, *, dtype: DTypeLike | None = None, allow_subclass: bool = False) -> TorchRNN:
    """Loads a ``torch.nn.RNN``, ``torch.nn.LSTM`` or ``torch.nn.GRU`` into a :class:`TorchRNN`.

    Every configuration is supported: tanh or relu RNNs, LSTM ``proj_size``,
    any ``num_layers``, ``bidirectional``, ``batch_first``, ``bias=False``.
    The result runs the same computation as the module in eval mode
    (inter-layer dropout is an inference no-op and is not applied).

    Args:
      module: the torch module; its weights are copied (on any device).
      dtype: dtype of the recurrax parameters; default the module's
        (float64 needs JAX's 64-bit mode).
      allow_subclass: convert a subclass whose ``forward`` is its own. Only
        the weights and the constructor's settings are read, so whatever that
        ``forward`` adds is lost; such a subclass is refused unless you say so.

    Returns:
      a :class:`TorchRNN`; ``rnn(xs, lengths=..., initial_state=...)`` returns
      ``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM, in PyTorch's shapes.

    Example:
      >>> import jax.numpy as jnp, numpy as np, torch, recurrax
      >>> module = torch.nn.LSTM(3, 8, num_layers=2, bidirectional=True, batch_first=True)
      >>> rnn = recurrax.interop.from_torch(module)
      >>> xs = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
      >>> output, (h_n, c_n) = rnn(jnp.asarray(xs), lengths=jnp.array([5, 3]))
      >>> output.shape, h_n.shape
      ((2, 5, 16), (4, 2, 8))
      >>> expected = module(torch.from_numpy(xs[:1]))[0].detach().numpy()
      >>> bool(np.allclose(output[:1], expected, atol=1e-5))
      True
    """
    torch = import_torch()
    nn = torch.nn
    if isinstance(module, nn.RNNCellBase):
        raise TypeError(
            f"module must be a torch.nn.RNN, LSTM or GRU (a whole sequence layer), got the single-step "
            f"{type(module).__name__}; use the matching recurrax cell (recurrax.lstm, gru, simple_rnn) directly"
        )
    if not isinstance(module, nn.RNN | nn.LSTM | nn.GRU):
        raise TypeError(f"module must be a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got {type(module).__name__}")
    base = next(cls for cls in (nn.LSTM, nn.GRU, nn.RNN) if isinstance(module, cls))
    if type(module).forward is not base.forward and not allow_subclass:
        raise TypeError(
            f"module is a {type(module).__name__}, a subclass of torch.nn.{base.__name__} with its own forward; "
            "from_torch converts only the weights and settings, so its output would differ from that forward. "
            "Pass allow_subclass=True to convert it anyway"
        )
    mode = module.mode
    proj = int(getattr(module, "proj_size", 0))
    target = _target_dtype(dtype, module.weight_ih_l0.dtype, torch)
    num_directions = 2 if module.bidirectional else 1

    params = []
    for layer in range(module.num_layers):
        per_layer = []
        for direction in range(num_directions):
            names = _weight_names(layer, direction, bias=module.bias, proj=proj > 0)
            w = {role: _to_jax(getattr(module, name), target) for role, name in names.items()}
            p = {"input_kernel": w["weight_ih"].T, "recurrent_kernel": w["weight_hh"].T}
            gates_h = p["input_kernel"].shape[1]
            zeros = jnp.zeros((gates_h,), target)
            b_ih, b_hh = (w["bias_ih"], w["bias_hh"]) if module.bias else (zeros, zeros)
            if mode == "GRU":
                p["input_bias"], p["recurrent_bias"] = b_ih, b_hh
            else:
                p["bias"] = b_ih + b_hh
            if proj:
                p["projection_kernel"] = w["weight_hr"].T
            per_layer.append(p)
        params.append(tuple(per_layer))

    return TorchRNN(
        mode=mode,
        params=tuple(params),
        input_size=int(module.input_size),
        hidden_size=int(module.hidden_size),
        num_layers=int(module.num_layers),
        bidirectional=bool(module.bidirectional),
        batch_first=bool(module.batch_first),
        bias=bool(module.bias),
        proj_size=proj,
        dropout=float(module.dropout),
    )


def _torch_dtype(dtype: jnp.dtype, torch: Any) -> Any:
    return {
        jnp.dtype(jnp.float16): torch.float16,
        jnp.dtype(jnp.bfloat16): torch.bfloat16,
        jnp.dtype(jnp.float32): torch.float32,
        jnp.dtype(jnp.float64): torch.float64,
    }[jnp.dtype(dtype)]


def _to_torch_tensor(array: Any, torch: Any) -> torch.Tensor:
    array = jnp.asarray(array)
    wide = np.float64 if array.dtype == jnp.float64 else np.float32
    # Widen first (numpy has no bfloat16); narrowing back in torch is exact.
    return torch.from_numpy(np.array(array, dtype=wide)).to(_torch_dtype(array.dtype, torch))


def to_torch_state_dict(rnn: TorchRNN) -> collections.OrderedDict[str, torch.Tensor]:
    """The PyTorch ``state_dict`` of ``rnn`` (CPU tensors in ``rnn.dtype``, torch's key order).

    RNN/LSTM: recurrax's single bias goes to ``bias_ih`` and ``bias_hh`` is zero
    (PyTorch only ever uses their sum). With ``rnn.bias=False`` every bias must be zero.

    Example:
      >>> import torch, recurrax
      >>> module = torch.nn.GRU(3, 4, bidirectional=True)
      >>> state = recurrax.interop.to_torch_state_dict(recurrax.interop.from_torch(module))
      >>> all(torch.equal(state[k], v) for k, v in module.state_dict().items())
      True
    """
    torch = import_torch()
    if not isinstance(rnn, TorchRNN):
        raise TypeError(f"rnn must be a recurrax.interop.TorchRNN (made by from_torch), got {type(rnn).__name__}")
    rnn.check_params()
    state = collections.OrderedDict()
    for layer in range(rnn.num_layers):
        for direction in range(rnn.num_directions):
            p = rnn.params[layer][direction]
            names = _weight_names(layer, direction, bias=rnn.bias, proj=rnn.proj_size > 0)
            if rnn.mode == "GRU":
                biases = (p["input_bias"], p["recurrent_bias"])
            else:
                biases = (p["bias"], jnp.zeros_like(p["bias"]))
            if not rnn.bias:
                for key in ("input_bias", "recurrent_bias", "bias"):
                    if key in p and np.any(np.asarray(p[key]) != 0):
                        raise ValueError(
                            f"rnn.bias is False but params[{layer}][{direction}][{key!r}] has non-zero entries; "
                            "a torch module without bias cannot hold them (export with bias=True via "
                            "dataclasses.replace(rnn, bias=True))"
                        )
            arrays = [p["input_kernel"].T, p["recurrent_kernel"].T]
            if rnn.bias:
                arrays += list(biases)
            if rnn.proj_size:
                arrays.append(p["projection_kernel"].T)
            for name, array in zip(names.values(), arrays, strict=True):
                state[name] = _to_torch_tensor(array, torch)
    return state


def to_torch(rnn: TorchRNN, module: torch.nn.Module | None = None) -> torch.nn.Module:
    """Writes ``rnn``'s weights into a PyTorch module: a new one, or ``module`` in place.

    A new module gets ``rnn``'s configuration (mode, sizes, flags, dropout) and
    dtype; building it draws nothing from torch's random generator. A given
    ``module`` must have the same kind, sizes, ``num_layers``, ``bidirectional``,
    ``bias``, ``proj_size`` and dtype; its ``batch_first`` and ``dropout`` are
    its own business. Values are copied bit for bit (see
    :func:`to_torch_state_dict` for how biases are written).

    Args:
      rnn: the model to export, e.g. from :func:`from_torch` after training.
      module: a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU`` to load into (default: build one).

    Returns:
      the torch module holding ``rnn``'s weights (``module`` itself when given).

    Example:
      >>> import torch, recurrax
      >>> rnn = recurrax.interop.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
      >>> recurrax.interop.to_torch(rnn)
      LSTM(3, 4, proj_size=2)
    """
    torch = import_torch()
    state = to_torch_state_dict(rnn)
    torch_dtype = _torch_dtype(rnn.dtype, torch)
    class_name = _TORCH_CLASS[rnn.mode]
    if module is None:
        kwargs = {
            "num_layers": rnn.num_layers,
            "bias": rnn.bias,
            "batch_first": rnn.batch_first,
            "dropout": rnn.dropout,
            "bidirectional": rnn.bidirectional,
            "dtype": torch_dtype,
            # On the meta device: no random init (the user's torch RNG is untouched), no wasted work.
            "device": "meta",
        }
        if rnn.mode == "LSTM":
            kwargs["proj_size"] = rnn.proj_size
        if class_name == "RNN":
            kwargs["nonlinearity"] = "relu" if rnn.mode == "RNN_RELU" else "tanh"
        module = getattr(torch.nn, class_name)(rnn.input_size, rnn.hidden_size, **kwargs).to_empty(device="cpu")
    else:
        _check_target_module(rnn, module, torch)
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
    return module


def _check_target_module(rnn: TorchRNN, module: Any, torch: Any) -> None:
    nn = torch.nn
    if not isinstance(module, nn.RNN | nn.LSTM | nn.GRU):
        raise TypeError(f"module must be a torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    if module.mode != rnn.mode:
        raise ValueError(f"module is a {module.mode} module, but rnn.mode is {rnn.mode!r}")
    for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "bias", "proj_size"):
        got = getattr(module, name, 0)
        want = getattr(rnn, name)
        if got != want:
            raise ValueError(f"module.{name} is {got!r}, but rnn.{name} is {want!r}; their weights cannot match")
    module_dtype = module.weight_ih_l0.dtype
    if module_dtype != _torch_dtype(rnn.dtype, torch):
        raise TypeError(
            f"module's parameters are {module_dtype}, but rnn.dtype is {rnn.dtype}; convert one of them "
            "(e.g. module.double(), or from_torch(..., dtype=...))"
        )
