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
import dataclasses
import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from recurrax.interop._torch_rnn import _FLOAT_DTYPES, _NUM_GATES, MODES, TorchRNN

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


def _target_dtype(dtype: DTypeLike | None, source_dtype: jnp.dtype, source: str) -> jnp.dtype:
    """The dtype of the recurrax parameters: ``dtype`` if given, else the weights' own (``source`` names them)."""
    if dtype is None:
        target = jnp.dtype(source_dtype)
        if target not in _FLOAT_DTYPES:
            raise TypeError(f"{source} has dtype {target}; expected float16, bfloat16, float32 or float64")
    else:
        try:
            target = jnp.dtype(dtype)
        except TypeError as err:
            raise TypeError(f"dtype must be a floating dtype, got {dtype!r}") from err
        if target not in _FLOAT_DTYPES:
            raise TypeError(f"dtype must be float16, bfloat16, float32 or float64, got {target}")
    if target == jnp.float64 and jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:
        raise ValueError(
            "the parameters are float64 but JAX's 64-bit mode is off, so they would be silently rounded to "
            "float32; enable it (jax.config.update('jax_enable_x64', True) or `with jax.enable_x64(True):`) "
            "or pass dtype=jnp.float32"
        )
    return target


def as_numpy(value: Any, name: str) -> tuple[np.ndarray, jnp.dtype]:
    """``value`` (a numpy or JAX array, or a torch tensor) as a numpy array, and its own dtype.

    A torch tensor is read with ``.detach().cpu().numpy()`` (torch is not
    imported here: a tensor exists only if the caller imported torch). numpy
    has no bfloat16 tensor conversion, so float16/bfloat16 tensors are widened
    to float32 first (exact) and their own dtype is returned beside them.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        own = jnp.dtype(str(value.dtype).removeprefix("torch.")) if value.is_floating_point() else None
        tensor = value.detach().cpu()
        if value.is_floating_point() and value.dtype != torch.float64:
            tensor = tensor.to(torch.float32)
        array = tensor.numpy()
        return array, own if own is not None else array.dtype
    if isinstance(value, np.ndarray | jax.Array):
        array = np.asarray(value)
        return array, jnp.dtype(array.dtype)
    raise TypeError(f"{name} must be an array (numpy, JAX or a torch tensor), got {type(value).__name__}")


_KEY = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?")


def _infer_layout(keys: list[str], mode: str) -> tuple[int, bool, bool, bool]:
    """``(num_layers, bidirectional, bias, proj)`` read off torch's parameter names (checked later)."""
    parsed = [m.groups() for m in map(_KEY.fullmatch, keys) if m is not None]
    num_layers = 1 + max((int(layer) for _, layer, _ in parsed), default=0)
    bidirectional = any(reverse for _, _, reverse in parsed)
    bias = any(role.startswith("bias") for role, _, _ in parsed)
    proj = mode == "LSTM" and any(role == "weight_hr" for role, _, _ in parsed)
    return num_layers, bidirectional, bias, proj


def _load(
    state: Mapping[str, Any],
    *,
    mode: str,
    batch_first: bool,
    dropout: float,
    dtype: DTypeLike | None,
    source: str,
) -> TorchRNN:
    """The one conversion from torch's parameter names and layout to a :class:`TorchRNN`.

    ``source`` names the argument in error messages: ``"state_dict"`` (a
    parameter is ``state_dict['weight_ih_l0']``) or ``"module"`` (``module.weight_ih_l0``).
    """

    def label(key: str) -> str:
        return f"module.{key}" if source == "module" else f"{source}[{key!r}]"

    keys = list(state)
    num_layers, bidirectional, bias, proj = _infer_layout(keys, mode)
    num_directions = 2 if bidirectional else 1
    names = [
        _weight_names(layer, direction, bias=bias, proj=proj)
        for layer in range(num_layers)
        for direction in range(num_directions)
    ]
    expected = [name for per in names for name in per.values()]
    missing = [k for k in expected if k not in state]
    extra = [k for k in keys if k not in set(expected)]
    if missing or extra:
        found = f"num_layers={num_layers}, bidirectional={bidirectional}, bias={bias}"
        found += f", proj_size>0={proj}" if mode == "LSTM" else ""
        prefixed = [k for k in extra if "." in k and _KEY.fullmatch(k.rsplit(".", 1)[1])]
        hint = f"; strip the prefix from keys such as {prefixed[0]!r} first" if prefixed else ""
        raise ValueError(
            f"{source} does not hold the parameters of a torch.nn.{_TORCH_CLASS[mode]} (mode {mode!r}) "
            f"laid out as its keys say ({found}): missing {missing}, unexpected {extra}{hint}"
        )
    arrays = {}
    for key in expected:
        arrays[key] = as_numpy(state[key], label(key))
    source_dtype = arrays["weight_ih_l0"][1]
    for key, (_, own) in arrays.items():
        if own != source_dtype:
            raise TypeError(
                f"{label(key)} has dtype {own}, but {label('weight_ih_l0')} has {source_dtype}; "
                "a torch module keeps all its parameters in one dtype"
            )
    target = _target_dtype(dtype, source_dtype, label("weight_ih_l0"))

    gates = _NUM_GATES[mode]
    w_ih = arrays["weight_ih_l0"][0]
    if w_ih.ndim != 2 or w_ih.shape[0] % gates or w_ih.shape[0] == 0 or w_ih.shape[1] == 0:
        raise ValueError(
            f"{label('weight_ih_l0')} has shape {w_ih.shape}, expected [{gates}·hidden_size, input_size] "
            f"for {mode} ({gates} gate{'s' if gates > 1 else ''})"
        )
    proj_size = 0
    read_off = f"{label('weight_ih_l0')}, shape {w_ih.shape}"
    if proj:
        w_hr = arrays["weight_hr_l0"][0]
        if w_hr.ndim != 2 or w_hr.shape[0] == 0:
            raise ValueError(f"{label('weight_hr_l0')} has shape {w_hr.shape}, expected [proj_size, hidden_size]")
        proj_size = int(w_hr.shape[0])
        read_off += f", and {label('weight_hr_l0')}, shape {w_hr.shape}"
    config: dict[str, Any] = {
        "mode": mode,
        "input_size": int(w_ih.shape[1]),
        "hidden_size": int(w_ih.shape[0] // gates),
        "num_layers": num_layers,
        "bidirectional": bidirectional,
        "batch_first": batch_first,
        "bias": bias,
        "proj_size": proj_size,
        "dropout": dropout,
    }
    try:
        layout = TorchRNN(params=(), **config)
    except (TypeError, ValueError) as err:
        message = f"{source} describes an invalid torch.nn.{_TORCH_CLASS[mode]}: {err} (read off {read_off})"
        raise type(err)(message) from err

    params = []
    for layer in range(num_layers):
        shapes = layout.param_shapes(layer)
        torch_shapes = {
            "weight_ih": shapes["input_kernel"][::-1],
            "weight_hh": shapes["recurrent_kernel"][::-1],
            "bias_ih": (gates * layout.hidden_size,),
            "bias_hh": (gates * layout.hidden_size,),
        }
        if proj:
            torch_shapes["weight_hr"] = shapes["projection_kernel"][::-1]
        per_layer = []
        for direction in range(num_directions):
            w = {}
            for role, name in names[layer * num_directions + direction].items():
                array = arrays[name][0]
                if array.shape != torch_shapes[role]:
                    raise ValueError(
                        f"{label(name)} has shape {array.shape}, expected {torch_shapes[role]} for {mode} with "
                        f"input_size={layout.layer_input_size(layer)}, hidden_size={layout.hidden_size}"
                        + (f", proj_size={proj_size}" if proj_size else "")
                        + f" (read off {read_off})"
                    )
                w[role] = jnp.asarray(array).astype(target)
            p = {"input_kernel": w["weight_ih"].T, "recurrent_kernel": w["weight_hh"].T}
            zeros = jnp.zeros((gates * layout.hidden_size,), target)
            b_ih, b_hh = (w["bias_ih"], w["bias_hh"]) if bias else (zeros, zeros)
            if mode == "GRU":
                p["input_bias"], p["recurrent_bias"] = b_ih, b_hh
            else:
                p["bias"] = b_ih + b_hh
            if proj:
                p["projection_kernel"] = w["weight_hr"].T
            per_layer.append(p)
        params.append(tuple(per_layer))
    return dataclasses.replace(layout, params=tuple(params))


def from_torch(module: torch.nn.Module, *, dtype: DTypeLike | None = None, allow_subclass: bool = False) -> TorchRNN:
    """Loads a ``torch.nn.RNN``, ``torch.nn.LSTM`` or ``torch.nn.GRU`` into a :class:`TorchRNN`.

    Every configuration is supported: tanh or relu RNNs, LSTM ``proj_size``,
    any ``num_layers``, ``bidirectional``, ``batch_first``, ``bias=False``.
    The result runs the same computation as the module in eval mode
    (inter-layer dropout is an inference no-op and is not applied). The
    weights go through :func:`from_torch_state_dict`, so both give the same
    result bit for bit.

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
    # The module's own parameters, by torch's names: the same path as a state dict from disk.
    num_directions = 2 if module.bidirectional else 1
    proj = int(getattr(module, "proj_size", 0)) > 0
    names = [
        name
        for layer in range(module.num_layers)
        for direction in range(num_directions)
        for name in _weight_names(layer, direction, bias=module.bias, proj=proj).values()
    ]
    return _load(
        {name: getattr(module, name) for name in names},
        mode=module.mode,
        batch_first=bool(module.batch_first),
        dropout=float(module.dropout),
        dtype=dtype,
        source="module",
    )


def from_torch_state_dict(
    state_dict: Mapping[str, Any],
    *,
    mode: str,
    batch_first: bool = False,
    dropout: float = 0.0,
    dtype: DTypeLike | None = None,
) -> TorchRNN:
    """Loads the ``state_dict`` of a ``torch.nn.RNN``/``LSTM``/``GRU`` into a :class:`TorchRNN`; torch not needed.

    The mirror of :func:`to_torch_state_dict`, and the path :func:`from_torch`
    takes too. Values may be numpy or JAX arrays (e.g. from ``np.load`` of an
    ``.npz``) or torch tensors. ``input_size``, ``hidden_size``, ``num_layers``,
    ``bidirectional``, ``bias`` and the LSTM's ``proj_size`` are read off the
    keys and shapes; what the weights cannot tell is given here.

    Shapes (torch's, per layer ``k``; ``_reverse`` names the backward direction):
    ``weight_ih_l{k}[G·H, in]``, ``weight_hh_l{k}[G·H, H_out]``,
    ``bias_ih_l{k}``/``bias_hh_l{k}[G·H]``, ``weight_hr_l{k}[P, H]``, with
    ``G`` = 1 (RNN), 4 (LSTM), 3 (GRU) and ``in`` = ``input_size`` for ``k = 0``,
    else ``num_directions·H_out``.

    Args:
      state_dict: ``{name: array}`` in torch's naming, exactly one module's
        parameters (strip a prefix such as ``"encoder."`` first).
      mode: ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"`` (torch's
        ``module.mode``; lower case accepted).
      batch_first: the torch module's ``batch_first`` (the layout ``rnn(xs)`` expects).
      dropout: the torch module's inter-layer dropout (kept for export only).
      dtype: dtype of the recurrax parameters; default the arrays' own
        (float64 needs JAX's 64-bit mode).

    Returns:
      a :class:`TorchRNN`, as :func:`from_torch` returns.

    Example:
      >>> import numpy as np, jax.numpy as jnp, recurrax
      >>> rng = np.random.default_rng(0)
      >>> shapes = {"weight_ih_l0": (12, 3), "weight_hh_l0": (12, 4), "bias_ih_l0": (12,), "bias_hh_l0": (12,)}
      >>> state = {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}
      >>> rnn = recurrax.interop.from_torch_state_dict(state, mode="GRU", batch_first=True)
      >>> rnn.hidden_size, rnn.input_size, rnn.num_layers, rnn.bidirectional
      (4, 3, 1, False)
      >>> output, h_n = rnn(jnp.ones((2, 5, 3)))
      >>> output.shape, h_n.shape
      ((2, 5, 4), (1, 2, 4))
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of parameter names to arrays, got {type(state_dict).__name__}")
    bad = [key for key in state_dict if not isinstance(key, str)]
    if bad:
        raise TypeError(f"state_dict keys must be str (torch's parameter names), got {bad[:3]}")
    if not isinstance(mode, str) or mode.upper() not in MODES:
        raise ValueError(f"mode must be one of {MODES} (lower case accepted), got {mode!r}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first must be a bool, got {batch_first!r}")
    return _load(
        state_dict, mode=mode.upper(), batch_first=batch_first, dropout=dropout, dtype=dtype, source="state_dict"
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
