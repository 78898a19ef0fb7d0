"""A cell whose step is an input projection followed by one update: the step, hoisting and recording in one place.

Most gated cells (LSTM, GRU, SimpleRNN, IndRNN, ConvLSTM, QRNN, minGRU/minLSTM)
compute ``project_inputs(x)`` and then an update from the projected input and
the carry. Written once here, their :meth:`~recurrax.Cell.step`,
:meth:`~recurrax.Cell.step_projected` and :meth:`~recurrax.Cell.recorded_step`
cannot drift apart: the recorded step *is* the step, with the names kept.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from recurrax._cell import Cell, Internals
from recurrax._types import Array, Carry, Params


class ProjectedStepCell(Cell):
    """A :class:`~recurrax.Cell` defined by :meth:`project_inputs` and :meth:`projected_update`.

    Implement those two (with ``init`` and ``initial_carry``); ``step``,
    ``step_projected`` and ``recorded_step`` follow, so the engine can hoist
    the input projection out of the loop and ``scan(..., record=True)``
    returns the internals ``projected_update`` names, at no cost when off.
    A subclass that overrides ``step`` or ``step_projected`` keeps its own
    step and records nothing (its internals are its own).
    """

    supports_input_projection: ClassVar[bool] = True

    @abc.abstractmethod
    def project_inputs(self, params: Params, xs: Array) -> Array:
        """The input matmul for any number of steps: ``xs[..., D] → [..., G]``."""

    @abc.abstractmethod
    def projected_update(self, params: Params, carry: Carry, projected_x: Array) -> tuple[Carry, Array, Internals]:
        """One step from a projected input ``[*B, G]``: ``(carry, y[*B, output_size], {name: [*B, ...]})``."""

    def step_projected(self, params: Params, carry: Carry, projected_x: Array) -> tuple[Carry, Array]:
        new, y, _ = self.projected_update(params, carry, projected_x)
        return new, y

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return self.step_projected(params, carry, self.project_inputs(params, x))

    def recorded_step(
        self, params: Params, carry: Carry, x: Array, *, projected: bool = False
    ) -> tuple[Carry, Array, Internals]:
        if not self._own_step(ProjectedStepCell):
            return super().recorded_step(params, carry, x, projected=projected)
        return self.projected_update(params, carry, x if projected else self.project_inputs(params, x))
