"""The ``recurrax`` command: one-line argument errors before jax loads, a tiny end-to-end run with its
per-epoch lines, evaluate, exact resume, a quiet Ctrl-C during a checkpoint write, ``doctor``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from recurrax import info
from recurrax.cli import main
from recurrax.train import History

# A run small enough for the test suite: binary task with lengths, LSTM, dropout.
TINY = [
    "--task", "sentiment", "--seq-len", "6", "--num-train", "24", "--num-validation", "8", "--num-test", "8",
    "--hidden", "4", "--dense", "4", "--batch-size", "8", "--lr", "0.01", "--clip", "1.0", "--no-progress",
]  # fmt: skip


@pytest.fixture
def no_plots(monkeypatch):
    """The run's figures are checked once (the tiny_run fixture); elsewhere they cost ~1 s a run."""
    from recurrax import train

    for name in ("plot_history", "plot_gradient_norms", "plot_gradient_flow"):
        monkeypatch.setattr(train, name, lambda *args, **kwargs: None)


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
        ([], "required: {train,evaluate,list,doctor}"),
        (["fly"], "invalid choice: 'fly'"),
        (["train", "--task", "adding"], "--out DIR is required"),
        (["train", "--out", "x"], "--task is required"),
        (["train", "--task", "adding", "--epochs", "0", "--out", "x"], "argument --epochs: expected a positive"),
        (["train", "--task", "adding", "--lr", "fast", "--out", "x"], "argument --lr: expected a positive number"),
        (["train", "--task", "adding", "--depth", "0", "--out", "x"], "argument --depth: expected a positive"),
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
    import recurrax._cli_run

    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("not a run")
    monkeypatch.setattr(recurrax._cli_run, "build", lambda config: pytest.fail("built data and a model first"))
    _one_line_error(capsys, ["train", "--task", "adding", "--out", out], expected)


DOCS = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _doc_block(heading: str) -> list[str]:
    """The lines of the first code block after ``heading`` in docs/cli.md."""
    text = DOCS.read_text()
    section = text[text.index(heading) :]
    return section.split("```\n", 2)[1].splitlines()


def test_the_documented_errors_are_what_the_command_prints(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    lines = _doc_block("## Errors")
    commands = [(i, line) for i, line in enumerate(lines) if line.startswith("$ recurrax ")]
    assert len(commands) >= 3
    for i, line in commands:
        assert main(shlex.split(line)[2:]) == 2
        assert capsys.readouterr().err.strip() == lines[i + 1], line


def _imported(importtime: str) -> set[str]:
    """The modules named in ``python -X importtime``'s report (stderr)."""
    return {line.split("|")[-1].strip() for line in importtime.splitlines() if line.startswith("import time:")}


def test_the_entry_points_answer_help_and_argument_errors_without_importing_jax(tmp_path):
    """Arguments are parsed before jax is imported: --help and a typo answer at once (0.2 s, not 2-5 s)."""
    (script,) = entry_points(group="console_scripts", name="recurrax")
    assert script.value == "recurrax.cli:main"
    said = {}
    for argv in (["--help"], ["train", "--task", "adding", "--epochs", "ten", "--out", str(tmp_path)]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "recurrax", *argv], capture_output=True, text=True, check=False
        )
        modules = _imported(result.stderr)
        assert "recurrax.cli" in modules and not {m for m in modules if m.split(".")[0] in ("jax", "flax")}
        errors = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
        said[argv[0]] = result.returncode, result.stdout, errors
    status, out, errors = said["--help"]
    assert status == 0 and "{train,evaluate,list,doctor}" in out and errors == []
    assert said["train"][0] == 2 and said["train"][2] == [
        "recurrax train: error: argument --epochs: expected a positive integer, got 'ten' (see recurrax train --help)"
    ]


def test_list_names_every_task_and_backbone(capsys):
    from recurrax.models import backbone_names
    from recurrax.tasks import task_names

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (*task_names(), *backbone_names()):
        assert f"  {name} " in out


def test_depth_reaches_the_backbone(monkeypatch, tmp_path):
    import recurrax._cli_run

    class BuiltError(Exception):
        pass

    def model_for_task(info, **options):
        raise BuiltError(options)

    monkeypatch.setattr(recurrax._cli_run, "model_for_task", model_for_task)
    with pytest.raises(BuiltError) as built:
        main(["train", *TINY, "--cell", "mingru", "--depth", "3", "--out", str(tmp_path / "run")])
    assert built.value.args[0]["depth"] == 3 and built.value.args[0]["cell"] == "mingru"


def _final_lines(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  validation"))
    return lines[start : start + 3]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One TINY run of two epochs, with its figures, and what it printed: several tests read it, and the
    corrupt-checkpoint test works on a copy (a training costs seconds of compiling)."""
    run = tmp_path_factory.mktemp("cli") / "whole"
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["train", *TINY, "--epochs", "2", "--out", str(run)]) == 0
    return run, out.getvalue()


def test_train_writes_the_run_and_evaluate_prints_its_numbers(tiny_run, capsys):
    whole, trained = tiny_run
    # --no-progress: one line per epoch, Keras' verbose=2 (loss, metrics, validation, seconds).
    epochs = [line for line in trained.splitlines() if line.startswith("epoch ")]
    assert [line.split(" - ")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"], trained
    line = r"epoch 2/2 - [\d.]+s - loss \S+ - binary_accuracy \S+ - val_loss \S+ - val_binary_accuracy \S+"
    assert re.fullmatch(line, epochs[1]), epochs[1]
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
    # A step the run does not hold is refused before any data or model is built.
    import recurrax._cli_run

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recurrax._cli_run, "build", lambda config: pytest.fail("built data and a model first"))
        _one_line_error(capsys, ["evaluate", str(whole), "--step", "5"], "--step 5: no checkpoint for step 5; steps: [")

    # Refusals once a run exists.
    _one_line_error(capsys, ["train", *TINY, "--out", str(whole)], "already holds a run")
    _one_line_error(capsys, ["train", "--resume", str(whole), "--lr", "0.1"], "only --epochs")
    _one_line_error(capsys, ["train", "--resume", str(whole), "--epochs", "1"], "can only be extended")


def test_resume_continues_exactly(tiny_run, no_plots, capsys, tmp_path):
    """One epoch, then --resume to two: the history and metrics of the uninterrupted run, bit for bit
    (dropout included)."""
    whole, split = tiny_run[0], tmp_path / "split"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(split)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(split), "--epochs", "2", "--no-progress"]) == 0
    resumed_out = capsys.readouterr().out
    assert "recurrax: resumed from the checkpoint of step 3 (end of epoch 1); training to epoch 2" in resumed_out
    assert [line.split(" - ")[0] for line in resumed_out.splitlines() if line.startswith("epoch ")] == ["epoch 2/2"]
    assert History.load(split) == History.load(whole)
    metrics, resumed = (json.loads((run / "metrics.json").read_text()) for run in (whole, split))
    assert (resumed["validation"], resumed["test"]) == (metrics["validation"], metrics["test"])


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_mnist1d_without_validation_trains_and_evaluates(no_plots, capsys, monkeypatch, tmp_path):
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


def test_resume_from_a_corrupt_checkpoint_is_one_line_or_falls_back(tiny_run, no_plots, capsys, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)  # checkpoints of steps 3 and 6
    for path in (run / "checkpoints" / "6").rglob("*"):
        if path.is_file() and path.parent.name == "d":  # the array chunks of the latest step
            path.write_bytes(b"garbage")
    _one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "3"], "--on-corrupt fallback")
    with pytest.warns(UserWarning, match="resuming from step 3, the newest intact checkpoint"):
        assert main(["train", "--resume", str(run), "--epochs", "3", "--on-corrupt", "fallback", "--no-progress"]) == 0
    assert json.loads((run / "metrics.json").read_text())["step"] == 9
    assert (run / "checkpoints" / "6.corrupt").is_dir()


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_fresh_data_by_steps_resumes_exactly(no_plots, capsys, tmp_path):
    """--fresh-data --steps: batch g is drawn from (seed, g), so a resumed run reads what an uninterrupted one did."""
    adding = ["--task", "adding", "--seq-len", "8", "--num-validation", "16", "--num-test", "16", "--hidden", "8"]
    flags = [*adding, "--fresh-data", "--eval-every", "3", "--batch-size", "8", "--steps-per-call", "2"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", *flags, "--steps", "6", "--no-progress", "--tensorboard", "--out", str(whole)]) == 0
    out = capsys.readouterr().out
    assert "a fresh batch per step" in out and "final metrics after 6 steps" in out
    assert [line.split(" - ")[0] for line in out.splitlines() if line.startswith("step ")] == ["step 3/6", "step 6/6"]
    assert main(["train", *flags, "--steps", "3", "--no-progress", "--tensorboard", "--out", str(split)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(split), "--steps", "6", "--no-progress", "--tensorboard"]) == 0
    out = capsys.readouterr().out
    assert "recurrax: resumed from the checkpoint of step 3; training to step 6" in out
    assert [line.split(" - ")[0] for line in out.splitlines() if line.startswith("step ")] == ["step 6/6"]
    a, b = History.load(whole), History.load(split)
    assert [r["step"] for r in a.epochs] == [3, 6] and a.epochs == b.epochs and a.steps == b.steps
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (whole, split)]
    assert metrics[0]["validation"] == metrics[1]["validation"] and metrics[0]["test"] == metrics[1]["test"]
    _one_line_error(capsys, ["train", "--resume", str(split), "--epochs", "3"], "the run trains by steps")
    # --tensorboard: the resumed run's event files hold the uninterrupted run's curves, each step once.
    assert _tensorboard_scalars(whole) == _tensorboard_scalars(split) and "epoch/val_loss" in _tensorboard_scalars(
        whole
    )


def _tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_without_its_package_is_one_line(capsys, monkeypatch, tmp_path):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name, *a)
    )
    _one_line_error(
        capsys, ["train", *TINY, "--tensorboard", "--out", str(tmp_path / "run")], 'pip install "recurrax[tensorboard]"'
    )


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_ctrl_c_during_a_checkpoint_write_finishes_it_and_says_one_line(tmp_path):
    """SIGINT the moment orbax's temporary directory of a save appears: the save completes, stderr is the
    one line and the resume hint (no orbax/asyncio tracebacks), exit status 130."""
    run = tmp_path / "run"
    argv = ["train", *TINY, "--epochs", "100", "--checkpoint-every", "1", "--out", str(run)]
    child = subprocess.Popen(
        [sys.executable, "-m", "recurrax", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        writing: list[str] = []
        while not writing and child.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                writing = [n for n in os.listdir(run / "checkpoints") if ".orbax-checkpoint-tmp" in n]
            time.sleep(0.002)  # a save takes tens of milliseconds
        assert writing, "no checkpoint write seen"
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=120)
    finally:
        child.kill()
    seen = int(writing[0].split(".")[0])  # the step whose write was under way
    assert child.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[1] == f"  continue with: recurrax train --resume {run}", err
    # The signal lands during that write (then S = C = seen) or, if the write ended before it arrived, just after.
    match = re.fullmatch(r"recurrax: interrupted at step (\d+); the last checkpoint is step (\d+)", lines[0])
    assert match and int(match[1]) >= int(match[2]) >= seen, err
    assert (run / "checkpoints" / str(seen)).is_dir()  # the write that was interrupted finished
    assert not [p for p in (run / "checkpoints").iterdir() if "tmp" in p.name]


def test_doctor_reports_versions_devices_environment_and_extras(capsys, monkeypatch):
    monkeypatch.setenv("RECURRAX_TEST_TOKEN", "not reported")  # only JAX_*, XLA_* and device variables are
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["packages"]["jax"] == info.version_of("jax") and report["packages"]["orbax-checkpoint"]
    assert set(report["optional"]) == set(info.OPTIONAL)
    assert report["jax"]["backend"] == "cpu" and report["jax"]["devices"][0]["platform"] == "cpu"
    assert report["jax"]["pallas"] == "Triton kernels, interpreted (no GPU): for tests, not speed"
    assert report["environment"]["XLA_FLAGS"] == os.environ["XLA_FLAGS"]  # tests/conftest.py sets it
    assert report["environment"]["JAX_PLATFORMS"] == "cpu" and "RECURRAX_TEST_TOKEN" not in report["environment"]
    assert report["extras"]["tasks"] == []  # scikit-learn and mnist1d are test dependencies
    text = info.format_report(report)
    assert re.search(r"^numpy +\d", text, re.M) and re.search(r"^recurrax\[tasks\] +usable$", text, re.M)
    assert re.search(rf"^XLA_FLAGS +{re.escape(os.environ['XLA_FLAGS'])}$", text, re.M)
    assert info.version_of("no-such-distribution-recurrax") is None
    broken = {**report, "jax": {"error": "RuntimeError: no devices"}, "extras": {"torch": ["torch (not installed)"]}}
    text = info.format_report(broken)
    assert re.search(r"^jax backend +unavailable: RuntimeError: no devices$", text, re.M)
    assert re.search(r"^recurrax\[torch\] +missing torch \(not installed\)$", text, re.M)
    # docs/cli.md's sample output has the rows the report prints.
    labels = {line.split("  ")[0] for line in info.format_report(report).splitlines()}
    sample = _doc_block("## `recurrax doctor`")
    assert sample and {line.split("  ")[0] for line in sample} <= labels | {"recurrax[torch]"}
    # The module entry point, in a process of its own.
    result = subprocess.run([sys.executable, "-m", "recurrax.info"], capture_output=True, text=True, check=True)
    assert re.search(r"^jax backend +cpu$", result.stdout, re.M) and result.stderr == ""


def test_explain_writes_attributions_and_figures_of_the_run(tiny_run, capsys):
    whole, _ = tiny_run
    argv = ["explain", str(whole), "--method", "ig", "--n", "3", "--plots", "1", "--num-steps", "32"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    saved = np.load(whole / "explain" / "integrated_gradients_test.npz")
    attributions, inputs, lengths = saved["attributions"], saved["inputs"], saved["lengths"]
    assert attributions.shape == inputs.shape and attributions.shape[0] == 3
    for i, length in enumerate(lengths):
        assert np.all(attributions[i, length:] == 0) and np.any(attributions[i, :length] != 0)
    # Integrated gradients are complete: they sum to the explained output's change from the zero baseline.
    from recurrax import _cli_run, train
    from recurrax.interpret import model_output

    _, model, _ = _cli_run.build(json.loads((whole / "config.json").read_text()))
    train.restore_model(whole / "checkpoints", model)
    model.eval()
    predicted = np.asarray(model(inputs, lengths=lengths)).argmax(-1)  # the class each row explains
    at_baseline = model_output(model, np.zeros_like(inputs), lengths=lengths, target=predicted)
    change = saved["explained_output"] - at_baseline
    np.testing.assert_allclose(attributions.sum((1, 2)), change, rtol=0.02, atol=1e-4)
    assert (whole / "explain" / "integrated_gradients_test_0.png").stat().st_size > 0
    assert not (whole / "explain" / "integrated_gradients_test_1.png").exists()
    assert "wrote" in out and "integrated_gradients attributions of 3 test examples" in out
    _one_line_error(capsys, ["explain", str(whole), "--step", "999"], "no checkpoint for step 999")
