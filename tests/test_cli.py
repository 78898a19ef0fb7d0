"""The ``recurrax`` command: one-line argument errors, a tiny end-to-end run, evaluate, exact resume."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from recurrax.cli import main
from recurrax.train import History

# A run small enough for the test suite: binary task with lengths, LSTM, dropout.
TINY = [
    "--task", "sentiment", "--seq-len", "6", "--num-train", "24", "--num-validation", "8", "--num-test", "8",
    "--hidden", "4", "--dense", "4", "--batch-size", "8", "--lr", "0.01", "--clip", "1.0", "--no-progress",
]  # fmt: skip


def _one_line_error(capsys, argv: list[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("recurrax") and ": error: " in lines[0], err
    assert expected in lines[0], err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "required: {train,evaluate,list}"),
        (["fly"], "invalid choice: 'fly'"),
        (["train", "--task", "adding"], "--out DIR is required"),
        (["train", "--out", "x"], "--task is required"),
        (["train", "--task", "adding", "--epochs", "0", "--out", "x"], "argument --epochs: expected a positive"),
        (["train", "--task", "adding", "--lr", "fast", "--out", "x"], "argument --lr: expected a positive number"),
        (["train", "--task", "adding", "--dropout", "1", "--out", "x"], "argument --dropout: expected a rate"),
        (["train", "--task", "adding", "--nope", "--out", "x"], "unrecognized arguments: --nope"),
        (["train", "--task", "nope", "--out", "x"], "task must be one of adding, copy"),
        (["train", "--task", "mnist1d", "--seq-len", "9", "--out", "x"], "--seq-len does not apply"),
        (["train", "--task", "digits-rows", "--num-train", "9", "--out", "x"], "--num-train does not apply"),
        (["train", "--task", "adding", "--cell", "lsmt", "--out", "x"], "cell must be one of"),
        (["train", "--task", "adding", "--optimizer", "adamz", "--out", "x"], "optimizer 'adamz'"),
        (["train", "--resume", "no/such/dir"], "no/such/dir is not a directory"),
        (["evaluate", "no/such/dir"], "no/such/dir is not a directory"),
        (["evaluate", "x", "--step", "first"], "argument --step: expected 'latest', 'best' or a step"),
        (["train", "--task", "adding", "--on-corrupt", "fallback", "--out", "x"], "--on-corrupt applies to --resume"),
        (["train", "--resume", "x", "--on-corrupt", "skip"], "argument --on-corrupt: invalid choice: 'skip'"),
    ],
)
def test_argument_errors_are_one_line(capsys, monkeypatch, tmp_path, argv, expected):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, argv, expected)
    assert not (tmp_path / "x").exists()  # nothing written for a refused command


@pytest.mark.parametrize(
    ("out", "expected"),
    [("taken", "--out taken is an existing file"), ("taken/run", "cannot be created: taken is a file")],
)
def test_an_unusable_out_is_refused_before_any_work(capsys, monkeypatch, tmp_path, out, expected):
    import recurrax.cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("not a run")
    monkeypatch.setattr(recurrax.cli, "_build", lambda config: pytest.fail("built data and a model first"))
    _one_line_error(capsys, ["train", "--task", "adding", "--out", out], expected)


def test_the_console_script_and_module_entry_points(tmp_path):
    (script,) = entry_points(group="console_scripts", name="recurrax")
    assert script.value == "recurrax.cli:main"
    result = subprocess.run(
        [sys.executable, "-m", "recurrax", "train", "--task", "adding", "--epochs", "ten", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "recurrax train: error: argument --epochs: expected a positive integer, got 'ten' (see recurrax train --help)"
    )


def test_list_names_every_task_and_backbone(capsys):
    from recurrax.models import backbone_names
    from recurrax.tasks import task_names

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (*task_names(), *backbone_names()):
        assert f"  {name} " in out


def _final_lines(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  validation"))
    return lines[start : start + 3]


def test_train_evaluate_and_exact_resume(capsys, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(whole)]) == 0
    trained = capsys.readouterr().out
    for name in ("config.json", "metrics.json", "history.json", "history_steps.csv", "history.png",
                 "gradient_norms.png", "gradient_flow.png", "gradient_flow_heatmap.png"):  # fmt: skip
        assert (whole / name).is_file(), name
    assert any((step / "metrics").is_dir() for step in (whole / "checkpoints").iterdir())  # orbax's best-step record
    metrics = json.loads((whole / "metrics.json").read_text())
    assert set(metrics["test"]) == {"loss", "binary_accuracy"} and metrics["step"] == 6
    assert metrics["baseline"]["accuracy"] == pytest.approx(metrics["task"]["baseline"])

    # evaluate reloads the saved model and prints the same numbers.
    assert main(["evaluate", str(whole)]) == 0
    assert _final_lines(capsys.readouterr().out) == _final_lines(trained)

    # One epoch, then --resume to two: bit-identical history and metrics (dropout included).
    assert main(["train", *TINY, "--epochs", "1", "--out", str(split)]) == 0
    assert main(["train", "--resume", str(split), "--epochs", "2", "--no-progress"]) == 0
    assert History.load(split) == History.load(whole)
    resumed = json.loads((split / "metrics.json").read_text())
    assert (resumed["validation"], resumed["test"]) == (metrics["validation"], metrics["test"])
    capsys.readouterr()

    # Refusals once a run exists.
    _one_line_error(capsys, ["train", *TINY, "--out", str(whole)], "already holds a run")
    _one_line_error(capsys, ["train", "--resume", str(whole), "--lr", "0.1"], "only --epochs")
    _one_line_error(capsys, ["train", "--resume", str(whole), "--epochs", "1"], "can only be extended")


def test_mnist1d_without_validation_trains_and_evaluates(capsys, monkeypatch, tmp_path):
    """--validation-fraction 0: the paper's split; checkpoints monitor the training loss."""
    import recurrax.tasks

    seen = {}

    def small_mnist1d(name, **options):
        seen.update(options)
        return recurrax.tasks.mnist1d(num_samples=100, validation_fraction=options["validation_fraction"])

    monkeypatch.setattr(recurrax.tasks, "load_task", small_mnist1d)
    run = tmp_path / "run"
    argv = ["train", "--task", "mnist1d", "--validation-fraction", "0", "--hidden", "4", "--dense", "0"]
    assert main([*argv, "--epochs", "1", "--batch-size", "40", "--no-progress", "--out", str(run)]) == 0
    assert seen["validation_fraction"] == 0.0
    out = capsys.readouterr().out
    assert "80 train / 0 validation / 20 test examples" in out and "  validation" not in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert "validation" not in metrics and metrics["test"]["accuracy"] >= 0.0
    assert main(["evaluate", str(run)]) == 0
    assert "  test" in capsys.readouterr().out


def test_resume_from_a_corrupt_checkpoint_is_one_line_or_falls_back(capsys, tmp_path):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--checkpoint-every", "1", "--out", str(run)]) == 0
    for path in (run / "checkpoints" / "3").rglob("*"):
        if path.is_file() and path.parent.name == "d":  # the array chunks of the latest step
            path.write_bytes(b"garbage")
    capsys.readouterr()
    _one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "2"], "--on-corrupt fallback")
    with pytest.warns(UserWarning, match="resuming from step 2, the newest intact checkpoint"):
        assert main(["train", "--resume", str(run), "--epochs", "2", "--on-corrupt", "fallback", "--no-progress"]) == 0
    assert json.loads((run / "metrics.json").read_text())["step"] == 6
    assert (run / "checkpoints" / "3.corrupt").is_dir()


def test_fresh_data_by_steps_resumes_exactly(capsys, tmp_path):
    """--fresh-data --steps: batch g is drawn from (seed, g), so a resumed run reads what an uninterrupted one did."""
    adding = ["--task", "adding", "--seq-len", "8", "--num-validation", "16", "--num-test", "16", "--hidden", "8"]
    flags = [*adding, "--fresh-data", "--eval-every", "3", "--batch-size", "8", "--steps-per-call", "2"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", *flags, "--steps", "6", "--no-progress", "--out", str(whole)]) == 0
    out = capsys.readouterr().out
    assert "a fresh batch per step" in out and "final metrics after 6 steps" in out
    assert main(["train", *flags, "--steps", "3", "--no-progress", "--out", str(split)]) == 0
    assert main(["train", "--resume", str(split), "--steps", "6", "--no-progress"]) == 0
    a, b = History.load(whole), History.load(split)
    assert [r["step"] for r in a.epochs] == [3, 6] and a.epochs == b.epochs and a.steps == b.steps
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (whole, split)]
    assert metrics[0]["validation"] == metrics[1]["validation"] and metrics[0]["test"] == metrics[1]["test"]
    _one_line_error(capsys, ["train", "--resume", str(split), "--epochs", "3"], "the run trains by steps")
