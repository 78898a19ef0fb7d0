"""The registry of recurrent cells: one line per cell gives its factory, its ``recurrax.nn`` layer and its backbone.

``recurrax.nn`` makes a named layer for every entry (``nn.LSTM``, ``nn.IndRNN``,
…), ``recurrax.models`` a backbone (``cell="lstm"``), and the command line a
``--cell`` choice; the tests run every registered cell through the same checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

from recurrax._cell import Cell
from recurrax._factory import make_factory

C = TypeVar("C", bound=Cell)


@dataclasses.dataclass(frozen=True)
class CellEntry:
    """A registered cell.

    Attributes:
      name: the factory's name (``"lstm"``).
      cell_type: the cell class (:class:`~recurrax.cells.LSTMCell`).
      factory: ``name(hidden_size, **options)``, derived from the class's fields.
      layer: the name of its ``recurrax.nn`` layer (``"LSTM"``).
      backbone: its backbone name for ``recurrax.models`` and ``recurrax train --cell``
        (``None``: not a backbone, e.g. a cell that needs more than a width to build).
      summary: one line for listings.
      layer_options: defaults of the layer and backbone (e.g. ``method="parallel"``).
      block: ``None``, or the backbone is a stack of residual blocks
        (:class:`recurrax.RecurrentStack`, the form the cell's paper uses) with
        these block options.
      aliases: other spellings of ``name`` (``"mingru"`` for ``"min_gru"``):
        ``recurrax.mingru`` is the factory and ``cell="mingru"`` the backbone.
    """

    name: str
    cell_type: type[Cell]
    factory: Callable[..., Cell]
    layer: str
    backbone: str | None
    summary: str
    layer_options: Mapping[str, Any]
    block: Mapping[str, Any] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name this entry answers to: factory, layer, backbone and aliases."""
        return tuple(n for n in (self.name, self.layer, self.backbone, *self.aliases) if n is not None)

    def layer_options_for(self, cell: Cell) -> dict[str, Any]:
        """The layer defaults for ``cell`` as built: a regularised (so no longer linear) cell runs the step loop."""
        return {k: v for k, v in self.layer_options.items() if cell.is_linear or k != "method"}


_ENTRIES: dict[str, CellEntry] = {}


def register_cell(
    cell_type: type[C],
    name: str,
    *,
    layer: str,
    summary: str,
    backbone: str | None = "",
    layer_options: Mapping[str, Any] | None = None,
    positional: Sequence[str] = ("hidden_size",),
    block: Mapping[str, Any] | None = None,
    aliases: Sequence[str] = (),
    overwrite: bool = False,
) -> Callable[..., C]:
    """Registers ``cell_type`` and returns its lowercase factory.

    Args:
      cell_type: a :class:`~recurrax.Cell` subclass (a frozen dataclass).
      name: the factory's name, e.g. ``"indrnn"``.
      layer: the ``recurrax.nn`` layer's name, e.g. ``"IndRNN"``.
      summary: one line for ``recurrax list`` and the backbone listing.
      backbone: the backbone name (default: ``name``; ``None``: not a backbone).
      layer_options: defaults the layer and backbone pass to :class:`recurrax.nn.RNN`.
      positional: fields the factory takes positionally.
      block: the backbone is :class:`recurrax.RecurrentStack` of residual blocks
        with these options (``{}``: the defaults) instead of bare layers.
      aliases: other spellings of ``name``, accepted wherever it is (the
        ``recurrax`` namespace, backbone names, :func:`cell_entry`); listings show ``name``.
      overwrite: replace an existing entry of the same name.

    Example (a cell of your own joins every layer, model and backbone)::

        @dataclasses.dataclass(frozen=True, kw_only=True)
        class MyCell(recurrax.Cell):
            ...

        my_cell = register_cell(MyCell, "my_cell", layer="MyRNN", summary="my idea")
        model = recurrax.models.SequenceClassifier(3, 2, cell="my_cell", rngs=nnx.Rngs(0))
    """
    if not (isinstance(cell_type, type) and issubclass(cell_type, Cell)):
        raise TypeError(f"cell_type must be a recurrax Cell subclass, got {cell_type!r}")
    aliases = (aliases,) if isinstance(aliases, str) else tuple(aliases)
    for label, value in (("name", name), ("layer", layer), *(("alias", a) for a in aliases)):
        if not isinstance(value, str) or not value.isidentifier():
            raise ValueError(f"{label} must be a Python identifier, got {value!r}")
    backbone = name if backbone == "" else backbone
    taken = {n for e in _ENTRIES.values() for n in e.names}
    if not overwrite and ({name, layer, backbone, *aliases} - {None}) & taken:
        raise ValueError(
            f"a cell named {name!r} (or its layer, backbone or alias name) is registered; pass overwrite=True"
        )
    factory = make_factory(cell_type, name, positional=positional)
    _ENTRIES[name] = CellEntry(
        name=name,
        cell_type=cell_type,
        factory=factory,
        layer=layer,
        backbone=backbone,
        summary=summary,
        layer_options=MappingProxyType(dict(layer_options or {})),
        block=None if block is None else MappingProxyType(dict(block)),
        aliases=aliases,
    )
    return factory


def registered_cells() -> tuple[CellEntry, ...]:
    """Every registered cell, in registration order."""
    return tuple(_ENTRIES.values())


def cell_entry(name: str) -> CellEntry:
    """The entry registered under factory, layer, backbone or alias name ``name``."""
    for entry in _ENTRIES.values():
        if name in entry.names:
            return entry
    raise KeyError(f"no cell registered as {name!r}; registered: {sorted(_ENTRIES)}")


def aliased_factory(name: str) -> Callable[..., Cell] | None:
    """The factory that ``name`` is an alias of (``mingru`` → ``min_gru``), else ``None``: for ``__getattr__``."""
    return next((entry.factory for entry in _ENTRIES.values() if name in entry.aliases), None)


def registered_layer(module: str, name: str, make: Callable[[CellEntry], Any]) -> Any:
    """For a layer module's ``__getattr__``: ``make(entry)`` for the cell whose layer is called ``name``.

    So that the layer of a cell registered after the module was imported
    (``register_cell`` in user code) is found like the built-in ones.
    """
    try:
        entry = cell_entry(name)
    except KeyError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None
    if entry.layer != name:
        raise AttributeError(f"module {module!r} has no attribute {name!r} (did you mean {entry.layer!r}?)")
    return make(entry)
