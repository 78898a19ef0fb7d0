"""Static activation scales: one fixed scale per quantized activation of each layer, calibrated from a few batches.

:func:`calibrate` runs the model as given (float or quantization-aware) on the
calibration batches with every quantized activation observed, and returns each
one's scale (:func:`~recurrax.quantize.static_scale`: its absmax, or a
percentile of ``|x|``, over ``qmax``):

* a recurrent layer's step input ``x`` (``"input"``) and the state ``h`` its
  recurrent kernel reads (``"state"``: ``h_0 … h_{T-1}``, the states the steps
  read, not the last one), over every step of every example within its length;
* an ``nnx.Linear``'s input (``"input"``), over every row.

A recurrent layer is observed through the engine's recording hook (the
layer's cell is wrapped in one that names ``x`` and ``h`` at every step), so
its padded steps are left out; the layer then runs its step loop. An
``nnx.Linear`` is observed by a stand-in module that keeps its input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import DTypeLike

from recurrax._cell import Cell, Internals
from recurrax._options import ScanOptions
from recurrax._types import Array, Carry, Params
from recurrax.cells._regularization import RegularizedCell
from recurrax.nn._quantized_linear import QuantizedLinear
from recurrax.nn._recording import recording
from recurrax.nn._rnn import RNN
from recurrax.quantize._cell import QuantizedCell
from recurrax.quantize._numerics import Format, static_scale
from recurrax.quantize._spec import Quantization

#: A module's path in ``nnx.iter_modules`` order.
Path = tuple[Any, ...]
#: Calibrated scales: for each recurrent layer and ``nnx.Linear`` (by path), ``{site: float32 scalar}``.
Scales = dict[Path, dict[str, Array]]

_SEP = "\x1f"  # between a layer's tag and a site in a record's name (no parameter or path uses it)


def reads_state(cell: Cell) -> bool:
    """Whether ``cell``'s recurrent kernel reads a state that activation quantization passes through codes."""
    return QuantizedCell(cell=_plain(cell), quantization=Quantization(activations="int8"), stored=True).sites == (
        "input",
        "state",
    )


def _plain(cell: Cell) -> Cell:
    return cell.cell if isinstance(cell, QuantizedCell) else cell


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Observed(Cell):
    """``cell`` as it is, recording its step input and the state its recurrent kernel reads under ``tag``."""

    hidden_size: int = 0  # the wrapped cell's; filled in by __post_init__
    cell: Cell
    tag: str

    def __post_init__(self) -> None:
        for name in ("hidden_size", "dtype", "param_dtype", "carry_dtype"):
            object.__setattr__(self, name, getattr(self.cell, name))
        super().__post_init__()

    def init(self, key: Array, in_features: int) -> Params:
        return self.cell.init(key, in_features)

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Carry:
        return self.cell.initial_carry(batch_shape, dtype)

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return self.cell.step(params, carry, x)

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def hoists(self, options: ScanOptions) -> bool:
        return False  # the step sees the raw input x, which is what is quantized

    def recurrent_state(self, carry: Carry) -> Array:
        return self.cell.recurrent_state(carry)

    def replace_recurrent_state(self, carry: Carry, h: Array) -> Carry:
        return self.cell.replace_recurrent_state(carry, h)

    def recorded_step(
        self, params: Params, carry: Carry, x: Array, *, projected: bool = False
    ) -> tuple[Carry, Array, Internals]:
        seen = {f"{self.tag}{_SEP}input": x, f"{self.tag}{_SEP}valid": jnp.ones((*x.shape[:-1], 1), x.dtype)}
        if reads_state(self.cell):
            seen[f"{self.tag}{_SEP}state"] = self.cell.recurrent_state(carry)
        new, y = self.cell.step(params, carry, x)
        return new, y, seen


class _ObservedLinear:
    """An ``nnx.Linear`` (or ``QuantizedLinear``) that keeps every input it is called with.

    A plain callable, not an NNX module (those live in ``recurrax.nn``): it
    stands in for the layer on a throwaway copy of the model that is only called.
    """

    def __init__(self, layer: nnx.Module) -> None:
        self.layer = layer
        self.inputs: list[np.ndarray] = []

    def __call__(self, x: Array) -> Array:
        self.inputs.append(np.asarray(x).reshape(-1, x.shape[-1]))
        return self.layer(x)  # type: ignore[no-any-return]


def _observe_cell(cell: Cell, tag: str) -> Cell:
    if isinstance(cell, RegularizedCell):
        return dataclasses.replace(cell, cell=_observe_cell(cell.cell, tag))
    return _Observed(cell=cell, tag=tag)


def _batches(data: Any) -> list[tuple[Array, Array | None]]:
    """``(inputs, lengths or None)`` for each calibration batch (see :func:`calibrate`)."""

    def one(item: Any) -> tuple[Array, Array | None] | None:
        if isinstance(item, Mapping):
            if "inputs" not in item:
                raise ValueError(f"a calibration batch given as a dict needs 'inputs', got keys {sorted(item)}")
            return jnp.asarray(item["inputs"]), None if item.get("lengths") is None else jnp.asarray(item["lengths"])
        if hasattr(item, "inputs") and not hasattr(item, "shape"):  # a task split
            lengths = getattr(item, "lengths", None)
            return jnp.asarray(item.inputs), None if lengths is None else jnp.asarray(lengths)
        if hasattr(item, "shape") and hasattr(item, "dtype"):
            return jnp.asarray(item), None
        return None

    single = one(data)
    if single is not None:
        return [single]
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        out = [one(item) for item in data]
        if out and all(b is not None for b in out):
            return out  # type: ignore[return-value]
    raise TypeError(
        "calibration_data must be an array of inputs, a dict with 'inputs' (and 'lengths'), a task split, or a "
        f"non-empty list of those, got {type(data).__name__}"
    )


def calibrate(model: nnx.Module, quantization: Quantization, data: Any, *, percentile: float = 100.0) -> Scales:
    """The static scales of every quantized activation of ``model`` on ``data`` (``model`` is left as it is).

    Args:
      model: the model to quantize (float or quantization-aware); run in the mode it is in (use ``model.eval()``).
      quantization: says the activations' format (``quantization.activations``).
      data: calibration batches: ``inputs[B, T, D]``, ``{"inputs": ..., "lengths": ...}``, a task split, or a
        list of those; each is called as ``model(inputs)`` or ``model(inputs, lengths=lengths)``.
      percentile: of ``|x|`` per activation, over all batches (100: the absmax).

    Returns:
      ``{module path: {"input": s_x, "state": s_h}}`` for the recurrent layers (``"state"`` where a
      recurrent kernel reads one) and ``{module path: {"input": s_x}}`` for the ``nnx.Linear`` layers.
    """
    fmt: Format | None = quantization.activations
    if fmt is None:
        raise ValueError("calibration_data is for activation quantization, but quantization.activations is None")
    batches = _batches(data)
    copy = nnx.merge(*nnx.split(model))
    tags: dict[str, Path] = {}
    linears: dict[Path, _ObservedLinear] = {}
    for path, module in list(nnx.iter_modules(copy)):
        if isinstance(module, RNN):
            tag = "/".join(map(str, path)) or "."
            tags[tag] = path
            module.cell = _observe_cell(module.cell, tag)
        for name, value in list(vars(module).items()):
            if isinstance(value, (nnx.Linear, QuantizedLinear)):
                linears[(*path, name)] = observed = _ObservedLinear(value)
                setattr(module, name, observed)
            elif isinstance(value, nnx.List):
                for i, item in enumerate(value):
                    if isinstance(item, (nnx.Linear, QuantizedLinear)):
                        linears[(*path, name, i)] = observed = _ObservedLinear(item)
                        value[i] = observed
    seen: dict[str, list[np.ndarray]] = {}
    for inputs, lengths in batches:
        with recording() as records:
            copy(inputs) if lengths is None else copy(inputs, lengths=lengths)
        for record in records:
            for name, values in record.items():
                tag, _, site = name.rpartition(_SEP)
                if tag not in tags or site == "valid":
                    continue
                valid = np.asarray(record[f"{tag}{_SEP}valid"])[..., 0] > 0
                seen.setdefault(name, []).append(np.asarray(values)[valid])
    scales: Scales = {}
    for tag, path in tags.items():
        sites = {}
        for site in ("input", "state"):
            if f"{tag}{_SEP}{site}" in seen:
                gathered = np.concatenate(seen[f"{tag}{_SEP}{site}"])
                sites[site] = static_scale(gathered, fmt, percentile)
        if not sites:
            raise ValueError(
                f"the recurrent layer at {tag} was not run on the calibration data (or its cell wrapper does not "
                "record its steps): no static scales for it"
            )
        scales[path] = sites
    for path, observed in linears.items():
        if observed.inputs:
            scales[path] = {"input": static_scale(np.concatenate(observed.inputs), fmt, percentile)}
    return scales


def placeholder_scales(sites: Iterable[str]) -> dict[str, Array]:
    """Scale 1 for each site: a stored model's structure before its scales are calibrated or restored."""
    return {site: jnp.ones((), jnp.float32) for site in sites}
