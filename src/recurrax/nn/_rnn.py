"""``RNN``: a Flax NNX layer that owns a cell's parameters and runs :func:`recurrax.scan`."""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from recurrax._scan import scan
from recurrax._validation import check_choice, check_initial_carry, check_sequence
from recurrax.cells._base import Array, Carry, Cell, Params
from recurrax.cells._regularization import RegularizedCell
from recurrax.nn._probe import active_probe

_METHODS = ("sequential", "parallel")


def _values(tree: Any) -> Any:
    """The arrays inside a pytree of ``nnx.Variable``s."""
    return jax.tree.map(lambda v: v[...], tree, is_leaf=lambda v: isinstance(v, nnx.Variable))


def _identity(carry: Carry) -> Carry:
    return carry


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class RNN(nnx.Module):
    """A recurrent layer: any :class:`~recurrax.cells.Cell` run over a sequence by :func:`recurrax.scan`.

    The layer owns the ``nnx.Param``\\ s that ``cell.init`` made (``self.params``,
    a dict with the cell's own names) and adds no math of its own: calling it
    equals ``recurrax.scan(cell, params, xs, ...)`` with those parameters.

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
      time_major: inputs and outputs are ``[T, *B, ...]`` instead of ``[*B, T, ...]``.
      reverse: run each example backwards over its own valid steps.
      return_carry: return ``(ys, final_carry)`` instead of ``ys``.
      unroll, remat, hoist_input_projection, method, fused: as in :func:`recurrax.scan`.
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

    def __init__(
        self,
        cell: Cell,
        in_features: int,
        *,
        rngs: nnx.Rngs,
        time_major: bool = False,
        reverse: bool = False,
        return_carry: bool = False,
        unroll: int | bool = 1,
        remat: bool = False,
        hoist_input_projection: bool | None = None,
        method: Literal["sequential", "parallel"] = "sequential",
        fused: bool | None = None,
        learnable_initial_carry: bool = False,
        deterministic: bool = False,
    ):
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be a recurrax Cell (e.g. recurrax.lstm(64)), got {type(cell).__name__}")
        if not isinstance(rngs, nnx.Rngs):
            raise TypeError(f"rngs must be an nnx.Rngs, got {type(rngs).__name__}")
        check_choice(method, "method", _METHODS)
        if method == "parallel" and not cell.is_linear:
            raise ValueError(f"method='parallel' needs a linear-recurrence cell, got {type(cell).__name__}")
        if not isinstance(unroll, bool) and (not isinstance(unroll, int) or unroll < 1):
            raise ValueError(f"unroll must be a positive int or a bool, got {unroll!r}")
        self.cell = cell
        self.in_features = _check_positive_int(in_features, "in_features")
        self.out_features = cell.output_size
        self.time_major = bool(time_major)
        self.reverse = bool(reverse)
        self.return_carry = bool(return_carry)
        self.unroll = unroll
        self.remat = bool(remat)
        self.hoist_input_projection = hoist_input_projection
        self.method = method
        self.fused = fused
        self.deterministic = bool(deterministic)
        self.params = nnx.data(jax.tree.map(nnx.Param, cell.init(rngs.params(), in_features)))
        base = self._base_cell
        self.initial_carry = nnx.data(
            jax.tree.map(nnx.Param, base.initial_carry(())) if learnable_initial_carry else None
        )
        self.rngs = rngs["dropout"].fork() if isinstance(cell, RegularizedCell) else nnx.data(None)

    @property
    def _base_cell(self) -> Cell:
        return self.cell.base_cell if isinstance(self.cell, RegularizedCell) else self.cell

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view(model, deterministic=...)``."""
        if deterministic is not None:
            self.deterministic = deterministic

    def pure_params(self) -> Params:
        """The cell's parameters as plain arrays (what :func:`recurrax.scan` takes)."""
        return _values(self.params)

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
        xs = check_sequence(xs, f"{name} input xs", time_major=self.time_major, features=self.in_features)
        batch_shape = tuple(xs.shape[1:-1] if self.time_major else xs.shape[:-2])
        base = self._base_cell
        if initial_carry is not None:
            check_initial_carry(initial_carry, jax.eval_shape(lambda: base.initial_carry(batch_shape)), batch_shape)
        elif self.initial_carry is not None:
            learned = _values(self.initial_carry)
            initial_carry = jax.tree.map(lambda a: jnp.broadcast_to(a, (*batch_shape, *a.shape)), learned)

        cell = self.cell
        unwrap = _identity
        if isinstance(cell, RegularizedCell):
            cell = cell.with_deterministic(self.deterministic)
            if initial_carry is None:
                initial_carry = base.initial_carry(batch_shape)
            key = None if self.deterministic else self.rngs()
            initial_carry = cell.wrap_carry(initial_carry, key=key)
            unwrap = cell.unwrap_carry

        probe = active_probe()
        perturbation = None
        if probe is not None:
            full = initial_carry if initial_carry is not None else cell.initial_carry(batch_shape)
            num_steps = xs.shape[0 if self.time_major else len(batch_shape)]
            stacked = jax.eval_shape(lambda: self._stack_over_time(full, num_steps, len(batch_shape)))
            perturbation = probe.next_perturbation(unwrap(stacked), name)
            if perturbation is not None and isinstance(cell, RegularizedCell):
                # The randomness in the carry is not perturbed: zeros there.
                zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), stacked)
                perturbation = cell.replace_base_carry(zeros, perturbation)

        out = scan(
            cell,
            self.pure_params(),
            xs,
            initial_carry=initial_carry,
            lengths=lengths,
            resets=resets,
            reverse=self.reverse,
            time_major=self.time_major,
            unroll=self.unroll,
            remat=self.remat,
            method=self.method,
            hoist_input_projection=self.hoist_input_projection,
            fused=self.fused,
            return_carries=probe is not None,
            carry_perturbation=perturbation,
        )
        if probe is not None:
            ys, final, carries = out
            probe.carries.append(unwrap(carries))
        else:
            ys, final = out
        return ys, unwrap(final)

    def _stack_over_time(self, carry: Carry, num_steps: int, batch_ndim: int) -> Carry:
        axis = 0 if self.time_major else batch_ndim
        return jax.tree.map(lambda a: jnp.repeat(jnp.expand_dims(a, axis), num_steps, axis=axis), carry)
