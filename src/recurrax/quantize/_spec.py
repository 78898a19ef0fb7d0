"""``Quantization``: what a quantized cell, block or model quantizes, and how (one frozen description)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from recurrax.quantize._numerics import Format, check_format

Scales = Literal["absmax", "learned"]
SCALES: tuple[Scales, ...] = ("absmax", "learned")
ActivationScales = Literal["dynamic", "static"]
ACTIVATION_SCALES: tuple[ActivationScales, ...] = ("dynamic", "static")


@dataclasses.dataclass(frozen=True)
class Quantization:
    """What to quantize and how: weights always, activations optionally.

    Attributes:
      weights: the weights' format, ``"int8"`` (default) or ``"fp8"`` (e4m3).
      activations: ``None`` (weight-only, the default) or the format of the
        matmul inputs: a cell's step input ``x`` and the recurrent state ``h``
        its recurrent kernel reads, and the inputs of the ``nnx.Linear``
        layers (a block's internal activations stay float).
      activation_scales: how the activations' scales are found: ``"dynamic"``
        (default; per step, per example row, each row's own absmax) or
        ``"static"`` (one fixed scale per quantized tensor of each layer,
        calibrated from a few batches by ``quantize(model, ...,
        calibration_data=...)`` and stored with the model; values beyond it
        clip). Static scales are for a stored model, not for training.
      scales: the weights' scales in quantization-aware training: ``"absmax"``
        (each output channel's ``max|w| / qmax``, recomputed from the
        weights at every call, nothing clips) or ``"learned"`` (a parameter
        per output channel, its logarithm, started at absmax and trained with
        LSQ's gradient).
        Post-training quantization takes the learned ones when present.
      targets: the parameter names to quantize; ``None`` (default): every
        leaf of two or more dimensions whose name ends in ``kernel`` (the
        input, recurrent and projection kernels of the cells, the Dense and
        attention kernels of the blocks). Biases, norms, peepholes and the
        elementwise recurrent weights of IndRNN/LRU stay float, and so do the
        LRU's ``B_re``, ``B_im``, ``C_re``, ``C_im`` unless named here. Only
        real floating leaves are quantized.

    Example:
      >>> from recurrax.quantize import Quantization
      >>> Quantization("int8", activations="int8").to_dict()
      {'weights': 'int8', 'activations': 'int8', 'scales': 'absmax', 'targets': None, 'activation_scales': 'dynamic'}
    """

    weights: Format = "int8"
    activations: Format | None = None
    scales: Scales = "absmax"
    targets: tuple[str, ...] | None = None
    activation_scales: ActivationScales = "dynamic"

    def __post_init__(self) -> None:
        check_format(self.weights, "weights")
        if self.activations is not None:
            check_format(self.activations, "activations")
        if self.scales not in SCALES:
            raise ValueError(f"scales must be one of {SCALES}, got {self.scales!r}")
        if self.activation_scales not in ACTIVATION_SCALES:
            raise ValueError(f"activation_scales must be one of {ACTIVATION_SCALES}, got {self.activation_scales!r}")
        if self.activation_scales == "static" and self.activations is None:
            raise ValueError("activation_scales='static' needs activations='int8' or 'fp8', got activations=None")
        if self.targets is not None:
            if isinstance(self.targets, str) or not all(isinstance(t, str) for t in self.targets):
                raise TypeError(f"targets must be a tuple of parameter names or None, got {self.targets!r}")
            object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def static_activations(self) -> bool:
        """Whether the activations have fixed, calibrated scales (``activation_scales="static"``)."""
        return self.activation_scales == "static"

    def quantizes(self, name: str, ndim: int) -> bool:
        """Whether the parameter leaf called ``name`` with ``ndim`` dimensions is quantized."""
        if self.targets is not None:
            return name in self.targets
        return name.endswith("kernel") and ndim >= 2

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what a run folder records); :meth:`from_dict` reads it back."""
        out = dataclasses.asdict(self)
        out["targets"] = None if self.targets is None else list(self.targets)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quantization:
        """The description :meth:`to_dict` wrote (a record without ``activation_scales`` is dynamic)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a quantization record must be a dict, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown quantization settings {sorted(unknown)}")
        targets = data.get("targets")
        return cls(**{**data, "targets": None if targets is None else tuple(targets)})


def as_quantization(value: Quantization | str | None, name: str = "quantization") -> Quantization:
    """A :class:`Quantization` from itself, a format name (``"int8"``, ``"fp8"``: weight-only) or None (int8)."""
    if value is None:
        return Quantization()
    if isinstance(value, Quantization):
        return value
    if isinstance(value, str):
        return Quantization(check_format(value, name))
    raise TypeError(f"{name} must be a recurrax.quantize.Quantization or 'int8'/'fp8', got {type(value).__name__}")
