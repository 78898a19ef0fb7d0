"""A PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` stack, run by recurrax's scan engine.

Shapes (PyTorch's names): ``B`` batch, ``T`` time, ``D`` input features,
``H`` hidden units, ``P`` LSTM projection (``proj_size``), ``H_out`` = ``P``
when the LSTM projects, else ``H``; ``L`` layers, ``N`` directions (1 or 2).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from recurrax._scan import scan
from recurrax.cells import Cell, LSTMCarry, Params, gru, lstm, simple_rnn

Mode = Literal["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]
MODES: tuple[str, ...] = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")
_NUM_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}
_FLOAT_DTYPES = tuple(jnp.dtype(d) for d in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TorchRNN:
    """A multi-layer, optionally bidirectional RNN/LSTM/GRU that computes what PyTorch computes.

    Made by :func:`~recurrax.interop.from_torch`; written back by
    :func:`~recurrax.interop.to_torch`. The configuration fields mirror the
    torch module's constructor arguments. It is a JAX pytree whose only leaves
    are ``params``, so it passes through ``jax.jit`` and ``jax.grad`` and can be
    updated with ``jax.tree.map`` or ``dataclasses.replace(rnn, params=...)``.

    Attributes:
      mode: PyTorch's mode string: ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``.
      params: ``params[layer][direction]``, each the parameter dict of :attr:`cell`
        (direction 1 is the backward one). Kernels are ``[in, G·H]`` (the
        transpose of torch's ``weight_*``), gates in PyTorch's order.
      input_size, hidden_size, num_layers, bidirectional, batch_first, bias:
        as in PyTorch.
      proj_size: the LSTM's projection size; 0 means none (PyTorch's convention).
      dropout: the torch module's inter-layer dropout, kept for export only;
        :meth:`apply` is the inference computation and does not drop.
    """

    mode: Mode
    params: tuple[tuple[Params, ...], ...]
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    proj_size: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("input_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("bidirectional", "batch_first", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        proj = self.proj_size
        if not isinstance(proj, int) or isinstance(proj, bool) or proj < 0:
            raise ValueError(f"proj_size must be a non-negative int, got {proj!r}")
        if proj and self.mode != "LSTM":
            raise ValueError(f"proj_size is only supported for mode='LSTM', got proj_size={proj} with {self.mode!r}")
        if proj >= self.hidden_size:
            raise ValueError(f"proj_size must be smaller than hidden_size={self.hidden_size}, got {proj}")
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"dropout must be a number in [0, 1], got {self.dropout!r}")

    # ------------------------------------------------------------- derived
    @property
    def num_directions(self) -> int:
        """``N``: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """``H_out``: features of each direction's output (``proj_size`` or ``hidden_size``)."""
        return self.proj_size or self.hidden_size

    @property
    def dtype(self) -> jnp.dtype:
        """The dtype of the parameters (and of the inputs and outputs)."""
        dtype: np.dtype[Any] = np.dtype(self.params[0][0]["input_kernel"].dtype)
        return dtype

    @property
    def cell(self) -> Cell:
        """The recurrax cell that every layer and direction runs."""
        dt = self.dtype
        if self.mode == "LSTM":
            return lstm(self.hidden_size, proj_size=self.proj_size or None, param_dtype=dt)
        if self.mode == "GRU":
            return gru(self.hidden_size, reset_after=True, param_dtype=dt)
        activation = "relu" if self.mode == "RNN_RELU" else "tanh"
        return simple_rnn(self.hidden_size, activation=activation, param_dtype=dt)

    def layer_input_size(self, layer: int) -> int:
        """Input features of ``layer``: ``input_size``, then ``N·H_out`` for deeper layers."""
        return self.input_size if layer == 0 else self.num_directions * self.output_size

    def param_shapes(self, layer: int) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter of one direction of ``layer``."""
        H, P, G = self.hidden_size, self.output_size, _NUM_GATES[self.mode]
        shapes: dict[str, tuple[int, ...]] = {
            "input_kernel": (self.layer_input_size(layer), G * H),
            "recurrent_kernel": (P, G * H),
        }
        if self.mode == "GRU":
            shapes["input_bias"] = (G * H,)
            shapes["recurrent_bias"] = (G * H,)
        else:
            shapes["bias"] = (G * H,)
        if self.proj_size:
            shapes["projection_kernel"] = (H, P)
        return shapes

    def check_params(self) -> None:
        """Raises a ValueError/TypeError naming the first parameter of a wrong layout, shape or dtype."""
        params = self.params
        if not isinstance(params, tuple | list) or len(params) != self.num_layers:
            raise ValueError(
                f"params must be a tuple of num_layers={self.num_layers} per-layer tuples, got "
                f"{type(params).__name__} of length {len(params) if isinstance(params, tuple | list) else 'n/a'}"
            )
        dtype = None
        for layer, per_layer in enumerate(params):
            if not isinstance(per_layer, tuple | list) or len(per_layer) != self.num_directions:
                raise ValueError(
                    f"params[{layer}] must be a tuple of {self.num_directions} direction dicts "
                    f"(bidirectional={self.bidirectional}), got {type(per_layer).__name__} "
                    f"of length {len(per_layer) if isinstance(per_layer, tuple | list) else 'n/a'}"
                )
            expected = self.param_shapes(layer)
            for direction, p in enumerate(per_layer):
                where = f"params[{layer}][{direction}]"
                if not isinstance(p, dict) or set(p) != set(expected):
                    got = sorted(p) if isinstance(p, dict) else type(p).__name__
                    raise ValueError(f"{where} must be a dict with keys {sorted(expected)} ({self.mode}), got {got}")
                for key, want in expected.items():
                    got_shape = tuple(np.shape(p[key]))
                    if got_shape != want:
                        raise ValueError(
                            f"{where}[{key!r}] has shape {got_shape}, expected {want} for {self.mode} with "
                            f"input_size={self.layer_input_size(layer)}, hidden_size={self.hidden_size}"
                            + (f", proj_size={self.proj_size}" if self.proj_size else "")
                        )
                    got_dtype = jnp.result_type(p[key])
                    if got_dtype not in _FLOAT_DTYPES:
                        raise TypeError(f"{where}[{key!r}] must be float16/bfloat16/float32/float64, got {got_dtype}")
                    if dtype is not None and got_dtype != dtype:
                        raise TypeError(f"{where}[{key!r}] has dtype {got_dtype}, but other parameters are {dtype}")
                    dtype = got_dtype

    # ------------------------------------------------------------------ run
    def apply(
        self, xs: Any, *, lengths: Any | None = None, initial_state: Any | None = None
    ) -> tuple[jax.Array, jax.Array] | tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """Runs the stack as ``torch_module(xs, hx)`` does in eval mode.

        Shapes:
          xs: ``[B, T, D]`` with ``batch_first``, else ``[T, B, D]``; or ``[T, D]`` unbatched.
          lengths: ``[B]`` integers in ``[1, T]``: like a ``PackedSequence`` made with
            ``pack_padded_sequence(..., enforce_sorted=False)`` and unpacked with
            ``pad_packed_sequence(..., total_length=T)``: outputs past an example's
            length are zero and its final state is the one at its own end (for the
            backward direction, after its first step).
          initial_state: ``h_0[L·N, B, H_out]`` for RNN/GRU, ``(h_0, c_0[L·N, B, H])``
            for LSTM (no ``B`` when unbatched); default zeros. Same dtype as the parameters.
          returns: ``output`` ``[B, T, N·H_out]`` (``[T, B, N·H_out]``) and ``h_n[L·N, B, H_out]``,
            or for LSTM ``(output, (h_n, c_n[L·N, B, H]))``. Final states are ordered
            ``layer·N + direction``, as in PyTorch.
        """
        self.check_params()
        dtype = self.dtype
        xs = jnp.asarray(xs) if isinstance(xs, np.ndarray | jax.Array) else _as_float_array(xs, "xs")
        layout = "[B, T, D] (batch_first=True)" if self.batch_first else "[T, B, D] (batch_first=False)"
        if xs.ndim not in (2, 3):
            raise ValueError(f"xs must have shape {layout} or [T, D] (unbatched), got shape {tuple(xs.shape)}")
        if xs.dtype != dtype:
            raise TypeError(
                f"xs has dtype {xs.dtype}, but the parameters are {dtype}; cast it (xs.astype(jnp.{dtype.name})) "
                "as PyTorch requires the input to match the module's dtype"
            )
        if xs.shape[-1] != self.input_size:
            raise ValueError(
                f"xs has {xs.shape[-1]} features (shape {tuple(xs.shape)}, layout {layout}), "
                f"expected input_size={self.input_size}"
            )
        unbatched = xs.ndim == 2
        batch_shape: tuple[int, ...] = () if unbatched else (xs.shape[0 if self.batch_first else 1],)
        # An unbatched [T, D] is the same array in both layouts.
        time_major = not self.batch_first and not unbatched
        carries = self._initial_carries(initial_state, batch_shape)

        cell = self.cell
        layer_input = xs
        finals = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                ys, final = scan(
                    cell,
                    self.params[layer][direction],
                    layer_input,
                    initial_carry=carries[layer * self.num_directions + direction],
                    lengths=lengths,
                    reverse=direction == 1,
                    time_major=time_major,
                )
                outputs.append(ys)
                finals.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)

        # PyTorch returns states in the module's dtype (the carry may be wider for bf16/f16).
        if self.mode == "LSTM":
            h_n = jnp.stack([c.h for c in finals]).astype(dtype)
            c_n = jnp.stack([c.c for c in finals]).astype(dtype)
            return layer_input, (h_n, c_n)
        return layer_input, jnp.stack(finals).astype(dtype)

    __call__ = apply

    def _initial_carries(self, initial_state: Any, batch_shape: tuple[int, ...]) -> list[Any]:
        """Splits torch's stacked ``h_0`` (and ``c_0``) into one carry per layer and direction."""
        count = self.num_layers * self.num_directions
        if initial_state is None:
            return [None] * count
        cell = self.cell
        state_dtype = cell.state_dtype()
        if self.mode == "LSTM":
            if not isinstance(initial_state, tuple | list) or len(initial_state) != 2:
                raise TypeError(
                    f"initial_state for an LSTM must be a pair (h_0, c_0), got {type(initial_state).__name__}"
                )
            h0 = self._check_state(initial_state[0], "initial_state[0] (h_0)", batch_shape, self.output_size)
            c0 = self._check_state(initial_state[1], "initial_state[1] (c_0)", batch_shape, self.hidden_size)
            return [LSTMCarry(h=h0[i].astype(state_dtype), c=c0[i].astype(state_dtype)) for i in range(count)]
        h0 = self._check_state(initial_state, "initial_state (h_0)", batch_shape, self.hidden_size)
        return [h0[i].astype(state_dtype) for i in range(count)]

    def _check_state(self, value: Any, name: str, batch_shape: tuple[int, ...], features: int) -> jax.Array:
        state = jnp.asarray(value) if isinstance(value, np.ndarray | jax.Array) else _as_float_array(value, name)
        want = (self.num_layers * self.num_directions, *batch_shape, features)
        if tuple(state.shape) != want:
            raise ValueError(
                f"{name} must have shape [num_layers·num_directions, {'B, ' if batch_shape else ''}features] = "
                f"{want}, got {tuple(state.shape)}"
            )
        if state.dtype != self.dtype:
            raise TypeError(f"{name} has dtype {state.dtype}, but the parameters are {self.dtype}")
        return state


def _as_float_array(value: Any, name: str) -> jax.Array:
    try:
        array = np.asarray(value)
    except Exception as err:  # every conversion failure is the same user error
        raise TypeError(f"{name} must be an array, got {type(value).__name__}") from err
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{name} must be a floating array, got dtype {array.dtype} ({type(value).__name__})")
    return jnp.asarray(array)


jax.tree_util.register_dataclass(
    TorchRNN,
    data_fields=["params"],
    meta_fields=[
        "mode",
        "input_size",
        "hidden_size",
        "num_layers",
        "bidirectional",
        "batch_first",
        "bias",
        "proj_size",
        "dropout",
    ],
)
