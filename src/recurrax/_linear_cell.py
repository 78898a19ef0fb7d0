"""The linear-recurrence form of the cell contract, ``h_t = a_t ⊙ h_{t-1} + b_t``, scanned in parallel by the engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

from recurrax._cell import Cell, Internals
from recurrax._options import ScanOptions
from recurrax._types import Array, Carry, Params

#: ``kernel(a, b, h0, at_start, valid, time_axis) -> hs``: the states of ``h_t = a_t ⊙ h_{t-1} + b_t``,
#: as the engine's associative scan computes them (``_parallel.py``): ``a``, ``b`` ``[T, *B, ...]`` (time
#: along ``time_axis``); ``h0[*B, ...]`` or None (a zero state); ``at_start`` (restart from ``h0``; step 0
#: always does) and ``valid`` (past it the state is carried unchanged): masks over ``[T, *B]``, or None.
RecurrenceKernel = Callable[[Array, Array, Array | None, Array | None, Array | None, int], Array]


class LinearTerms(NamedTuple):
    """A linear cell's recurrence over a whole sequence: ``h_t = a_t ⊙ h_{t-1} + b_t``.

    Attributes:
      a, b: ``[T, *B, ...]``, shaped like the recurrent state (``None`` on the
        log-space path, which reads :meth:`LinearCell.log_recurrence_coefficients`).
      context: what :meth:`LinearCell.linear_outputs` needs besides the states
        (by default the inputs themselves).
    """

    a: Array | None
    b: Array | None
    context: Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearCell(Cell):
    """A cell whose state follows a linear recurrence ``h_t = a_t ⊙ h_{t-1} + b_t``.

    ``a_t`` and ``b_t`` do not depend on the state, so the scan engine can run
    the cell with :func:`jax.lax.associative_scan` (``method="parallel"``, depth
    O(log T)) or step by step (``method="sequential"``) with the same result.

    Most linear cells depend on ``x_t`` alone and implement two methods:
    :meth:`recurrence_coefficients` and :meth:`readout`; the carry is the state
    ``h[*B, ...]`` and :meth:`step` is derived (recording ``a`` and ``b``). A cell whose coefficients read
    more than the current input (QRNN's convolution over a window of steps)
    implements the sequence form instead: :meth:`linear_terms`,
    :meth:`linear_outputs` and :meth:`linear_state`.
    """

    is_linear: ClassVar[bool] = True

    def recurrence_coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        """Maps ``xs[..., D]`` (any leading dims) to ``(a, b)`` shaped like the carry."""
        raise NotImplementedError(f"{type(self).__name__} implements linear_terms instead")

    def readout(self, params: Params, hs: Array, xs: Array) -> Array:
        """Maps states ``hs`` and inputs ``xs`` (same leading dims) to outputs ``ys``."""
        raise NotImplementedError(f"{type(self).__name__} implements linear_outputs instead")

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        h, y, _ = self._linear_step(params, carry, x)
        return h, y

    def recorded_step(
        self, params: Params, carry: Carry, x: Array, *, projected: bool = False
    ) -> tuple[Carry, Array, Internals]:
        """The derived step, recording its coefficients ``a`` and ``b`` (each shaped like the carry)."""
        if projected or not self._own_step(LinearCell):
            return super().recorded_step(params, carry, x, projected=projected)
        return self._linear_step(params, carry, x)

    def _linear_step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array, Internals]:
        a, b = self.recurrence_coefficients(params, x)
        h = a * carry + b
        return h, self.readout(params, h, x), {"a": a, "b": b}

    def parallel_log_space(self) -> bool:
        """Whether the parallel scan runs in log space on ``log_recurrence_coefficients`` (cells with ``b > 0``)."""
        return False

    def log_recurrence_coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        """``(log a, log b)`` for every step, for cells whose :meth:`parallel_log_space` is True."""
        raise NotImplementedError(f"{type(self).__name__} has no log-space form")

    def recurrence_kernel(self, state: Array, options: ScanOptions) -> RecurrenceKernel | None:
        """A kernel that runs this call's recurrence in place of the engine's associative scan, or None.

        Asked by ``method="parallel"`` with the initial state (``linear_state``
        of the initial carry) and the call's options: the cell's answer to
        ``ScanOptions.kernel``. The default offers none; the concrete cells offer
        a Pallas kernel (``cells/_pallas_linear.py``, ``docs/kernels.md``).
        """
        return None

    # ----------------------------------------------- sequence form (the engine's)
    def linear_lookback(self) -> int | None:
        """How many earlier steps the coefficients of step ``t`` read (0: ``x_t`` alone).

        The sequence-parallel scan (:func:`recurrax.sequence_parallel_scan`)
        hands each device's chunk of time this many steps of the previous chunk.
        The default is 0 for a cell in the per-step form and None (unknown: that
        scan refuses the cell) for one that overrides :meth:`linear_terms`
        without saying.
        """
        return 0 if type(self).linear_terms is LinearCell.linear_terms else None

    def linear_state(self, carry: Carry) -> Array:
        """The part of the carry that follows the recurrence (default: the whole carry)."""
        state: Array = carry
        return state

    def linear_terms(self, params: Params, initial_carry: Carry, xs: Array, starts: Array) -> LinearTerms:
        """``a``, ``b`` for every step of time-major ``xs[T, *B, D]``.

        ``starts[T, *B]`` (or broadcastable) marks the steps whose carry restarts
        from ``initial_carry``; coefficients that read earlier steps must not
        read across them. The default reads ``x_t`` only.
        """
        a, b = self.recurrence_coefficients(params, xs)
        return LinearTerms(a, b, xs)

    def linear_outputs(
        self, params: Params, initial_carry: Carry, hs: Array, terms: LinearTerms, last: Array | None
    ) -> tuple[Array, Carry]:
        """Outputs ``ys[T, *B, O]`` and the final carry from the states ``hs[T, *B, ...]``.

        ``last[*B]`` is each example's last valid step (``None``: ``T - 1``);
        ``hs`` past it repeats the state there.
        """
        return self.readout(params, hs, terms.context), hs[-1]
