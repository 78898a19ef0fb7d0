"""``QuantizedBlock``: a pure block description (attention, Transformer, residual recurrent block, convolution)
whose calls see quantized kernels.

A block is called as ``block.apply(params, ...)`` (and ``decode`` /
``init_cache`` for the decoding blocks); this wrapper hands those calls the
float parameters :func:`~recurrax.quantize.materialize` makes (fake-quantized
for training, dequantized when stored) and passes every other attribute
through, so an ``nn`` module holding it works unchanged. It knows no concrete
block: the kernels are chosen by name (:meth:`Quantization.quantizes`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from recurrax._types import Params
from recurrax.quantize._params import materialize, quantize_params, with_learned_scales
from recurrax.quantize._spec import Quantization


@dataclasses.dataclass(frozen=True)
class QuantizedBlock:
    """A block description with quantized kernels; other attributes are the wrapped block's.

    Attributes:
      block: the wrapped pure block (``recurrax.attention.MultiHeadAttention``,
        ``TransformerEncoder``, ``recurrax.RecurrentStack``, ``recurrax.conv.TCN`` …).
      quantization: what is quantized (weights only: the block's Dense inputs stay float).
      stored: the parameters hold codes (``QuantizedArray``) rather than float weights.
    """

    block: Any
    quantization: Quantization = dataclasses.field(default_factory=Quantization)
    stored: bool = False

    def __getattr__(self, name: str) -> Any:
        if name in ("block", "quantization", "stored") or name.startswith("__"):
            raise AttributeError(name)  # not yet set (while copying): no recursion into __getattr__
        return getattr(self.block, name)

    def init(self, *args: Any, **kwargs: Any) -> Params:
        """The wrapped block's ``init``, in this wrapper's parameter form."""
        params = self.block.init(*args, **kwargs)
        if self.stored:
            return quantize_params(params, self.quantization)
        if self.quantization.scales == "learned":
            return with_learned_scales(params, self.quantization)
        return params

    def apply(self, params: Params, *args: Any, **kwargs: Any) -> Any:
        """The wrapped block's ``apply`` with quantized kernels."""
        return self.block.apply(materialize(params, self.quantization), *args, **kwargs)

    def decode(self, params: Params, *args: Any, **kwargs: Any) -> Any:
        """The wrapped block's ``decode`` (one step with a cache) with quantized kernels."""
        return self.block.decode(materialize(params, self.quantization), *args, **kwargs)

    def init_cache(self, params: Params, *args: Any, **kwargs: Any) -> Any:
        """The wrapped block's ``init_cache``."""
        return self.block.init_cache(materialize(params, self.quantization), *args, **kwargs)
