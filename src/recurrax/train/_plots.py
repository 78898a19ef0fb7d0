"""Training plots as PNG files (matplotlib's Agg renderer, no pyplot, no display).

matplotlib is imported inside each function, so ``import recurrax.train``
stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recurrax.train._history import History

_NOT_CURVES = ("epoch", "step")
_DECADES = 10.0


def plot_history(history: History, path: str | os.PathLike[str], *, metrics: Sequence[str] | None = None) -> Path:
    """Loss and metric curves per epoch (train and ``val_*`` on the same axes), one panel per metric.

    Args:
      history: a run's :class:`~recurrax.train.History`.
      path: the PNG file to write.
      metrics: which metrics (default: every train metric, e.g. ``["loss", "accuracy"]``).

    Returns:
      ``path`` as a ``Path``.
    """
    if not history.epochs:
        raise ValueError("history has no epochs to plot")
    keys = history.keys(per="epoch")
    names = (
        list(metrics) if metrics is not None else [k for k in keys if k not in _NOT_CURVES and not k.startswith("val_")]
    )
    names = names or [k[4:] for k in keys if k.startswith("val_")]
    missing = [n for n in names if n not in keys and f"val_{n}" not in keys]
    if missing:
        raise ValueError(f"no epoch metric named {missing}; have {keys}")
    fig, axes = _figure(len(names), width=4.0)
    epochs = history.series("epoch")
    for ax, name in zip(axes, names, strict=False):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if key in keys:
                ax.plot(epochs, history.series(key), marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_gradient_norms(history: History, path: str | os.PathLike[str]) -> Path:
    """Gradient norms over training steps (log scale): global norms, and per layer.

    Left: ``grad_norm`` (before clipping), ``clipped_grad_norm``, ``update_norm``
    and ``param_norm``, as the fit loop's diagnostics logged them. Right: the
    per-layer ``grad_norm/<layer>`` curves.
    """
    if not history.steps:
        raise ValueError("history has no steps to plot")
    keys = history.keys(per="step")
    if "grad_norm" not in keys:
        raise ValueError("history has no gradient diagnostics (was the run made with diagnostics=False?)")
    steps = history.series("step", per="step")
    layers = [k for k in keys if k.startswith("grad_norm/")]
    fig, axes = _figure(2 if layers else 1, width=5.0)
    for key in ("grad_norm", "clipped_grad_norm", "update_norm", "param_norm"):
        if key in keys:
            axes[0].plot(steps, _positive(history.series(key, per="step")), label=key, linewidth=1)
    axes[0].set_title("global norms")
    if layers:
        for key in layers:
            axes[1].plot(steps, _positive(history.series(key, per="step")), label=key[len("grad_norm/") :], linewidth=1)
        axes[1].set_title("gradient norm per layer")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_gradient_flow(
    flow: Any,
    path: str | os.PathLike[str],
    *,
    steps: Sequence[int] | np.ndarray | None = None,
    layer_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Plots ‖∂L/∂h_t‖: curves over t for ``[layers, T]``, or heatmaps over training for ``[S, layers, T]``.

    Args:
      flow: :func:`~recurrax.train.gradient_flow`'s ``[layers, T]``, or a stack
        ``[S, layers, T]`` over training (``GradientFlowRecorder.flows``). A
        dict ``{"name": flow}`` compares models: curves on one axis for
        ``[layers, T]`` arrays, side-by-side heatmaps on one colour scale for
        ``[S, layers, T]`` arrays.
      path: the PNG file to write.
      steps: the training step of each of the ``S`` rows (heatmap y axis).
      layer_names: one name per layer.
      title: a title for the figure.

    Example:
      >>> import numpy as np, tempfile, os
      >>> flow = np.exp(-np.arange(50.0))[None]  # one layer, T = 50
      >>> path = plot_gradient_flow(flow, os.path.join(tempfile.mkdtemp(), "flow.png"))
      >>> path.suffix
      '.png'
    """
    flows = {k: np.asarray(v) for k, v in flow.items()} if isinstance(flow, dict) else {"": np.asarray(flow)}
    dims = {f.ndim for f in flows.values()}
    if len(dims) != 1 or dims.pop() not in (2, 3):
        shapes = {k: f.shape for k, f in flows.items()}
        raise ValueError(f"flow must be [layers, T] or [S, layers, T] (all alike), got shapes {shapes}")
    if next(iter(flows.values())).ndim == 2:
        return _plot_flow_curves(flows, path, layer_names, title)
    return _plot_flow_heatmaps(flows, path, steps, layer_names, title)


def _plot_flow_heatmaps(
    flows: dict[str, np.ndarray],
    path: str | os.PathLike[str],
    steps: Sequence[int] | np.ndarray | None,
    layer_names: Sequence[str] | None,
    title: str | None,
) -> Path:
    num_steps = {f.shape[0] for f in flows.values()}
    if len(num_steps) != 1:
        raise ValueError(f"flows to compare must have the same number of rows S, got {sorted(num_steps)}")
    (num_rows,) = num_steps
    step_of_row = np.arange(num_rows) if steps is None else np.asarray(steps)
    if step_of_row.shape != (num_rows,):
        raise ValueError(f"steps must have {num_rows} entries (one per row of flow), got shape {step_of_row.shape}")
    panels = []
    for label, flow in flows.items():
        names = _layer_names(layer_names, flow.shape[1])
        panels += [(" — ".join(x for x in (label, names[i]) if x), flow[:, i, :]) for i in range(flow.shape[1])]
    tiny = np.finfo(np.float32).tiny
    logs = [np.log10(np.maximum(values, tiny)) for _, values in panels]
    # One colour scale for every panel, so that panels compare; at most
    # _DECADES decades, so that one underflow to ~0 does not wash the rest out.
    high = max(float(x.max()) for x in logs)
    low = max(min(float(x.min()) for x in logs), high - _DECADES)
    clipped = any(float(x.min()) < low for x in logs)
    fig, axes = _figure(len(panels), width=4.6)
    ticks = np.linspace(0, num_rows - 1, min(num_rows, 6)).round().astype(int)
    image = None
    for ax, (name, _), log_flow in zip(axes, panels, logs, strict=True):
        image = ax.imshow(
            log_flow,
            aspect="auto",
            origin="lower",
            cmap="viridis",
            vmin=low,
            vmax=high,
            extent=(-0.5, log_flow.shape[1] - 0.5, -0.5, num_rows - 0.5),
            interpolation="nearest",
        )
        ax.set_yticks(ticks, [str(int(step_of_row[t])) for t in ticks])
        ax.set_xlabel("time step t")
        ax.set_ylabel("training step")
        ax.set_title(name)
    fig.colorbar(image, ax=axes, label="log10 ‖∂L/∂h_t‖", extend="min" if clipped else "neither")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _plot_flow_curves(
    flows: dict[str, np.ndarray], path: str | os.PathLike[str], layer_names: Sequence[str] | None, title: str | None
) -> Path:
    fig, axes = _figure(1, width=6.0)
    ax = axes[0]
    for label, flow in flows.items():
        names = _layer_names(layer_names, flow.shape[0])
        for i in range(flow.shape[0]):
            name = " / ".join(x for x in (label, names[i] if flow.shape[0] > 1 or layer_names else "") if x)
            ax.plot(np.arange(flow.shape[1]), _positive(flow[i]), label=name or None, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("‖∂L/∂h_t‖")
    if any(line.get_label() and not line.get_label().startswith("_") for line in ax.get_lines()):
        ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(title or "gradient flow through time")
    return _save(fig, path)


def _layer_names(names: Sequence[str] | None, count: int) -> list[str]:
    if names is None:
        return [f"layer {i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"layer_names has {len(names)} names for {count} layers")
    return list(names)


def _positive(values: Any) -> np.ndarray:
    # Zeros (no gradient reached) cannot sit on a log axis; show them as gaps.
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values, np.nan)


def _figure(panels: int, *, width: float) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * panels, 3.4), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG; path must end in .png, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    return path
