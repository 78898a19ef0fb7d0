"""``RNN`` for Flax Linen: a cell's parameters in the ``"params"`` collection, :func:`recurrax.scan` in ``__call__``."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as linen

from recurrax._cell import Cell
from recurrax._options import ScanOptions
from recurrax._scan import scan
from recurrax._types import Array, Carry
from recurrax.cells._registry import CellEntry
from recurrax.cells._regularization import RegularizedCell, regularized, start_regularized

_LAYERS: dict[str, type[linen.Module]] = {}


class _RecurrentLayer(linen.Module):
    """What every Linen recurrent layer does; subclasses say which cell (:meth:`make_cell`)."""

    def make_cell(self) -> Cell:
        raise NotImplementedError

    def scan_options(self, cell: Cell) -> ScanOptions:
        """The module's ``options``, else the defaults for ``cell``."""
        return self.options if self.options is not None else ScanOptions()

    @linen.compact
    def __call__(
        self,
        xs: Array,
        *,
        initial_carry: Carry | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
        deterministic: bool | None = None,
    ) -> Array | tuple[Array, Carry]:
        """``xs[*B, T, D]`` → ``ys[*B, T, O]`` (and the final carry with ``return_carry``).

        ``deterministic`` (default: the module's field) turns off the randomness
        of regularised cells, which otherwise draw from the ``"dropout"`` rng.
        """
        cell = self.make_cell()
        in_features = xs.shape[-1]
        params = self.param("cell", lambda key: cell.init(key, in_features))
        options = self.scan_options(cell)
        unwrap = None
        if isinstance(cell, RegularizedCell):
            # As Linen's Dropout: the mode is given at construction or per call (a regularised cell needs one).
            deterministic = linen.merge_param("deterministic", self.deterministic, deterministic)
            batch_shape = tuple(xs.shape[1:-1] if options.time_major else xs.shape[:-2])
            key = None if deterministic else self.make_rng("dropout")
            cell, initial_carry = start_regularized(
                cell, initial_carry, batch_shape, deterministic=bool(deterministic), key=key
            )
            unwrap = cell.unwrap_carry
        ys, carry = scan(cell, params, xs, initial_carry=initial_carry, lengths=lengths, resets=resets, options=options)
        if unwrap is not None:
            carry = unwrap(carry)
        return (ys, carry) if self.return_carry else ys


class RNN(_RecurrentLayer):
    """A Linen recurrent layer running any recurrax cell (``recurrax.scan`` with the module's ``options``).

    Attributes:
      cell: the cell (hyper-parameters only).
      options: a :class:`~recurrax.ScanOptions` (``reverse``, ``time_major``, ``unroll``, ``method``, …);
        ``None``: the defaults.
      return_carry: return ``(ys, final_carry)`` instead of ``ys``.
      deterministic: evaluation mode for regularised cells (can be overridden per call).

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> layer = recurrax.linen.RNN(cell=recurrax.gru(8), options=recurrax.ScanOptions(reverse=True))
      >>> variables = layer.init(jax.random.key(0), jnp.ones((2, 5, 3)))
      >>> layer.apply(variables, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2])).shape
      (2, 5, 8)
    """

    cell: Cell
    options: ScanOptions | None = None
    return_carry: bool = False
    deterministic: bool | None = None

    def make_cell(self) -> Cell:
        return self.cell


def linen_layer_for(entry: CellEntry) -> type[linen.Module]:
    """The Linen layer of a registered cell: its fields are the cell's, then ``options``,
    ``return_carry``, ``deterministic``, ``recurrent_dropout`` and ``zoneout``."""
    cached = _LAYERS.get(entry.name)
    if cached is not None and cached.cell_type is entry.cell_type:  # type: ignore[attr-defined]
        return cached
    cell_type = entry.cell_type
    cell_fields = [f for f in dataclasses.fields(cell_type) if f.init]
    required = [f for f in cell_fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    optional = [f for f in cell_fields if f not in required]
    annotations: dict[str, Any] = {f.name: f.type for f in (*required, *optional)}
    annotations.update(options="ScanOptions | None", return_carry="bool", deterministic="bool | None")
    annotations.update(recurrent_dropout="float", zoneout="Any")
    namespace: dict[str, Any] = {f.name: f.default for f in optional}
    namespace.update(options=None, return_carry=False, deterministic=None, recurrent_dropout=0.0, zoneout=0.0)

    def make_cell(self: Any) -> Cell:
        cell = cell_type(**{f.name: getattr(self, f.name) for f in cell_fields})
        return regularized(cell, self.recurrent_dropout, self.zoneout)

    def scan_options(self: Any, cell: Cell) -> ScanOptions:
        # None: the registry's layer defaults (a regularised linear cell runs the step loop).
        return self.options if self.options is not None else ScanOptions(**entry.layer_options_for(cell))

    namespace.update(
        scan_options=scan_options,
        __annotations__=annotations,
        __module__="recurrax.linen",
        __doc__=(
            f"The Linen layer of :class:`~recurrax.cells.{cell_type.__name__}` ({entry.summary}): its fields are "
            "the cell's (see it for the math and every option), then ``options``, ``return_carry``, "
            "``deterministic``, ``recurrent_dropout`` and ``zoneout``; it computes what :class:`RNN` computes."
        ),
        make_cell=make_cell,
        cell_type=cell_type,
    )
    layer = type(entry.layer, (_RecurrentLayer,), namespace)
    _LAYERS[entry.name] = layer
    return layer
