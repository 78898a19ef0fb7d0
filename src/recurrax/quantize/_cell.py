"""``QuantizedCell``: any cell with its kernels quantized, for quantization-aware training or as stored codes.

The wrapper knows no concrete cell. It turns its parameters into the float
ones the wrapped cell takes (:func:`~recurrax.quantize.materialize`: fake
quantization in training, ``codes · scale`` when stored) and delegates every
method to the wrapped cell, so the engine hoists the input projection, takes
the wrapped cell's fused whole-sequence path and records its internals as it
would for the plain cell. With activation quantization the step input ``x``
and the recurrent state that the recurrent kernel reads (through the cell
contract: :meth:`~recurrax.Cell.step_reading`) go through int8/fp8 codes at
every step; the fused paths cannot take that, so those cells run the step loop.
The activations' scales are each row's own absmax at every step ("dynamic"),
or fixed ones ("static": calibrated by ``quantize(model, ...,
calibration_data=...)``), which a stored cell keeps in its parameters under
:data:`ACTIVATION_SCALE`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Cell, Internals, Mix, Steps
from recurrax._linear_cell import LinearCell, LinearTerms
from recurrax._options import ScanOptions
from recurrax._types import Array, Carry, Params
from recurrax.quantize._numerics import fake_quantize, fake_quantize_rows
from recurrax.quantize._params import materialize, quantize_params, with_learned_scales
from recurrax.quantize._spec import Quantization, as_quantization

#: Where a cell with static activation scales keeps them in its parameters:
#: ``params[ACTIVATION_SCALE] = {"input": s_x, "state": s_h}`` (float32 scalars; ``"state"`` only for a cell
#: whose recurrent kernel reads a state).
ACTIVATION_SCALE = "activation_scale"


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizedCell(Cell):
    """A cell whose kernels (and optionally matmul inputs) are quantized: :func:`quantization_aware`, :func:`quantized`.

    ``hidden_size`` and the dtypes mirror the wrapped cell's (filled in from it).

    Attributes:
      cell: the wrapped cell.
      quantization: what is quantized and how (:class:`~recurrax.quantize.Quantization`).
      stored: the parameters hold the codes (``QuantizedArray`` leaves, what
        :func:`~recurrax.quantize.quantize_params` makes) rather than float
        weights that are fake-quantized at every call.
    """

    hidden_size: int = 0  # the wrapped cell's; filled in by __post_init__
    cell: Cell
    quantization: Quantization = dataclasses.field(default_factory=Quantization)
    stored: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.cell, Cell):
            raise TypeError(f"cell must be a recurrax Cell, got {type(self.cell).__name__}")
        if not isinstance(self.quantization, Quantization):
            raise TypeError(
                f"quantization must be a recurrax.quantize.Quantization, got {type(self.quantization).__name__}"
            )
        if self.quantization.static_activations and not self.stored:
            raise ValueError(
                "static activation scales are calibrated for a stored model (quantize(model, ..., "
                "calibration_data=...)); quantization-aware training uses activation_scales='dynamic'"
            )
        for name in ("hidden_size", "dtype", "param_dtype", "carry_dtype"):
            object.__setattr__(self, name, getattr(self.cell, name))
        super().__post_init__()

    # ------------------------------------------------------------ parameters
    def init(self, key: Array, in_features: int) -> Params:
        params = self.cell.init(key, in_features)
        if self.stored:
            params = quantize_params(params, self.quantization)
            if self.quantization.static_activations:  # placeholders until calibrated (or restored)
                params = {**params, ACTIVATION_SCALE: {site: jnp.ones((), jnp.float32) for site in self.sites}}
            return params
        if self.quantization.scales == "learned":
            return with_learned_scales(params, self.quantization)
        return params

    @property
    def sites(self) -> tuple[str, ...]:
        """The activations quantized at every step: ``"input"`` (``x``), and ``"state"`` where a recurrent
        kernel reads one; ``()`` without activation quantization."""
        if self.quantization.activations is None:
            return ()
        return ("input", "state") if self._reads_quantized_state() else ("input",)

    def float_params(self, params: Params) -> Params:
        """The wrapped cell's parameters: fake-quantized (training) or dequantized (stored) weights."""
        if isinstance(params, Mapping) and ACTIVATION_SCALE in params:
            params = {k: v for k, v in params.items() if k != ACTIVATION_SCALE}
        return materialize(params, self.quantization)

    def _activation(self, params: Params, site: str, x: Array) -> Array:
        """``x`` through its codes: at the stored static scale of ``site``, or at each row's own absmax."""
        fmt = self.quantization.activations
        if fmt is None:
            return x
        if self.quantization.static_activations:
            return fake_quantize(x, jax.lax.stop_gradient(params[ACTIVATION_SCALE][site]), fmt)
        return fake_quantize_rows(x, fmt)

    def _input(self, params: Params, x: Array) -> Array:
        return self._activation(params, "input", x)

    def _reads_quantized_state(self) -> bool:
        if self.quantization.activations is None or self.cell.is_linear:  # a linear cell has no recurrent kernel
            return False
        try:
            jax.eval_shape(self.cell.recurrent_state, jax.eval_shape(lambda: self.cell.initial_carry(())))
        except NotImplementedError:  # no recurrent kernel reads a state: only x is quantized
            return False
        return True

    def _step_with(self, params: Params, carry: Carry, x: Array, *, projected: bool) -> tuple[Carry, Array]:
        p = self.float_params(params)
        if self._reads_quantized_state():
            h = self._activation(params, "state", self.cell.recurrent_state(carry))
            return self.cell.step_reading(p, carry, x, h, projected=projected)
        return self.cell.step_projected(p, carry, x) if projected else self.cell.step(p, carry, x)

    # -------------------------------------------------------------- contract
    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Carry:
        return self.cell.initial_carry(batch_shape, dtype)

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return self._step_with(params, carry, self._input(params, x), projected=False)

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    @property
    def supports_input_projection(self) -> bool:  # type: ignore[override]
        return self.cell.supports_input_projection

    def project_inputs(self, params: Params, xs: Array) -> Array:
        return self.cell.project_inputs(self.float_params(params), self._input(params, xs))

    def step_projected(self, params: Params, carry: Carry, projected_x: Array) -> tuple[Carry, Array]:
        return self._step_with(params, carry, projected_x, projected=True)

    def hoists_by_default(self) -> bool:
        return self.cell.hoists_by_default()

    def hoists(self, options: ScanOptions) -> bool:
        return self.cell.hoists(options)

    def recorded_step(
        self, params: Params, carry: Carry, x: Array, *, projected: bool = False
    ) -> tuple[Carry, Array, Internals]:
        if self._reads_quantized_state():  # the step reads a quantized state: the cell's records do not apply
            return super().recorded_step(params, carry, x, projected=projected)
        x = x if projected else self._input(params, x)
        return self.cell.recorded_step(self.float_params(params), carry, x, projected=projected)

    def sequence_unsupported(self, params: Params, carry: Carry, xs: Array, options: ScanOptions) -> str | None:
        if self.quantization.activations is not None:
            return "activation quantization (each step's inputs go through their codes in the step loop)"
        return self.cell.sequence_unsupported(self.float_params(params), carry, xs, options)

    def sequence(
        self, params: Params, carry: Carry, xs: Array, steps: Steps, options: ScanOptions
    ) -> tuple[Array, Carry]:
        return self.cell.sequence(self.float_params(params), carry, xs, steps, options)

    def recurrent_state(self, carry: Carry) -> Array:
        return self.cell.recurrent_state(carry)

    def replace_recurrent_state(self, carry: Carry, h: Array) -> Carry:
        return self.cell.replace_recurrent_state(carry, h)

    def step_reading(
        self, params: Params, carry: Carry, x: Array, recurrent_input: Array, *, projected: bool = False
    ) -> tuple[Carry, Array]:
        if self.quantization.activations is not None:
            recurrent_input = self._activation(params, "state", recurrent_input)
            x = x if projected else self._input(params, x)
        return self.cell.step_reading(self.float_params(params), carry, x, recurrent_input, projected=projected)

    def zoned_step(
        self, params: Params, carry: Carry, x: Array, mix: Mix, *, projected: bool = False
    ) -> tuple[Carry, Array]:
        x = x if projected else self._input(params, x)
        return self.cell.zoned_step(self.float_params(params), carry, x, mix, projected=projected)

    def compute_dtype(self, *arrays: Any) -> jnp.dtype:
        return self.cell.compute_dtype(*arrays)

    def state_dtype(self, dtype: DTypeLike | None = None) -> jnp.dtype:
        return self.cell.state_dtype(dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantizedLinearCell(QuantizedCell, LinearCell):
    """A :class:`QuantizedCell` around a linear-recurrence cell: still linear, so ``method="parallel"`` runs.

    Each method of the linear form is the wrapped cell's on the float
    parameters (and the quantized inputs, with activation quantization).
    """

    def recurrence_coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        return self.cell.recurrence_coefficients(self.float_params(params), self._input(params, xs))  # type: ignore[attr-defined,no-any-return]

    def readout(self, params: Params, hs: Array, xs: Array) -> Array:
        return self.cell.readout(self.float_params(params), hs, self._input(params, xs))  # type: ignore[attr-defined,no-any-return]

    def parallel_log_space(self) -> bool:
        return self.cell.parallel_log_space()  # type: ignore[attr-defined,no-any-return]

    def log_recurrence_coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        return self.cell.log_recurrence_coefficients(self.float_params(params), self._input(params, xs))  # type: ignore[attr-defined,no-any-return]

    def linear_lookback(self) -> int | None:
        return self.cell.linear_lookback()  # type: ignore[attr-defined,no-any-return]

    def linear_state(self, carry: Carry) -> Array:
        return self.cell.linear_state(carry)  # type: ignore[attr-defined,no-any-return]

    def linear_terms(self, params: Params, initial_carry: Carry, xs: Array, starts: Array) -> LinearTerms:
        return self.cell.linear_terms(self.float_params(params), initial_carry, self._input(params, xs), starts)  # type: ignore[attr-defined,no-any-return]

    def linear_outputs(
        self, params: Params, initial_carry: Carry, hs: Array, terms: LinearTerms, last: Array | None
    ) -> tuple[Array, Carry]:
        return self.cell.linear_outputs(self.float_params(params), initial_carry, hs, terms, last)  # type: ignore[attr-defined,no-any-return]


def wrap(cell: Cell, quantization: Quantization, *, stored: bool) -> QuantizedCell:
    """``cell`` (or the cell inside a quantized one) quantized as asked; a linear cell stays linear."""
    cell = _unwrapped(cell)
    kind = QuantizedLinearCell if cell.is_linear else QuantizedCell
    return kind(cell=cell, quantization=quantization, stored=stored)


def quantization_aware(cell: Cell, quantization: Quantization | str | None = None) -> QuantizedCell:
    """``cell`` for quantization-aware training: float weights, fake-quantized at every call.

    The forward pass equals the cell run with ``dequantize(quantize(w))`` for
    every quantized kernel, bit for bit; gradients pass straight through the
    rounding (:func:`~recurrax.quantize.fake_quantize`). The parameters are
    the cell's own (plus a scale per kernel with ``scales="learned"``), so a
    float checkpoint trains on and a trained one quantizes with :func:`quantized`.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> from recurrax.quantize import quantization_aware
      >>> cell = quantization_aware(recurrax.gru(8), "int8")
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> ys, h = recurrax.scan(cell, params, jnp.ones((2, 5, 3)))
      >>> ys.shape
      (2, 5, 8)
    """
    return wrap(cell, as_quantization(quantization), stored=False)


def quantized(cell: Cell, quantization: Quantization | str | None = None) -> QuantizedCell:
    """``cell`` whose parameters are stored as int8/fp8 codes and scales (inference after training).

    Make its parameters from a trained cell's with
    :func:`~recurrax.quantize.quantize_params`; the wrapper dequantizes them
    (``codes · scale``) before the wrapped cell's own step or fused path.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> from recurrax.quantize import Quantization, quantize_params, quantized
      >>> cell, spec = recurrax.lstm(8), Quantization("int8")
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> ys, _ = recurrax.scan(quantized(cell, spec), quantize_params(params, spec), jnp.ones((2, 5, 3)))
      >>> ys.shape
      (2, 5, 8)
    """
    return wrap(cell, as_quantization(quantization), stored=True)


def _unwrapped(cell: Cell) -> Cell:
    if isinstance(cell, QuantizedCell):
        return cell.cell
    return cell
