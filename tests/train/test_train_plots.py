"""PNG plots, and that importing recurrax.train stays free of matplotlib and orbax."""

from __future__ import annotations

import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from recurrax import train


def synthetic_history():
    history = train.History()
    for step in range(1, 13):
        history.log_step(
            {
                "step": step,
                "epoch": (step - 1) // 4 + 1,
                "loss": 1.0 / step,
                "grad_norm": 2.0 / step,
                "clipped_grad_norm": min(2.0 / step, 1.0),
                "update_norm": 0.1,
                "param_norm": 3.0,
                "grad_norm/rnn": 1.5 / step,
                "grad_norm/head": 0.0,
            }
        )
    for epoch in range(1, 4):
        history.log_epoch(
            {
                "epoch": epoch,
                "step": 4 * epoch,
                "loss": 1.0 / epoch,
                "accuracy": 0.5 + 0.1 * epoch,
                "val_loss": 1.2 / epoch,
                "val_accuracy": 0.4 + 0.1 * epoch,
            }
        )
    return history


def read_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 100
    assert image[..., :3].std() > 0.01  # something was drawn
    return image


def test_history_and_gradient_norm_plots(tmp_path):
    history = synthetic_history()
    wide = read_png(train.plot_history(history, tmp_path / "curves.png"))  # two panels: loss, accuracy
    narrow = read_png(train.plot_history(history, tmp_path / "sub" / "loss.png", metrics=["loss"]))
    assert wide.shape[1] > 1.5 * narrow.shape[1]
    read_png(train.plot_gradient_norms(history, tmp_path / "norms.png"))  # zero norms are left out of the log plot


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_gradient_flow_plots(tmp_path):
    flow = np.exp(-np.linspace(0, 5, 20))[None].repeat(2, 0)
    read_png(train.plot_gradient_flow(flow, tmp_path / "curves.png", layer_names=["a", "b"]))
    read_png(train.plot_gradient_flow(np.stack([flow, flow * 2, flow * 3]), tmp_path / "heat.png", steps=[0, 5, 10]))
    read_png(train.plot_gradient_flow({"rnn": flow[:1], "lstm": flow[:1] * 0 + 1}, tmp_path / "compare.png"))
    one = read_png(train.plot_gradient_flow(np.stack([flow[:1]] * 3), tmp_path / "one.png"))
    two = read_png(
        train.plot_gradient_flow(
            {"a": np.stack([flow[:1]] * 3), "b": np.stack([flow[:1]] * 3)}, tmp_path / "two.png", steps=[0, 5, 10]
        )
    )
    assert two.shape[1] > 1.5 * one.shape[1]  # side by side


@pytest.mark.parametrize(
    ("plot", "match"),
    [
        (lambda p: train.plot_history(train.History(), p / "x.png"), "no epochs"),
        (
            lambda p: train.plot_history(synthetic_history(), p / "x.png", metrics=["f1"]),
            r"no epoch metric named \['f1'\]",
        ),
        (lambda p: train.plot_history(synthetic_history(), p / "x.jpg"), "must end in .png"),
        (lambda p: train.plot_gradient_flow(np.ones(5), p / "x.png"), r"\[layers, T\] or \[S, layers, T\]"),
        (lambda p: train.plot_gradient_flow({"a": np.ones((2, 5)), "b": np.ones((2, 2, 5))}, p / "x.png"), "all alike"),
        (
            lambda p: train.plot_gradient_flow({"a": np.ones((2, 1, 5)), "b": np.ones((3, 1, 5))}, p / "x.png"),
            "same number of rows",
        ),
        (lambda p: train.plot_gradient_flow(np.ones((2, 1, 5)), p / "x.png", steps=[1]), "steps must have 2"),
        (lambda p: train.plot_gradient_flow(np.ones((2, 5)), p / "x.png", layer_names=["a"]), "1 names for 2 layers"),
    ],
)
def test_plot_errors(tmp_path, plot, match):
    with pytest.raises(ValueError, match=match):
        plot(tmp_path)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_import_stays_light():
    code = (
        "import sys, recurrax, recurrax.train; "
        "heavy = [m for m in ('matplotlib', 'orbax.checkpoint', 'tqdm') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    ).stdout
    assert out.strip() == "[]"
