"""Figures of where a model looks: attributions over the input sequence, and attention maps per head.

matplotlib's object API with the Agg renderer, imported only when a plot is
made, as the other interpret figures.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from recurrax.interpret._dynamics_plots import _finish, _pick_example


def plot_attributions(
    attributions: Any,
    inputs: Any = None,
    *,
    example: int = 0,
    length: int | None = None,
    feature_names: list[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Any:
    """Draws one example's attributions ``[T, D]`` under its input sequence.

    Top panel (with ``inputs``): each input feature over time, the steps
    shaded by their total attribution ``Σ_d a[t, d]`` (red adds to the
    explained output, blue takes from it). Bottom panel: the attributions as
    a heatmap, features down and steps across, on a scale symmetric about
    zero. Steps at and past ``length`` are greyed out.

    Args:
      attributions: ``[B, T, D]`` (what :func:`~recurrax.interpret.explain` returns).
      inputs: the explained inputs ``[B, T, D]`` (optional).
      example: which example of the batch.
      length: the example's valid length (``None``: all ``T`` steps).
      feature_names: ``D`` labels for the features.
      path: also write the figure to this PNG file.
      title: the figure's title.

    Returns:
      The ``matplotlib.figure.Figure``.

    Example:
      >>> import numpy as np
      >>> from recurrax.interpret import plot_attributions
      >>> attributions = np.zeros((2, 10, 2)); attributions[0, 3] = 1.0
      >>> type(plot_attributions(attributions, np.ones((2, 10, 2)), length=8)).__name__
      'Figure'
    """
    scores = _example(attributions, "attributions", example)
    T, D = scores.shape
    xs = None
    if inputs is not None:
        xs = _example(inputs, "inputs", example)
        if xs.shape != scores.shape:
            raise ValueError(f"inputs must have the attributions' shape {scores.shape} per example, got {xs.shape}")
    if length is not None and not 0 <= length <= T:
        raise ValueError(f"length must be in [0, {T}], got {length}")
    if feature_names is not None and len(feature_names) != D:
        raise ValueError(f"feature_names must name the {D} features, got {len(feature_names)}")
    names = feature_names or [f"x[{d}]" for d in range(D)]

    from matplotlib.figure import Figure

    rows = 2 if xs is not None else 1
    fig = Figure(figsize=(7.0, 2.2 + 1.6 * rows + 0.12 * D), layout="constrained")
    axes = list(fig.subplots(rows, 1, squeeze=False, sharex=True)[:, 0])
    bound = float(np.abs(scores).max()) or 1.0
    if xs is not None:
        top = axes[0]
        per_step = scores.sum(axis=1)
        step_bound = float(np.abs(per_step).max()) or 1.0
        from matplotlib import colormaps

        cmap = colormaps["RdBu_r"]
        for t in range(T):
            top.axvspan(t - 0.5, t + 0.5, color=cmap(0.5 + 0.5 * per_step[t] / step_bound), alpha=0.6, lw=0)
        for d in range(D):
            top.plot(np.arange(T), xs[:, d], lw=1.2, label=names[d])
        top.set_ylabel("input")
        if D <= 8:
            top.legend(loc="upper right", fontsize="small", ncols=min(D, 4))
        top.set_title("inputs, steps shaded by their total attribution")
    heat = axes[-1]
    image = heat.imshow(scores.T, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-bound, vmax=bound)
    heat.set_yticks(range(D), names if D <= 16 else None)
    heat.set_xlabel("step t")
    heat.set_title("attribution per step and feature")
    fig.colorbar(image, ax=heat, label="attribution")
    if length is not None and length < T:
        for ax in axes:
            ax.axvspan(length - 0.5, T - 0.5, color="0.6", alpha=0.5, lw=0, zorder=3)
    for ax in axes:
        ax.set_xlim(-0.5, T - 0.5)
    return _finish(fig, path, title or f"example {example}")


def plot_attention(
    weights: Any,
    *,
    example: int = 0,
    heads: list[int] | None = None,
    path: str | os.PathLike[str] | None = None,
    title: str | None = None,
) -> Any:
    """Draws one example's attention weights, one map per head: queries down, keys across.

    Args:
      weights: ``[B, N, T, S]`` (what the attention modules return with
        ``return_weights=True``), or ``[N, T, S]`` for one example (then
        ``example`` is ignored).
      example: which example of the batch.
      heads: which heads (default: all).
      path: also write the figure to this PNG file.
      title: the figure's title.

    Returns:
      The ``matplotlib.figure.Figure``.

    Example:
      >>> import numpy as np
      >>> from recurrax.interpret import plot_attention
      >>> weights = np.full((1, 2, 5, 5), 0.2)
      >>> type(plot_attention(weights)).__name__
      'Figure'
    """
    array = np.asarray(weights)
    if array.ndim == 4:
        array = _pick_example(array, example)
    if array.ndim != 3:
        raise ValueError(f"weights must be [B, N, T, S] or [N, T, S], got shape {np.shape(weights)}")
    chosen = list(range(array.shape[0])) if heads is None else list(heads)
    if not chosen or any(not 0 <= h < array.shape[0] for h in chosen):
        raise ValueError(f"heads must pick among the {array.shape[0]} heads, got {heads}")

    from matplotlib.figure import Figure

    columns = min(4, len(chosen))
    rows = math.ceil(len(chosen) / columns)
    fig = Figure(figsize=(3.0 * columns + 0.8, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    images = []
    for ax in axes.flat[len(chosen) :]:
        ax.set_axis_off()
    for ax, head in zip(axes.flat, chosen, strict=False):
        images.append(
            ax.imshow(array[head], aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
        )
        ax.set_title(f"head {head}")
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    fig.colorbar(images[0], ax=axes, label="attention weight")
    return _finish(fig, path, title or f"attention, example {example}")


def _example(value: Any, name: str, example: int) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 3:
        raise ValueError(f"{name} must be [B, T, D], got shape {array.shape}")
    return _pick_example(array, example).astype(np.float64)
