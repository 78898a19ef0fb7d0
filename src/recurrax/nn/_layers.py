"""The named recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.IndRNN``, …), derived from the cell registry.

Each is :class:`~recurrax.nn.RNN` with its cell built from the options that
are fields of the cell class — declared once, on the cell — and wrapped with
recurrent dropout and zoneout when their rates are non-zero. Its signature
(for ``help`` and editors) is generated from the cell's fields, the
regularisation rates and :class:`~recurrax.nn.RNN`'s own options.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from typing import Any

from flax import nnx

from recurrax.cells._registry import CellEntry
from recurrax.cells._regularization import regularized
from recurrax.nn._rnn import RNN

_LAYERS: dict[str, type[RNN]] = {}


def layer_for(entry: CellEntry) -> type[RNN]:
    """The ``recurrax.nn`` layer class of a registered cell (made once, then reused)."""
    cached = _LAYERS.get(entry.name)
    if cached is not None and cached.cell_type is entry.cell_type:  # type: ignore[attr-defined]
        return cached
    cell_type = entry.cell_type
    cell_fields = [f for f in dataclasses.fields(cell_type) if f.init and f.name != "hidden_size"]
    field_names = {f.name for f in cell_fields}
    rnn_parameters = [
        p
        for name, p in inspect.signature(RNN.__init__).parameters.items()
        if name not in ("self", "cell", "in_features")
    ]
    clash = field_names & {p.name for p in rnn_parameters} | field_names & {"recurrent_dropout", "zoneout"}
    if clash:
        raise TypeError(f"{cell_type.__name__} fields {sorted(clash)} clash with recurrax.nn.RNN's options")
    layer_defaults = dict(entry.layer_options)

    def init(
        self: RNN,
        in_features: int,
        hidden_size: int,
        *,
        rngs: nnx.Rngs,
        recurrent_dropout: float = 0.0,
        zoneout: Any = 0.0,
        **options: Any,
    ) -> None:
        cell_options = {name: options.pop(name) for name in list(options) if name in field_names}
        cell = regularized(cell_type(hidden_size=hidden_size, **cell_options), recurrent_dropout, zoneout)
        RNN.__init__(self, cell, in_features, rngs=rngs, **{**entry.layer_options_for(cell), **options})

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("in_features", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int),
        inspect.Parameter("hidden_size", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int),
        *[p for p in rnn_parameters if p.name == "rngs"],
        *[
            inspect.Parameter(
                f.name,
                keyword,
                default=f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty,
                annotation=f.type,
            )
            for f in cell_fields
        ],
        inspect.Parameter("recurrent_dropout", keyword, default=0.0, annotation=float),
        inspect.Parameter("zoneout", keyword, default=0.0, annotation=Any),
        *[p.replace(default=layer_defaults.get(p.name, p.default)) for p in rnn_parameters if p.name != "rngs"],
    ]
    signature = inspect.Signature(parameters)
    init.__signature__ = signature  # type: ignore[attr-defined]
    defaults = ", ".join(f"{k}={v!r}" for k, v in layer_defaults.items())
    doc = (
        f"A {entry.layer} layer: :class:`~recurrax.nn.RNN` over a :class:`~recurrax.cells.{cell_type.__name__}` "
        f"({entry.summary}).\n\n"
        f"``nn.{entry.layer}(in_features, hidden_size, *, rngs, **options)`` builds "
        f"``{cell_type.__name__}(hidden_size, ...)`` from the options that are its fields (see it for the math, "
        "the parameters and every option), wraps it with :func:`~recurrax.cells.recurrent_dropout` and "
        ":func:`~recurrax.cells.zoneout` when ``recurrent_dropout`` / ``zoneout`` are non-zero, and passes the "
        "other options to :class:`~recurrax.nn.RNN` (``return_carry``, ``reverse``, ``time_major``, …)"
        + (f"; its defaults there: ``{defaults}`` (the step loop when regularised)." if defaults else ".")
    )
    namespace = {"__init__": init, "__doc__": doc, "__module__": "recurrax.nn", "cell_type": cell_type}
    layer = types.new_class(entry.layer, (RNN,), exec_body=lambda ns: ns.update(namespace))
    layer.__signature__ = signature.replace(parameters=parameters[1:])  # type: ignore[attr-defined]
    _LAYERS[entry.name] = layer
    return layer
