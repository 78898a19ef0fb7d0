"""``RNN``: the one Flax NNX recurrent layer; it owns a cell's parameters and runs :func:`recurrax.scan`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from recurrax._cell import Cell
from recurrax._options import ScanOptions, accepts_scan_options
from recurrax._scan import scan
from recurrax._types import Array, Carry
from recurrax._validation import check_initial_carry, check_positive_int, check_sequence
from recurrax.cells._regularization import RegularizedCell, start_regularized
from recurrax.nn._module import ParamModule, check_rngs, values
from recurrax.nn._probe import active_probe
from recurrax.nn._recording import active_recording


def _identity(carry: Carry) -> Carry:
    return carry


class RNN(ParamModule):
    """A recurrent layer: any :class:`~recurrax.Cell` run over a sequence by :func:`recurrax.scan`.

    The layer owns the ``nnx.Param``\\ s that ``cell.init`` made (``self.params``,
    a dict with the cell's own names) and adds no math of its own: calling it
    equals ``recurrax.scan(cell, params, xs, options=layer.options, ...)`` with
    those parameters. The named layers (``nn.LSTM``, ``nn.GRU``, ``nn.IndRNN``,
    …) are this class with the cell built from their options.

    Regularised cells (:func:`~recurrax.cells.recurrent_dropout`,
    :func:`~recurrax.cells.zoneout`) draw their randomness from the ``"dropout"``
    rng stream once per call and follow ``model.train()`` / ``model.eval()``
    (the ``deterministic`` attribute, as ``nnx.Dropout``). Carries that go in
    and out of the layer are always the plain cell's carry.

    Args:
      cell: the cell (hyper-parameters only).
      in_features: ``D``, features of the input.
      rngs: ``params`` stream for the initial parameters; ``dropout`` stream for
        regularised cells.
      options: a :class:`~recurrax.ScanOptions`; its fields may also be given
        as keywords (``reverse=True``, ``time_major=True``, ``unroll=4``, …).
      return_carry: return ``(ys, final_carry)`` instead of ``ys``.
      learnable_initial_carry: learn the initial carry (an ``nnx.Param`` pytree
        shaped like one example's carry, zeros at first, broadcast over the batch).
      deterministic: start in evaluation mode.

    Call: ``layer(xs, *, initial_carry=None, lengths=None, resets=None)`` with
    ``xs[*B, T, D]`` → ``ys[*B, T, O]`` (and the final carry, leaves ``[*B, ...]``).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import recurrax
      >>> from recurrax import nn
      >>> layer = nn.RNN(recurrax.gru(8), 3, rngs=nnx.Rngs(0), return_carry=True)
      >>> ys, h = layer(jnp.ones((2, 5, 3)), lengths=jnp.array([5, 3]))
      >>> ys.shape, h.shape, sorted(layer.params)
      ((2, 5, 8), (2, 8), ['input_bias', 'input_kernel', 'recurrent_bias', 'recurrent_kernel'])
    """

    @accepts_scan_options
    def __init__(
        self,
        cell: Cell,
        in_features: int,
        *,
        rngs: nnx.Rngs,
        options: ScanOptions | None = None,
        return_carry: bool = False,
        learnable_initial_carry: bool = False,
        deterministic: bool = False,
        **scan_options: Any,
    ):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a recurrax Cell (e.g. recurrax.lstm(64)), got {type(cell).__name__}")
        check_rngs(rngs)
        options = ScanOptions.resolve(options, scan_options)
        if options.method == "parallel" and not cell.is_linear:
            raise ValueError(f"method='parallel' needs a linear-recurrence cell, got {type(cell).__name__}")
        self.cell = cell
        self.options = options
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = cell.output_size
        self.return_carry = bool(return_carry)
        super().__init__(
            cell.init(rngs.params(), in_features),
            rngs=rngs,
            stochastic=isinstance(cell, RegularizedCell),
            deterministic=deterministic,
        )
        base = self._base_cell
        self.initial_carry = nnx.data(
            jax.tree.map(nnx.Param, base.initial_carry(())) if learnable_initial_carry else None
        )

    # Read-only views of the options, for containers (Bidirectional, StackedRNN) and old code.
    @property
    def time_major(self) -> bool:
        return self.options.time_major

    @property
    def reverse(self) -> bool:
        return self.options.reverse

    @property
    def method(self) -> str:
        return self.options.method

    @property
    def _base_cell(self) -> Cell:
        return self.cell.base_cell if isinstance(self.cell, RegularizedCell) else self.cell

    def __call__(
        self,
        xs: Array,
        *,
        initial_carry: Carry | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
    ) -> Array | tuple[Array, Carry]:
        """Runs the layer: ``xs[*B, T, D]`` → ``ys[*B, T, O]`` (and the final carry with ``return_carry``)."""
        ys, carry = self.run(xs, initial_carry=initial_carry, lengths=lengths, resets=resets)
        return (ys, carry) if self.return_carry else ys

    def run(
        self,
        xs: Array,
        *,
        initial_carry: Carry | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
    ) -> tuple[Array, Carry]:
        """Like calling the layer, but always returns ``(ys, final_carry)`` (what containers use)."""
        name = type(self).__name__
        time_major = self.options.time_major
        xs = check_sequence(xs, f"{name} input xs", time_major=time_major, features=self.in_features)
        batch_shape = tuple(xs.shape[1:-1] if time_major else xs.shape[:-2])
        base = self._base_cell
        if initial_carry is not None:
            check_initial_carry(initial_carry, jax.eval_shape(lambda: base.initial_carry(batch_shape)), batch_shape)
        elif self.initial_carry is not None:
            learned = values(self.initial_carry)
            initial_carry = jax.tree.map(lambda a: jnp.broadcast_to(a, (*batch_shape, *a.shape)), learned)

        cell = self.cell
        unwrap = _identity
        if isinstance(cell, RegularizedCell):
            cell, initial_carry = start_regularized(
                cell, initial_carry, batch_shape, deterministic=self.deterministic, key=self.dropout_key()
            )
            unwrap = cell.unwrap_carry

        probe = active_probe()
        perturbation = None
        if probe is not None:
            full = initial_carry if initial_carry is not None else cell.initial_carry(batch_shape)
            num_steps = xs.shape[0 if time_major else len(batch_shape)]
            stacked = jax.eval_shape(lambda: self._stack_over_time(full, num_steps, len(batch_shape)))
            perturbation = probe.next_perturbation(unwrap(stacked), name)
            if perturbation is not None and isinstance(cell, RegularizedCell):
                # The randomness in the carry is not perturbed: zeros there.
                zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), stacked)
                perturbation = cell.replace_base_carry(zeros, perturbation)

        recording = active_recording()
        out = scan(
            cell,
            self.pure_params(),
            xs,
            initial_carry=initial_carry,
            lengths=lengths,
            resets=resets,
            options=self.options,
            return_carries=probe is not None,
            carry_perturbation=perturbation,
            record=recording is not None,
        )
        ys, final, *extra = out
        if probe is not None:
            probe.carries.append(unwrap(extra[0]))
        if recording is not None:
            recording.append(extra[-1])
        return ys, unwrap(final)

    def _stack_over_time(self, carry: Carry, num_steps: int, batch_ndim: int) -> Carry:
        axis = 0 if self.options.time_major else batch_ndim
        return jax.tree.map(lambda a: jnp.repeat(jnp.expand_dims(a, axis), num_steps, axis=axis), carry)
