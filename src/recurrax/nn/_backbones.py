"""A small registry of sequence backbones, so that a model swaps LSTM for minGRU, TCN or a Transformer by name.

A backbone maps ``xs[B, T, D]`` (and optional ``lengths[B]``) to features
``ys[B, T, F]``; steps past an example's length must not influence the steps
before it (recurrent nets freeze their carry there; attention masks them out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import jax
from flax import nnx

from recurrax._cell import Cell
from recurrax._validation import check_positive_int
from recurrax.cells._registry import CellEntry, cell_entry, registered_cells
from recurrax.nn._attention import TransformerEncoder
from recurrax.nn._conv import TCN
from recurrax.nn._layers import layer_for
from recurrax.nn._recurrent_block import RecurrentStack
from recurrax.nn._rnn import RNN
from recurrax.nn._stacked import StackedRNN

Array = jax.Array


class Backbone(Protocol):
    """What a model needs from a backbone: ``backbone(xs[B, T, D], lengths=None) -> ys[B, T, F]``."""

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array: ...


#: ``factory(in_features, hidden_size, *, rngs, **options) -> (module, out_features)``.
BackboneFactory = Callable[..., tuple[nnx.Module, int]]


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its factory and a one-line summary."""

    name: str
    factory: BackboneFactory
    summary: str


_BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(name: str, factory: BackboneFactory, *, summary: str, overwrite: bool = False) -> None:
    """Makes ``factory`` available to every model as ``cell=name``.

    Args:
      name: the name models and the command line use (e.g. ``"lstm"``).
      factory: ``factory(in_features, hidden_size, *, rngs, **options)`` returning
        ``(module, out_features)``, where ``module(xs[B, T, D], lengths=None)``
        gives ``[B, T, out_features]``.
      summary: one line for listings such as ``recurrax train --help``.
      overwrite: replace an existing entry instead of raising.

    Example (a backbone that passes its inputs through)::

        class Identity(nnx.Module):
            def __call__(self, xs, *, lengths=None):
                return xs

        register_backbone("identity", lambda d, h, *, rngs: (Identity(), d), summary="no mixing")
        model = SequenceClassifier(3, 10, cell="identity", rngs=nnx.Rngs(0))
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    if (name in _BACKBONES or any(name in _cell_backbone_names(e) for e in registered_cells())) and not overwrite:
        raise ValueError(f"a backbone named {name!r} is already registered; pass overwrite=True to replace it")
    _BACKBONES[name] = BackboneSpec(name=name, factory=factory, summary=summary)


def backbone_names() -> tuple[str, ...]:
    """The backbone names, sorted: every registered cell's and every :func:`register_backbone` entry."""
    return tuple(sorted({*_BACKBONES, *(e.backbone for e in registered_cells() if e.backbone is not None)}))


def _cell_backbone_names(entry: CellEntry) -> tuple[str, ...]:
    """The names that build a registered cell's backbone: its backbone name, its factory's, its aliases."""
    return () if entry.backbone is None else (entry.backbone, entry.name, *entry.aliases)


def backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` registered as ``name`` (a registered cell's backbone is derived from it).

    A cell's backbone also answers to the cell's factory name and aliases
    (``"min_gru"`` and ``"mingru"``, ``"simple_rnn"`` and ``"rnn"``).
    """
    if name in _BACKBONES:
        return _BACKBONES[name]
    for entry in registered_cells():
        if name in _cell_backbone_names(entry):
            assert entry.backbone is not None
            factory = _recurrent(entry.name) if entry.block is None else _residual_blocks(entry.name)
            return BackboneSpec(name=entry.backbone, factory=factory, summary=entry.summary)
    raise ValueError(f"cell must be one of {', '.join(backbone_names())} or a recurrax Cell; got {name!r}")


def make_backbone(
    cell: str | Cell, in_features: int, hidden_size: int, *, rngs: nnx.Rngs, **options: Any
) -> tuple[nnx.Module, int]:
    """Builds a backbone by registered name, or wraps a pure :class:`~recurrax.cells.Cell` in ``recurrax.nn.RNN``.

    Returns ``(module, out_features)``. With a ``Cell``, ``hidden_size`` is the
    cell's own and ``options`` go to ``recurrax.nn.RNN``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax.models import make_backbone
      >>> gru, features = make_backbone("gru", 3, 8, rngs=nnx.Rngs(0))
      >>> gru(jnp.ones((2, 5, 3))).shape, features
      ((2, 5, 8), 8)
    """
    if isinstance(cell, Cell):
        return RNN(cell, in_features, rngs=rngs, **options), cell.output_size
    if not isinstance(cell, str):
        raise TypeError(f"cell must be a backbone name or a recurrax Cell, got {type(cell).__name__}")
    module, out_features = backbone_spec(cell).factory(in_features, hidden_size, rngs=rngs, **options)
    return module, int(out_features)


# ------------------------------------------------------------------ built-ins
def _recurrent(cell_name: str) -> BackboneFactory:
    """A registered cell's backbone: ``depth`` of its ``recurrax.nn`` layers, stacked, with the registry's defaults."""

    def factory(
        in_features: int, hidden_size: int, *, rngs: nnx.Rngs, depth: int = 1, **options: Any
    ) -> tuple[nnx.Module, int]:
        check_positive_int(depth, "depth")
        make_layer: Callable[..., RNN] = layer_for(cell_entry(cell_name))  # (in_features, hidden_size, ...)
        layers = [make_layer(in_features, hidden_size, rngs=rngs, **options)]
        for _ in range(depth - 1):
            layers.append(make_layer(layers[-1].out_features, hidden_size, rngs=rngs, **options))
        if depth == 1:
            return layers[0], layers[0].out_features
        return StackedRNN(layers, rngs=rngs), layers[-1].out_features

    return factory


def _residual_blocks(cell_name: str) -> BackboneFactory:
    """A registered cell's backbone in its paper's residual block: ``depth`` blocks of width ``hidden_size``.

    The cell's own width is ``expansion × hidden_size``; options that are the
    cell's fields build the cell, the rest are the stack's and blocks' options
    (over the registry's defaults for this cell).
    """

    def factory(
        in_features: int,
        hidden_size: int,
        *,
        rngs: nnx.Rngs,
        depth: int = 1,
        expansion: int = 1,
        **options: Any,
    ) -> tuple[nnx.Module, int]:
        check_positive_int(depth, "depth")
        check_positive_int(expansion, "expansion")
        entry = cell_entry(cell_name)
        assert entry.block is not None
        cell_fields = {f.name for f in dataclasses.fields(entry.cell_type) if f.init} - {"hidden_size"}
        cell_options = {name: options.pop(name) for name in list(options) if name in cell_fields}
        if "out_features" in cell_fields:  # a cell with its own output projection (LRU) maps back to the width
            cell_options.setdefault("out_features", hidden_size)
        cell = entry.factory(expansion * hidden_size, **cell_options)
        block_options = {**entry.block, **options}
        stack = RecurrentStack(in_features, cell, num_blocks=depth, features=hidden_size, rngs=rngs, **block_options)
        return stack, stack.out_features

    return factory


def _tcn(
    in_features: int,
    hidden_size: int,
    *,
    rngs: nnx.Rngs,
    num_levels: int = 5,
    kernel_size: int = 3,
    depth: int | None = None,
    **options: Any,
) -> tuple[nnx.Module, int]:
    num_levels = num_levels if depth is None else depth  # a TCN's depth is its number of levels
    # Five levels of kernel 3 see 125 steps back (1 + 2·(3-1)·(1+2+4+8+16)):
    # enough for the built-in tasks at their default lengths.
    return TCN(in_features, hidden_size, rngs=rngs, num_levels=num_levels, kernel_size=kernel_size, **options), (
        hidden_size
    )


def _transformer(
    in_features: int,
    hidden_size: int,
    *,
    rngs: nnx.Rngs,
    num_layers: int = 2,
    num_heads: int | None = None,
    depth: int | None = None,
    **options: Any,
) -> tuple[nnx.Module, int]:
    num_layers = num_layers if depth is None else depth
    if num_heads is None:  # 4 heads, or the most heads up to 4 that split hidden_size evenly
        num_heads = next(h for h in (4, 3, 2, 1) if hidden_size % h == 0)

    encoder = TransformerEncoder(
        in_features, num_layers=num_layers, num_heads=num_heads, features=hidden_size, rngs=rngs, **options
    )
    return encoder, encoder.out_features


register_backbone("tcn", _tcn, summary="temporal convolutional network (Bai et al. 2018), causal, 125-step view")
register_backbone(
    "transformer", _transformer, summary="Transformer encoder (pre-LN, 2 layers, up to 4 heads, sinusoidal positions)"
)
