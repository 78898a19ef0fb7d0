"""``recurrax train --precision``: the smallest CLI run of tests/test_cli.py in float16, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recurrax.cli import main
from recurrax.train import History
from test_cli import TINY


@pytest.fixture
def no_plots(monkeypatch):
    from recurrax import train

    for name in ("plot_history", "plot_gradient_norms", "plot_gradient_flow"):
        monkeypatch.setattr(train, name, lambda *args, **kwargs: None)


# slow: a training run with its own compiles (~2-6 CPU-s); the Trainer-level tests cover the same code on both legs
@pytest.mark.slow
def test_an_fp16_run_records_its_policy_and_logs_the_loss_scale(no_plots, capsys, tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--precision", "fp16", "--epochs", "1", "--out", str(run)]) == 0
    assert json.loads((run / "config.json").read_text())["precision"] == "fp16"
    steps = History.load(run).steps
    assert [row["loss_scale"] for row in steps] == [2.0**15] * len(steps)  # 3 finite steps: no overflow, no growth
    assert all(row["loss_scale_skipped"] == 0 for row in steps)
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["loss"])
    capsys.readouterr()
    assert main(["train", *TINY, "--precision", "int3", "--out", str(tmp_path / "x")]) == 2
    assert "argument --precision: invalid choice: 'int3' (choose from 'float32', 'bf16', 'fp16'" in (
        capsys.readouterr().err
    )
