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
    steps: Sequence[int] | None = None,
    layer_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Plots ‖∂L/∂h_t‖: curves over t for ``[layers, T]``, or heatmaps over training for ``[S, layers, T]``.

    Args:
      flow: :func:`~recurrax.train.gradient_flow`'s ``[layers, T]``, or a stack
        ``[S, layers, T]`` over training (``GradientFlowRecorder.flows``);
        several ``[layers, T]`` arrays may also be given as ``{"name": flow}``
        to compare models on one plot.
      path: the PNG file to write.
      steps: the training step of each of the ``S`` rows (heatmap y axis).
      layer_names: one name per layer.
      title: a title for the figure.
    """
    if isinstance(flow, dict):
        return _plot_flow_curves({k: np.asarray(v) for k, v in flow.items()}, path, layer_names, title)
    flow = np.asarray(flow)
    if flow.ndim == 2:
        return _plot_flow_curves({"": flow}, path, layer_names, title)
    if flow.ndim != 3:
        raise ValueError(f"flow must be [layers, T] or [S, layers, T], got shape {flow.shape}")
    num_steps, num_layers, num_times = flow.shape
    steps = np.arange(num_steps) if steps is None else np.asarray(steps)
    if steps.shape != (num_steps,):
        raise ValueError(f"steps must have {num_steps} entries (one per row of flow), got shape {steps.shape}")
    names = _layer_names(layer_names, num_layers)
    fig, axes = _figure(num_layers, width=5.0)
    log_flow = np.log10(np.maximum(flow, np.finfo(np.float32).tiny))
    for i, ax in enumerate(axes):
        image = ax.imshow(
            log_flow[:, i, :],
            aspect="auto",
            origin="lower",
            cmap="viridis",
            extent=(-0.5, num_times - 0.5, -0.5, num_steps - 0.5),
            interpolation="nearest",
        )
        ticks = np.linspace(0, num_steps - 1, min(num_steps, 6)).round().astype(int)
        ax.set_yticks(ticks, [str(int(steps[t])) for t in ticks])
        ax.set_xlabel("time step t")
        ax.set_ylabel("training step")
        ax.set_title(f"log10 ‖∂L/∂h_t‖ — {names[i]}")
        fig.colorbar(image, ax=ax)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _plot_flow_curves(
    flows: dict[str, np.ndarray], path: str | os.PathLike[str], layer_names: Sequence[str] | None, title: str | None
) -> Path:
    fig, axes = _figure(1, width=6.0)
    ax = axes[0]
    for label, flow in flows.items():
        if flow.ndim != 2:
            raise ValueError(f"flow {label!r} must be [layers, T], got shape {flow.shape}")
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
