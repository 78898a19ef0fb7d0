"""Figures of a recurrent model's dynamics: Jacobian spectra, and state trajectories with fixed points.

matplotlib's object API with the Agg renderer (no pyplot, no display),
imported inside each function so that ``import recurrax.interpret`` stays light.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def plot_jacobian_spectrum(
    singular_values: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> Any:
    """Singular values of the recurrent Jacobians: their distribution, and the largest and median over time.

    Left: the cumulative distribution of ``σ`` over every example, step and
    direction, on a log axis (curves rather than histograms, so that several
    models and a spectrum of a few discrete values, a linear cell's, stay
    readable); the line marks ``σ = 1``, where a gradient passes a step
    unchanged. Right: per step, the median over examples of the largest and of
    the median singular value. Exact zeros (the Jacobians past ``lengths``) are
    left out.

    Args:
      singular_values: :func:`~recurrax.interpret.jacobian_singular_values`'s
        ``[*B, T, S]``, or ``{"model name": [*B, T, S], ...}`` to compare models.
      path: also write the figure to this PNG file.
      title: a title for the figure.

    Returns:
      The ``matplotlib.figure.Figure``.

    Example:
      >>> import numpy as np
      >>> from recurrax.interpret import plot_jacobian_spectrum
      >>> sigma = np.exp(np.random.default_rng(0).normal(-1, 0.5, (8, 20, 4)))
      >>> type(plot_jacobian_spectrum({"model": sigma})).__name__
      'Figure'
    """
    spectra = singular_values if isinstance(singular_values, Mapping) else {"": singular_values}
    spectra = {str(name): np.asarray(s, dtype=np.float64) for name, s in spectra.items()}
    for name, s in spectra.items():
        if s.ndim < 2:
            raise ValueError(f"singular_values{f'[{name!r}]' if name else ''} must be [*B, T, S], got shape {s.shape}")
    fig, (cdf, steps) = _figure(2, width=4.6)
    for name, s in spectra.items():
        positive = np.sort(s[s > 0])
        if positive.size:
            cdf.step(positive, np.arange(1, positive.size + 1) / positive.size, where="post", label=name or None)
        per_step = np.where(s > 0, s, np.nan).reshape(-1, *s.shape[-2:])  # [B, T, S]
        t = np.arange(1, per_step.shape[1] + 1)
        with warnings.catch_warnings():  # a step where every example has ended: a gap in the curve
            warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
            (line,) = steps.plot(t, np.nanmedian(np.nanmax(per_step, axis=-1), axis=0), label=f"{name} largest".strip())
            steps.plot(
                t,
                np.nanmedian(np.nanmedian(per_step, axis=-1), axis=0),
                linestyle="--",
                color=line.get_color(),
                label=f"{name} median".strip(),
            )
    cdf.axvline(1.0, color="gray", linewidth=0.8)
    cdf.set_xscale("log")
    cdf.set_xlabel("singular value σ")
    cdf.set_ylabel("fraction of σ below")
    cdf.set_title("Jacobian singular values")
    steps.axhline(1.0, color="gray", linewidth=0.8)
    steps.set_yscale("log")
    steps.set_xlabel("step t")
    steps.set_title("over time (median over examples)")
    for ax in (cdf, steps):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _finish(fig, path, title)


def plot_pca_trajectories(
    projections: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    fixed_points: Any = None,
    stable: Any = None,
    max_trajectories: int = 20,
    title: str | None = None,
) -> Any:
    """State trajectories in the plane of two principal components, with fixed points.

    Args:
      projections: ``[*B, T, k]`` (``k >= 2``; the first two are drawn), e.g.
        :func:`~recurrax.interpret.pca_trajectories`'s ``projections``.
      path: also write the figure to this PNG file.
      fixed_points: ``[N, k]`` fixed points in the same coordinates
        (``pca.project(found.points)``).
      stable: ``[N]`` booleans: filled markers for stable points, hollow for unstable.
      max_trajectories: draw at most this many trajectories (the first ones).
      title: a title for the figure.

    Returns:
      The ``matplotlib.figure.Figure``.
    """
    traces = np.asarray(projections, dtype=np.float64)
    if traces.ndim < 2 or traces.shape[-1] < 2:
        raise ValueError(f"projections must be [*B, T, k] with k >= 2, got shape {traces.shape}")
    traces = traces.reshape(-1, *traces.shape[-2:])[:max_trajectories]
    fig, (ax,) = _figure(1, width=4.6)
    for i, trace in enumerate(traces):
        (line,) = ax.plot(trace[:, 0], trace[:, 1], linewidth=0.9, alpha=0.8)
        ax.plot(trace[0, 0], trace[0, 1], "o", markersize=4, color=line.get_color(), label="start" if i == 0 else None)
    if fixed_points is not None:
        points = np.asarray(fixed_points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] < 2:
            raise ValueError(f"fixed_points must be [N, k] with k >= 2, got shape {points.shape}")
        kinds = np.ones(len(points), bool) if stable is None else np.asarray(stable, bool)
        if kinds.shape != (len(points),):
            raise ValueError(f"stable must have shape ({len(points)},), got {kinds.shape}")
        for is_stable, label in ((True, "stable fixed point"), (False, "unstable fixed point")):
            chosen = points[kinds == is_stable]
            if len(chosen):
                ax.scatter(
                    chosen[:, 0],
                    chosen[:, 1],
                    s=50,
                    marker="X",
                    facecolors="black" if is_stable else "none",
                    edgecolors="black",
                    label=label if stable is not None else "fixed point",
                    zorder=3,
                )
    # Beside the axes: inside, the legend hid the points it names.
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.grid(alpha=0.3)
    return _finish(fig, path, title)


def _figure(panels: int, *, width: float) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, 3.6), layout="constrained")
    return fig, list(fig.subplots(1, panels, squeeze=False)[0])


def _pick_example(array: np.ndarray, example: int) -> np.ndarray:
    """``array[example]`` along the batch axis, or an ``IndexError`` naming the example and the batch size."""
    if not -array.shape[0] <= example < array.shape[0]:
        raise IndexError(f"example {example} is out of range for a batch of {array.shape[0]}")
    picked: np.ndarray = array[example]
    return picked


def _finish(fig: Any, path: str | os.PathLike[str] | None, title: str | None) -> Any:
    if title:
        fig.suptitle(title)
    if path is not None:
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise ValueError(f"plots are written as PNG; path must end in .png, got {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, format="png")
    return fig
