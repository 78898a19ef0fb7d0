"""A cell whose step is gates from one recurrent matmul, then an elementwise update: written once, run as a kernel.

The Elman RNN, the LSTM (with or without peepholes), the GRU, UGRNN, CIFG …
all compute ``G`` gate pre-activations from the input projection and one
matmul of the state, and then an update that treats every unit on its own.
Subclass :class:`MatmulGatedCell`, write that update once as
:meth:`~MatmulGatedCell.gate_update`, and the cell has a step (and
``scan(..., record=True)``'s internals) and, with ``kernel="pallas"``, the
Pallas kernel pair of ``cells/_pallas_gated.py`` for the whole sequence:
both paths call the same update, so they cannot drift apart.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import jax
import jax.numpy as jnp

from recurrax._cell import Internals, Steps
from recurrax._options import ScanOptions
from recurrax._projected_cell import ProjectedStepCell
from recurrax._types import Array, Carry, Params
from recurrax.cells import _kernels, _pallas_gated
from recurrax.cells._gate_update_jaxpr import not_elementwise
from recurrax.cells._pallas_gated import Parts, gated_sequence


class MatmulGatedCell(ProjectedStepCell):
    """A :class:`~recurrax.cells.ProjectedStepCell` whose update is ``G`` gates from one matmul, then elementwise.

    One step, from the carry's parts ``state = (h, *rest)`` (``[*B, H]`` each)::

        hh = h W_h (+ b_h)                                  [*B, G·H], one matmul
        state', internals = gate_update(gx, hh, state, units)

    with ``gx`` the projected input (:meth:`project_inputs`, ``[*B, G·H]``),
    ``gx`` and ``hh`` passed split into their ``G`` gates, ``units`` the rows
    of :meth:`unit_parameters` (``[H]`` each), and the output ``y = h'``.

    Implement ``init``, ``initial_carry``, ``project_inputs``,
    :attr:`num_gates` and :meth:`gate_update`. By default the recurrent
    matmul reads ``params["recurrent_kernel"]`` (``[H, G·H]``) and
    ``params["recurrent_bias"]`` if present (:meth:`recurrent_weights`),
    there are no per-unit parameters (:meth:`unit_parameters`), and the
    carry is one ``[*B, H]`` array (:meth:`carry_parts`,
    :meth:`carry_from_parts`); override those for other layouts.

    ``gate_update`` must treat every unit on its own (elementwise over H; no
    layer norm across units): the kernel runs it on tiles of the state, and
    declines an update whose jaxpr has any other operation (the step loop
    runs it; ``fused=True`` raises naming the operation). With
    ``kernel="pallas"`` (float32, no ``remat``) the whole sequence runs as one
    Pallas kernel over all steps and a backward kernel that differentiates
    ``gate_update`` with :func:`jax.vjp` (``docs/kernels.md``); otherwise the
    engine's step loop runs the same ``gate_update``. An update that reads
    each ``gx[k]`` and ``hh[k]`` only as ``gx[k] + hh[k]`` (formed once, in its
    own code rather than inside a ``jit``) gets a backward kernel that moves
    half the gate arrays.
    """

    #: ``G``: gates computed by the one recurrent matmul.
    num_gates: ClassVar[int]

    @abc.abstractmethod
    def gate_update(self, gx: Parts, hh: Parts, state: Parts, units: Parts) -> tuple[Parts, Internals]:
        """``(new state's parts, internals)`` from the gates' input and recurrent parts (``G`` each), elementwise.

        ``gx``, ``hh``, ``state``: tuples of ``[*B, H]`` arrays; ``units``: the
        per-unit parameter rows, each ``[H]`` (or broadcast to ``[*B, H]``).
        Return the new state in the carry's dtype; ``internals`` are what
        ``scan(..., record=True)`` records (``{}`` for none).
        """

    def recurrent_weights(self, params: Params) -> tuple[Array, Array | None]:
        """``(W_h[H, G·H], b_h[G·H] or None)``: ``params["recurrent_kernel"]`` and ``params.get("recurrent_bias")``."""
        return params["recurrent_kernel"], params.get("recurrent_bias")

    def unit_parameters(self, params: Params) -> Array | None:
        """Per-unit parameters ``[P, H]`` passed to :meth:`gate_update` as ``P`` rows (None: none)."""
        return None

    def carry_parts(self, carry: Carry) -> Parts:
        """The carry as ``(h, *rest)``, each ``[*B, H]``; ``h`` feeds the matmul and is the output."""
        return (carry,)

    def carry_from_parts(self, parts: Parts) -> Carry:
        """The inverse of :meth:`carry_parts`."""
        return parts[0]

    # ---------------------------------------------------------------- the step
    def projected_update(self, params: Params, carry: Carry, projected_x: Array) -> tuple[Carry, Array, Internals]:
        dt = projected_x.dtype
        state = self.carry_parts(carry)
        w_h, b_h = self.recurrent_weights(params)
        hh = jnp.matmul(state[0].astype(dt), w_h.astype(dt))
        if b_h is not None:
            hh = hh + b_h.astype(dt)
        units = self.unit_parameters(params)
        rows = () if units is None else tuple(units.astype(state[0].dtype))
        new, internals = self.gate_update(self._split(projected_x), self._split(hh), state, rows)
        new = tuple(n.astype(s.dtype) for n, s in zip(new, state, strict=True))
        return self.carry_from_parts(new), new[0].astype(dt), internals

    def _split(self, z: Array) -> Parts:
        H = z.shape[-1] // self.num_gates
        return tuple(z[..., k * H : (k + 1) * H] for k in range(self.num_gates))

    # ----------------------------------------------------- the whole sequence
    def _kernels(self, params: Params, carry: Carry, xs: Array, options: ScanOptions) -> dict[str, _kernels.Check]:
        state = self.carry_parts(carry)
        leaves = [xs, *jax.tree.leaves(params), *state]
        units = self.unit_parameters(params)
        num_units = 0 if units is None else units.reshape(-1, state[0].shape[-1]).shape[0]

        def pallas(steps: Steps | None) -> str | None:
            reason = _pallas_gated.unsupported(leaves, options, xs, self.num_gates, state)
            return reason or not_elementwise(self.gate_update, self.num_gates, len(state), num_units)

        return {"pallas": pallas}

    def sequence_unsupported(self, params: Params, carry: Carry, xs: Array, options: ScanOptions) -> str | None:
        own = (
            type(self).step is ProjectedStepCell.step
            and type(self).step_projected is ProjectedStepCell.step_projected
            and type(self).projected_update is MatmulGatedCell.projected_update
        )
        if not own:
            return f"{type(self).__name__} overrides its step (the kernel computes gate_update's)"
        kernel, reason = _kernels.choose(options, self._kernels(params, carry, xs, options))
        if kernel == "xla" and reason is not None:
            return f"kernel={options.kernel!r}: {reason}"
        if kernel == "xla":
            # No fused XLA loop: the engine's step loop is this cell's XLA path.
            return f"no fused XLA loop (its whole sequence runs only as kernel='pallas', not {options.kernel!r})"
        return None

    def sequence(
        self, params: Params, carry: Carry, xs: Array, steps: Steps, options: ScanOptions
    ) -> tuple[Array, Carry]:
        w_h, b_h = self.recurrent_weights(params)
        # gate_update bound to a frozen dataclass: hashable, as the kernel's static argument must be.
        ys, final = gated_sequence(
            self.gate_update,
            lambda x: self.project_inputs(params, x),
            w_h,
            b_h,
            self.carry_parts(carry),
            self.unit_parameters(params),
            xs,
            steps,
        )
        return ys, self.carry_from_parts(final)
