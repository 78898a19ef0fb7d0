"""``FlaxCell``: a recurrax cell as a Flax ``nnx.RNNCellBase``, so that it runs inside Flax's own ``nnx.RNN``."""

from __future__ import annotations

from typing import Any

from flax import nnx

from recurrax._cell import Cell
from recurrax._types import Array, Carry
from recurrax._validation import check_positive_int
from recurrax.nn._module import ParamModule


class FlaxCell(ParamModule, nnx.RNNCellBase):
    """Owns a recurrax cell's parameters and speaks Flax's cell protocol (``nnx.RNN``, ``nnx.scan`` code).

    ``nnx.RNN(recurrax.lstm(8))`` cannot work (a pure cell has no parameters
    and no ``num_feature_axes``); ``nnx.RNN(FlaxCell(recurrax.lstm(8), 3,
    rngs=rngs))`` does, and computes what ``recurrax.scan`` computes. The
    other way round, ``recurrax.scan`` runs Flax's NNX cells directly
    (``recurrax.scan(nnx.GRUCell(3, 8, rngs=rngs), None, xs)``).

    Args:
      cell: the recurrax cell.
      in_features: ``D``.
      rngs: its ``params`` stream makes the parameters.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import recurrax
      >>> flax_rnn = nnx.RNN(recurrax.nn.FlaxCell(recurrax.lstm(8), 3, rngs=nnx.Rngs(0)))
      >>> flax_rnn(jnp.ones((2, 5, 3))).shape
      (2, 5, 8)
    """

    def __init__(self, cell: Cell, in_features: int, *, rngs: nnx.Rngs) -> None:
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a recurrax Cell, got {type(cell).__name__}")
        check_positive_int(in_features, "in_features")
        self.cell = cell
        self.in_features = in_features
        super().__init__(cell.init(rngs.params(), in_features), rngs=rngs, stochastic=False)

    def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
        """One step: ``inputs[*B, D]`` → ``(carry, y[*B, O])``, as ``cell.step``."""
        return self.cell.step(self.pure_params(), carry, inputs)

    def initialize_carry(self, input_shape: tuple[int, ...], rngs: Any = None, carry_init: Any = None) -> Carry:
        """The cell's zero carry for inputs of shape ``[*B, D]`` (``rngs`` and ``carry_init`` are not used)."""
        if carry_init is not None:
            raise ValueError("FlaxCell makes the recurrax cell's own initial carry; carry_init is not supported")
        return self.cell.initial_carry(tuple(input_shape[:-1]))

    @property
    def num_feature_axes(self) -> int:
        return 1
