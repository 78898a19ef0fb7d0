"""The cell contract: a recurrent cell is a few pure functions over pytrees.

Shapes, used throughout recurrax:
  ``*B``  any number of leading batch dimensions (possibly none),
  ``T``   sequence length, ``D`` input features, ``H`` hidden units.

A cell is an immutable description (hyper-parameters only). Its parameters are
a plain pytree made by :meth:`Cell.init`; its state ("carry") is a pytree made
by :meth:`Cell.initial_carry`; one time step is :meth:`Cell.step`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._validation import check_float_dtype

Array = jax.Array
Params = Any  # a pytree (usually a dict) of arrays
Carry = Any  # a pytree of arrays with leading batch dims ``*B``

_LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cell(abc.ABC):
    """Base class of every recurrent cell.

    Three dtypes are explicit:
      * ``param_dtype`` — how :meth:`init` stores parameters;
      * ``dtype`` — the compute dtype of matmuls and gates (``None``: the
        promotion of the input and parameter dtypes);
      * ``carry_dtype`` — the dtype of the recurrent state, where errors
        accumulate over time (``None``: float32 when computing in bf16/f16,
        else the compute dtype).

    Subclasses implement :meth:`init`, :meth:`initial_carry`, :meth:`step` and
    :meth:`input_size`. A cell that sets ``supports_input_projection`` also
    implements :meth:`project_inputs` and :meth:`step_projected`, so that the
    scan engine can apply the input matmul to all time steps at once.
    """

    hidden_size: int
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    carry_dtype: DTypeLike | None = None

    supports_input_projection: ClassVar[bool] = False
    is_linear: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not isinstance(self.hidden_size, int) or isinstance(self.hidden_size, bool):
            raise TypeError(
                f"hidden_size must be a positive int, got {type(self.hidden_size).__name__} {self.hidden_size!r}"
            )
        if self.hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive int, got {self.hidden_size}")
        for name in ("dtype", "param_dtype", "carry_dtype"):
            check_float_dtype(getattr(self, name), name, allow_complex=True)

    # ----------------------------------------------------------------- contract
    @abc.abstractmethod
    def init(self, key: Array, input_size: int) -> Params:
        """Returns a fresh parameter pytree for inputs of ``input_size`` features."""

    @abc.abstractmethod
    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Carry:
        """Returns the zero state with leaves of shape ``(*batch_shape, ...)``."""

    @abc.abstractmethod
    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One time step: ``x[*B, D]`` and ``carry`` → ``(carry, y[*B, output_size])``."""

    @abc.abstractmethod
    def input_size(self, params: Params) -> int:
        """The number of input features ``D`` that ``params`` expect."""

    @property
    def output_size(self) -> int:
        """Features of ``y``; ``hidden_size`` unless the cell projects its output."""
        return self.hidden_size

    # ------------------------------------------------------- optional: hoisting
    def project_inputs(self, params: Params, xs: Array) -> Array:
        """Applies the input matmul to any number of steps: ``xs[..., D] → [..., G]``."""
        raise NotImplementedError(f"{type(self).__name__} has no separable input projection")

    def step_projected(self, params: Params, carry: Carry, projected_x: Array) -> tuple[Carry, Array]:
        """:meth:`step` on an input already passed through :meth:`project_inputs`."""
        raise NotImplementedError(f"{type(self).__name__} has no separable input projection")

    def _affine_projection(self, xs: Array, kernel: Array, bias: Array) -> Array:
        """``xs · kernel + bias`` in the compute dtype: the input projection of the dense cells."""
        dt = self.compute_dtype(xs, kernel)
        return jnp.matmul(xs.astype(dt), kernel.astype(dt)) + bias.astype(dt)

    # ------------------------------------------------------------------ dtypes
    def compute_dtype(self, *arrays: Any) -> jnp.dtype:
        """The dtype that matmuls and gates use for these inputs."""
        if self.dtype is not None:
            return jnp.dtype(self.dtype)
        return jnp.result_type(*arrays, self.param_dtype)

    def state_dtype(self, dtype: DTypeLike | None = None) -> jnp.dtype:
        """The dtype of the carry (the recurrence's accumulation dtype)."""
        if dtype is not None:
            return jnp.dtype(dtype)
        if self.carry_dtype is not None:
            return jnp.dtype(self.carry_dtype)
        compute = jnp.dtype(self.dtype) if self.dtype is not None else jnp.dtype(self.param_dtype)
        return jnp.dtype(jnp.float32) if compute in _LOW_PRECISION else compute


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearCell(Cell):
    """A cell whose state follows a linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t``.

    ``a_t`` and ``b_t`` depend on ``x_t`` only, so the scan engine can run the
    cell with :func:`jax.lax.associative_scan` (``method="parallel"``, depth
    O(log T)) or step by step (``method="sequential"``) with the same result.
    The carry is a single array ``h[*B, ...]``; :meth:`step` is derived.
    """

    is_linear: ClassVar[bool] = True

    @abc.abstractmethod
    def recurrence_coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        """Maps ``xs[..., D]`` (any leading dims) to ``(a, b)`` shaped like the carry."""

    @abc.abstractmethod
    def readout(self, params: Params, hs: Array, xs: Array) -> Array:
        """Maps states ``hs`` and inputs ``xs`` (same leading dims) to outputs ``ys``."""

    def step(self, params: Params, carry: Array, x: Array) -> tuple[Array, Array]:
        a, b = self.recurrence_coefficients(params, x)
        h = a * carry + b
        return h, self.readout(params, h, x)


def tree_where(condition: Array, on_true: Any, on_false: Any) -> Any:
    """``jnp.where`` over matching pytrees, ``condition[*B]`` broadcast on the right."""

    def select(a: Array, b: Array) -> Array:
        cond = jnp.reshape(condition, condition.shape + (1,) * (jnp.ndim(a) - condition.ndim))
        return jnp.where(cond, a, b)

    return jax.tree.map(select, on_true, on_false)
