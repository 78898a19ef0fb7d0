"""Quantizing a whole Flax NNX model: :func:`quantization_aware_model` (QAT, in place) and :func:`quantize` (PTQ).

One walk over the module graph, whatever built the model: every
``recurrax.nn.RNN`` gets a :class:`~recurrax.quantize.QuantizedCell` (inside
its recurrent dropout / zoneout wrappers, if any), every block module
(attention, Transformer, residual recurrent stack, TCN) a
:class:`~recurrax.quantize.QuantizedBlock`, and every ``nnx.Linear`` a
:class:`QuantizedLinear`; their parameters change form with them. The
model's call signature does not change. With static activation scales
(``quantize(model, ..., calibration_data=...)``) each recurrent layer keeps its
calibrated scales in its parameters and each ``nnx.Linear`` becomes a
:class:`~recurrax.quantize.StaticQuantizedLinear`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

from recurrax._cell import Cell
from recurrax._types import Params
from recurrax.cells._regularization import RegularizedCell
from recurrax.nn._module import BlockModule, values
from recurrax.nn._quantized_linear import QuantizedLinear
from recurrax.nn._rnn import RNN
from recurrax.nn._static_quantized_linear import StaticQuantizedLinear
from recurrax.quantize._block import QuantizedBlock
from recurrax.quantize._calibrate import Scales, calibrate, placeholder_scales
from recurrax.quantize._cell import ACTIVATION_SCALE, QuantizedCell, wrap
from recurrax.quantize._params import float_params, quantize_params, with_learned_scales
from recurrax.quantize._spec import Quantization, as_quantization

M = TypeVar("M", bound=nnx.Module)


# One compiled program per parameter tree instead of a dozen small eager ones per kernel shape.
@functools.partial(jax.jit, static_argnames=("quantization", "stored"))
def _converted(params: Params, quantization: Quantization, *, stored: bool) -> Params:
    """``params`` (any of the three forms) in the form asked for."""
    if stored:
        return quantize_params(params, quantization)
    plain = float_params(params)
    return with_learned_scales(plain, quantization) if quantization.scales == "learned" else plain


def _linear(
    linear: nnx.Linear | QuantizedLinear, quantization: Quantization, stored: bool, scales: Scales | None, path: Any
) -> QuantizedLinear:
    """The layer ``linear`` computes, its kernel in the form asked for (and its static input scale)."""
    kernel = _converted({"kernel": values(linear.kernel)}, quantization, stored=stored)["kernel"]
    bias = None if linear.bias is None else linear.bias[...]
    if stored and quantization.static_activations:
        scale = _calibrated(scales, path, ("input",), "nnx.Linear")["input"]
        return StaticQuantizedLinear(kernel, bias, quantization, scale, dtype=linear.dtype)
    return QuantizedLinear(kernel, bias, quantization, dtype=linear.dtype)


def _calibrated(scales: Scales | None, path: Any, sites: tuple[str, ...], kind: str) -> dict[str, Any]:
    """The calibrated scales of the layer at ``path`` (placeholders of 1 when there is no calibration)."""
    if scales is None:
        return placeholder_scales(sites)
    found = scales.get(tuple(path))
    if found is None or set(found) != set(sites):
        raise ValueError(
            f"no static scales for the {kind} at {'/'.join(map(str, path))} (sites {list(sites)}): the calibration "
            f"data did not run it (found {sorted(found) if found else None})"
        )
    return found


def _wrap_cell(cell: Cell, quantization: Quantization, stored: bool) -> Cell:
    """``cell`` with its innermost cell quantized (regularisation wrappers stay outside, as ``nn.RNN`` expects)."""
    if isinstance(cell, RegularizedCell):
        return dataclasses.replace(cell, cell=_wrap_cell(cell.cell, quantization, stored))
    return wrap(cell, quantization, stored=stored)


def _set_params(module: Any, params: Params) -> None:
    module.params = nnx.data(jax.tree.map(nnx.Param, params))


def _convert(model: nnx.Module, quantization: Quantization, *, stored: bool, scales: Scales | None = None) -> None:
    """Converts ``model`` in place; ``scales``: calibrated static activation scales by module path."""
    for path, module in list(nnx.iter_modules(model)):
        if isinstance(module, RNN):
            module.cell = _wrap_cell(module.cell, quantization, stored)
            params = dict(module.pure_params())
            params.pop(ACTIVATION_SCALE, None)  # re-quantizing a statically quantized model: scales anew
            params = dict(_converted(params, quantization, stored=stored))
            cell = module._base_cell
            if stored and quantization.static_activations and isinstance(cell, QuantizedCell):
                params[ACTIVATION_SCALE] = _calibrated(scales, path, cell.sites, "recurrent layer")
            _set_params(module, params)
        elif isinstance(module, BlockModule):
            spec = module.spec.block if isinstance(module.spec, QuantizedBlock) else module.spec
            module.spec = QuantizedBlock(spec, quantization, stored)
            _set_params(module, _converted(module.pure_params(), quantization, stored=stored))
        if not quantization.quantizes("kernel", 2):
            continue
        for name, value in list(vars(module).items()):
            if isinstance(value, (nnx.Linear, QuantizedLinear)):
                setattr(module, name, _linear(value, quantization, stored, scales, (*path, name)))
            elif isinstance(value, nnx.List):
                for i, item in enumerate(value):
                    if isinstance(item, (nnx.Linear, QuantizedLinear)):
                        value[i] = _linear(item, quantization, stored, scales, (*path, name, i))


def quantization_aware_model(model: M, quantization: Quantization | str | None = None) -> M:
    """Makes ``model`` train with quantized kernels (in place) and returns it.

    Every recurrent layer's cell, block and ``nnx.Linear`` of ``model`` sees
    its kernels fake-quantized (:func:`~recurrax.quantize.fake_quantize`:
    ``dequantize(quantize(w))`` forward, straight-through gradients), and with
    ``activations`` their matmul inputs too. The float weights stay the
    parameters the optimizer updates and checkpoints hold (plus a scale per
    kernel with ``scales="learned"``). Afterwards :func:`quantize` stores the
    trained model as codes.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax.models import SequenceClassifier
      >>> from recurrax.quantize import quantization_aware_model
      >>> model = SequenceClassifier(3, 4, cell="gru", hidden_size=8, rngs=nnx.Rngs(0))
      >>> model = quantization_aware_model(model, "int8")
      >>> model(jnp.ones((2, 5, 3))).shape
      (2, 4)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    spec = as_quantization(quantization)
    if spec.static_activations:
        raise ValueError(
            "quantization-aware training quantizes activations with dynamic scales; static ones are calibrated "
            "after training: quantize(model, ..., calibration_data=...)"
        )
    _convert(model, spec, stored=False)
    return model


def quantize(
    model: M,
    quantization: Quantization | str | None = None,
    *,
    calibration_data: Any = None,
    percentile: float = 100.0,
) -> M:
    """A copy of ``model`` with its kernels stored as int8 (or fp8) codes and per-channel scales.

    Post-training quantization: each kernel of the recurrent layers, blocks and
    ``nnx.Linear`` layers becomes a :class:`~recurrax.quantize.QuantizedArray`
    (its output channels' absmax scales, or the scales a ``scales="learned"``
    quantization-aware model learned). The copy is called exactly as
    ``model`` is; it dequantizes the codes (``codes · scale``) before each
    matmul, and with ``activations`` passes the matmul inputs through codes of
    their own: per example row and step (dynamic), or, given
    ``calibration_data``, at fixed scales calibrated on it (static: one per
    quantized activation of each layer, stored with the model and its
    checkpoint). ``model`` is left unchanged.

    Args:
      model: a float or quantization-aware model.
      quantization: a :class:`~recurrax.quantize.Quantization`, or ``"int8"`` /
        ``"fp8"`` for weight-only (the default: int8 weight-only).
      calibration_data: a few batches to calibrate static activation scales on
        (``inputs[B, T, D]``, ``{"inputs", "lengths"}``, a task split, or a list
        of those; the model runs on them as it is, so call ``model.eval()``
        first); the copy's quantization then has ``activation_scales="static"``.
        Needs ``quantization.activations``.
      percentile: the static scales' edge: this percentile of ``|x|`` over the
        calibration data (100, the default: its absmax; nothing seen there clips).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax.models import SequenceClassifier
      >>> from recurrax.quantize import quantize, parameter_bytes
      >>> model = SequenceClassifier(3, 4, cell="lstm", hidden_size=16, dense_size=None, rngs=nnx.Rngs(0))
      >>> small = quantize(model, "int8")
      >>> xs = jnp.ones((2, 5, 3))
      >>> bool(jnp.allclose(small(xs), model(xs), atol=0.05)), parameter_bytes(model), parameter_bytes(small)
      (True, 5392, 2080)
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    spec = as_quantization(quantization)
    scales = None
    if calibration_data is not None:
        if spec.activations is None:
            raise ValueError(
                "calibration_data calibrates static activation scales, but the quantization is weight-only "
                f"(activations=None): {spec}"
            )
        spec = dataclasses.replace(spec, activation_scales="static")
        scales = calibrate(model, spec, calibration_data, percentile=percentile)
    elif spec.static_activations:
        raise ValueError("activation_scales='static' needs calibration_data=... (a few batches of inputs)")
    return stored_copy(model, spec, scales)


def stored_copy(model: M, quantization: Quantization, scales: Scales | None) -> M:
    """``model`` quantized as stored codes; static activation scales from ``scales`` (None: placeholders of 1,
    which :func:`~recurrax.quantize.restore_quantized` overwrites with the saved ones)."""
    copy = nnx.merge(*nnx.split(model))
    _convert(copy, quantization, stored=True, scales=scales)
    return copy


def parameter_bytes(model: nnx.Module) -> int:
    """Bytes of ``model``'s parameters (``nnx.Param`` leaves: codes, scales and float weights alike)."""
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    return sum(int(leaf.size) * jnp.dtype(leaf.dtype).itemsize for leaf in leaves)
