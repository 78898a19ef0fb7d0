"""A heatmap of one recorded internal (a gate, a cell state, a coefficient) over time, for one example.

The records come from ``recurrax.scan(..., record=True)`` or
``recurrax.nn.recording()``. matplotlib's object API with the Agg renderer,
imported only when a plot is made, as the dynamics figures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from recurrax.interpret._dynamics_plots import _figure, _finish, _pick_example


def plot_recording(
    records: Mapping[str, Any] | Any,
    name: str | None = None,
    *,
    example: int | None = 0,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Any:
    """Draws one recorded internal of one example as a heatmap: units down, steps across.

    Gates (every value in ``[0, 1]``) share the fixed scale ``[0, 1]``, so
    saturation shows as the ends of the colour map; anything else gets a
    diverging scale centred on zero. A complex record (the LRU's ``a``, ``b``)
    is drawn as its magnitude. Steps past an example's length are zeros in
    the records and show as such.

    Args:
      records: a dict of records ``{name: [B, T, ...]}`` (what ``scan(...,
        record=True)`` returns, or one entry of ``nn.recording()``'s list), or
        one array ``[B, T, ...]``.
      name: which record of the dict (needed unless it holds only one).
      example: which example of the batch axis; ``None``: the array is one
        example's, ``[T, ...]``. Trailing axes (a ConvLSTM's space) are flattened into units.
      path: also write the figure to this PNG file.
      title: the figure's title (default: the name and the example).

    Returns:
      The ``matplotlib.figure.Figure``.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> from recurrax.interpret import plot_recording
      >>> cell = recurrax.gru(4)
      >>> params = cell.init(jax.random.key(0), in_features=2)
      >>> _, _, records = recurrax.scan(cell, params, jnp.ones((1, 6, 2)), record=True)
      >>> type(plot_recording(records, name="z")).__name__
      'Figure'
    """
    if isinstance(records, Mapping):
        if name is None:
            if len(records) != 1:
                raise ValueError(f"name= picks one of the records {sorted(records)}")
            name = next(iter(records))
        if name not in records:
            raise KeyError(f"no record named {name!r}; the records are {sorted(records)}")
        value = records[name]
    else:
        value = records
    array = np.asarray(value)
    if example is not None:
        if array.ndim < 2:
            raise ValueError(f"records must be [B, T, ...] (or [T, ...] with example=None), got shape {array.shape}")
        array = _pick_example(array, example)
    if array.ndim < 1:
        raise ValueError(f"one example's record must be [T, ...], got shape {array.shape}")
    label = name or "record"
    if np.iscomplexobj(array):
        array, label = np.abs(array), f"|{label}|"
    grid = array.reshape(array.shape[0], -1).astype(np.float64).T  # [units, T]

    fig, (axes,) = _figure(1, width=6.0)
    if grid.size and grid.min() >= 0.0 and grid.max() <= 1.0:
        image = axes.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    else:
        bound = float(np.abs(grid).max()) if grid.size else 1.0
        bound = bound or 1.0
        image = axes.imshow(grid, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-bound, vmax=bound)
    fig.colorbar(image, ax=axes, label=label)
    axes.set_xlabel("step t")
    axes.set_ylabel("unit")
    axes.set_title(label if example is None else f"{label}, example {example}")
    return _finish(fig, path, title)
