"""Quantization: int8/fp8 weights (and optionally activations) for quantization-aware training and inference."""

from recurrax.nn._quantized_linear import QuantizedLinear
from recurrax.nn._static_quantized_linear import StaticQuantizedLinear
from recurrax.quantize._block import QuantizedBlock
from recurrax.quantize._cell import QuantizedCell, QuantizedLinearCell, quantization_aware, quantized
from recurrax.quantize._checkpoint import quantization_of, restore_quantized, save_quantized
from recurrax.quantize._model import parameter_bytes, quantization_aware_model, quantize
from recurrax.quantize._numerics import (
    FORMATS,
    QuantizedArray,
    dequantize,
    fake_quantize,
    fake_quantize_rows,
    quantize_array,
    row_scale,
    static_scale,
    weight_scale,
)
from recurrax.quantize._params import ScaledKernel, float_params, materialize, quantize_params
from recurrax.quantize._spec import Quantization

__all__ = [
    "FORMATS",
    "Quantization",
    "QuantizedArray",
    "QuantizedBlock",
    "QuantizedCell",
    "QuantizedLinear",
    "QuantizedLinearCell",
    "ScaledKernel",
    "StaticQuantizedLinear",
    "dequantize",
    "fake_quantize",
    "fake_quantize_rows",
    "float_params",
    "materialize",
    "parameter_bytes",
    "quantization_aware",
    "quantization_aware_model",
    "quantization_of",
    "quantize",
    "quantize_array",
    "quantize_params",
    "quantized",
    "restore_quantized",
    "row_scale",
    "save_quantized",
    "static_scale",
    "weight_scale",
]
