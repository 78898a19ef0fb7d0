"""Every Python block of the guides runs as written, and prints what the text says it prints.

The rule (tests/markdown_blocks.py): every ```` ```python ```` block of a page runs, in order, in one
namespace per page, unless the line before it is ``<!-- does not run: REASON -->``. Opting out is
rare and needs a reason a reader can check; the count is held here.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import recurrax.tasks._mnist1d as mnist1d
from markdown_blocks import blocks, run_page

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
# README.md runs in tests/test_readme.py, which also checks its results.
GUIDES = [page for page in PAGES if page.name != "README.md" and blocks(page)]
MAX_OPTED_OUT = 3


_generate_mnist1d = functools.cache(mnist1d._generate)


@pytest.fixture
def shared_mnist1d(monkeypatch):
    """MNIST-1D's generator runs once per process for each setting (~2 CPU-s for the 5,000 examples that
    docs/tasks.md and the quick start's record both build): its output depends on its arguments only."""

    def generate(num_samples: int, seed: int) -> dict[str, np.ndarray]:
        return {name: array.copy() for name, array in _generate_mnist1d(num_samples, seed).items()}

    monkeypatch.setattr(mnist1d, "_generate", generate)


@pytest.fixture
def isolated(monkeypatch, tmp_path, shared_mnist1d):
    """Cells and backbones a page registers stay in its test; files it writes go to ``tmp_path``."""
    import recurrax.cells._registry as cell_registry
    import recurrax.nn._backbones as backbones

    monkeypatch.setattr(cell_registry, "_ENTRIES", dict(cell_registry._ENTRIES))
    monkeypatch.setattr(backbones, "_BACKBONES", dict(backbones._BACKBONES))
    monkeypatch.chdir(tmp_path)


# slow: about 70 CPU-seconds for all pages together (mostly their models' compiles); the full leg runs them.
@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDES, ids=lambda page: page.name)
def test_guide_blocks_run_and_print_what_they_say(page, isolated):
    if re.search(r"^import torch|^from torch", page.read_text(), flags=re.M):
        pytest.importorskip("torch")
    run_page(page)


def test_few_blocks_opt_out_and_each_says_why():
    opted_out = [(page.name, block) for page in PAGES for block in blocks(page) if block.opt_out is not None]
    for name, block in opted_out:
        assert len(block.opt_out.split()) >= 4, f"{name}:{block.line}: say why the block does not run"
        compile(block.code, f"{name}:{block.line}", "exec", dont_inherit=True)  # it does not run, but it parses
    assert len(opted_out) <= MAX_OPTED_OUT, [f"{name}:{block.line}: {block.opt_out}" for name, block in opted_out]


def test_the_rule_finds_every_block():
    # A block the parser missed would silently not run: count the fences another way.
    for page in PAGES:
        assert page.read_text().count("```python") == len(blocks(page)), page.name


# ---------------------------------------------------------------- the quick start's numbers
# README.md and docs/cli.md quote the record that `python -m benchmarks.quickstart` writes from a real run
# of `make demo`'s command; these tests hold the text to the record, and the record to the code.
RECORD = ROOT / "benchmarks" / "results" / "quickstart.json"


def _quoted(run: dict) -> str:
    """How the docs quote one recorded run: its numbers and the stack they came from."""
    python = ".".join(run["stack"]["python"].split(".")[:2])
    test, validation = run["test"]["accuracy"], run["validation"]["accuracy"]
    return f"test accuracy {test:g}, validation {validation:g} on jax {run['stack']['jax']} (Python {python}"


def test_the_quickstart_numbers_in_the_docs_are_the_recorded_ones():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.quickstart import demo_command

    record = json.loads(RECORD.read_text())
    assert record["command"] == demo_command(), "make demo changed: rerun python -m benchmarks.quickstart"
    # Prose wraps anywhere: compare with every run of whitespace as one space.
    readme, cli = (" ".join((ROOT / page).read_text().split()) for page in ("README.md", "docs/cli.md"))
    first = record["runs"][0]
    for name, text in [("README.md", readme), ("docs/cli.md", cli)]:
        assert record["command"] in text, f"{name} does not show make demo's command"
        for run in record["runs"]:
            assert _quoted(run) in text, f"{name} should say {_quoted(run)!r} (benchmarks/results/quickstart.json)"
        assert f"{first['wall_seconds']:.0f} s" in text, f"{name}: the recorded run took {first['wall_seconds']} s"
    printed = " ".join(" ".join(first["printed"]).split())
    assert printed in cli, "docs/cli.md should show the lines the recorded run printed"


@pytest.mark.slow
def test_a_short_run_of_the_recorded_config_starts_as_the_record_did(shared_mnist1d):
    # The same config through the command's own builder and the trainer it uses, for a few steps: a change to
    # the data, model, initialisation or optimizer changes these losses (rounding moves them by ~1e-7).
    from recurrax import _cli_run, train

    record = json.loads(RECORD.read_text())
    config = record["runs"][0]["config"]
    data, model, optimizer = _cli_run.build(config)
    trainer = train.Trainer(model, optimizer, loss=data.info.loss, metrics=list(data.info.metrics))
    steps = len(record["runs"][0]["first_losses"])
    history = trainer.fit(data.train, steps=steps, batch_size=config["batch_size"], seed=config["seed"], progress=False)
    for run in record["runs"]:
        assert run["config"] == config
        np.testing.assert_allclose(
            [row["loss"] for row in history.steps],
            run["first_losses"],
            rtol=1e-5,
            err_msg="the quick start now trains differently: rerun python -m benchmarks.quickstart, update the docs",
        )


# ------------------------------------------------- docs/linear_recurrences.md's speed figures
def test_the_linear_recurrence_speed_figures_are_the_records():
    """Every figure of the page's Speed section, recomputed from benchmarks/results/cpu_linear.json."""
    rows = json.loads((ROOT / "benchmarks" / "results" / "cpu_linear.json").read_text())["linear"]
    text = " ".join((ROOT / "docs" / "linear_recurrences.md").read_text().split())

    def row(cell, method, mode, T):
        (found,) = [r for r in rows if (r["cell"], r["method"], r["mode"], r["config"]["T"]) == (cell, method, mode, T)]
        return found

    def span(values, digits=2):
        return f"{min(values):.{digits}f}–{max(values):.{digits}f}"

    single = [(cell, T) for cell in ("min_gru", "min_gru_log") for T in (1024, 4096)]
    train = [row(c, "parallel", "train", T)["vs_hand_written"] for c, T in single]
    forward = [row(c, "parallel", "forward", T)["vs_hand_written"] for c, T in single]
    cpu = [row(c, "parallel", m, T)["vs_hand_written_cpu"] for c, T in single for m in ("train", "forward")]
    two_layer = [row("min_gru ×2 (nn.RNN)", "parallel", "train", T)["vs_hand_written"] for T in (1024, 4096)]
    expected = [
        f"median times {span(train)} of the hand-written scan's for training steps and {span(forward)} for forward",
        f"(CPU time {span(cpu)})",
        f"model measured {span(two_layer)}",
    ]
    seq, par = (row("min_gru", m, "train", 4096)["median_s"] for m in ("sequential", "parallel"))
    expected.append(f"a training step took {seq:.1f} s sequential against {par:.1f} s parallel")
    seq, par = (row("min_gru", m, "forward", 4096)["median_s"] for m in ("sequential", "parallel"))
    expected.append(f"a forward pass {seq:.2f} s against {par:.1f} s")
    log_ratio = {
        (mode, T): row("min_gru_log", "parallel", mode, T)["median_s"] / row("min_gru", "parallel", mode, T)["median_s"]
        for mode in ("train", "forward")
        for T in (1024, 4096)
    }
    expected.append(
        f"Training steps took {log_ratio['train', 1024]:.1f}× the linear-space ones at T = 1024 and "
        f"{log_ratio['train', 4096]:.1f}× at T = 4096, forward passes {log_ratio['forward', 1024]:.1f}× and "
        f"{log_ratio['forward', 4096]:.1f}×"
    )
    for phrase in expected:
        assert phrase in text, f"docs/linear_recurrences.md should say: {phrase}"


def test_the_adding_attribution_figures_are_the_record():
    report = json.loads((ROOT / "benchmarks" / "results" / "attribution.json").read_text())
    text = " ".join((ROOT / "docs" / "interpretability.md").read_text().split())
    rows = {(r["model"], r["method"], r["baseline"]): r for r in report["rows"]}
    mse = {name: m["test_mse"] for name, m in report["models"].items()}

    def share(model, method="integrated_gradients", baseline="values 0.5, markers kept", key="marked_share_mean"):
        return f"{rows[model, method, baseline][key]:.3f}"

    lstm = rows["lstm", "integrated_gradients", "values 0.5, markers kept"]
    assert lstm["fraction_of_sequences_at_least_80pct"] == 1.0
    for phrase in (
        f"to test MSE {mse['lstm']:.1e}, puts **{share('lstm')}** of its attribution",
        f"**{share('lstm', 'shap')}** by SHAP and {share('lstm', 'occlusion')} by occlusion",
        f"(the smallest {share('lstm', key='marked_share_min')}); the same LSTM untrained puts "
        f"{share('lstm_untrained')} there",
        f"| 2,000 steps, constant rate 3e-3 | {mse['lstm_short']:.1e} | {share('lstm_short')} |",
        f"| 8,000 steps, cosine 3e-3 → 3e-5 | {mse['lstm_no_chrono']:.1e} | {share('lstm_no_chrono')} |",
        f"| the same with chrono initialisation | {mse['lstm']:.1e} | {share('lstm')} |",
        f"values at 0 with the markers kept give {share('lstm', baseline='values 0, markers kept')}",
        f"{share('lstm', baseline='zeros', key='markers_share_mean')} of the credit and the marked values "
        f"{share('lstm', baseline='zeros')}",
        f"gives the marked values {share('lstm', 'gradient_x_input')} and the marker channel "
        f"{share('lstm', 'gradient_x_input', key='markers_share_mean')}",
        f"reaches MSE {mse['rnn']:.1e}, about the 1/12 of reading only the nearer value, and puts "
        f"{share('rnn')} on the marked values",
    ):
        assert phrase in text, f"docs/interpretability.md should say: {phrase}"


def test_the_mnist1d_deletion_figures_are_the_record():
    report = json.loads((ROOT / "benchmarks" / "results" / "attribution_mnist1d.json").read_text())
    text = " ".join((ROOT / "docs" / "interpretability.md").read_text().split())
    rows = {(r["model"], r["method"], r["k"]): r for r in report["rows"]}
    gru, tcn = rows["gru", "integrated_gradients", 4], rows["tcn", "integrated_gradients", 4]
    for phrase in (
        f"(test accuracy {gru['accuracy']:.3f}) falls to **{gru['accuracy_top_k_deleted']:.3f}**",
        f"against **{gru['accuracy_random_k_deleted']:.3f}** for 4 random steps",
        f"a TCN (accuracy {tcn['accuracy']:.3f}) to {tcn['accuracy_top_k_deleted']:.3f} against "
        f"{tcn['accuracy_random_k_deleted']:.3f}",
        f"(GRU {rows['gru', 'occlusion', 4]['accuracy_top_k_deleted']:.3f})",
        f"+{gru['margin']:.2f} at k = 4, +{rows['gru', 'integrated_gradients', 12]['margin']:.2f} at k = 12",
    ):
        assert phrase in text, f"docs/interpretability.md should say: {phrase}"


def test_the_checkpoint_stall_figures_are_the_record():
    record = json.loads((ROOT / "benchmarks" / "results" / "async_checkpoint.json").read_text())
    text = " ".join((ROOT / "docs" / "training.md").read_text().split())
    loads = [row["load_after"][0] for rows in record["samples"].values() for row in rows]
    settings = record["settings"]
    for phrase in (
        f"an LSTM with H = {settings['hidden']}, adam, a {record['summary']['sync']['checkpoint_mb']:.0f} MiB "
        f"checkpoint every {settings['every']} steps, {settings['rounds']} interleaved rounds",
        f"the step after a save took {record['stall_sync_s'] * 1e3:.0f} ms longer than the others with "
        f"`async_checkpointing=False` and {record['stall_async_s'] * 1e3:.0f} ms longer with the default, a "
        f"stall {record['stall_ratio']:.1f}× smaller (median over {record['saves_per_run'] * settings['rounds']} "
        f"saves each; 1-minute load average {min(loads):.1f}–{max(loads):.1f} on 2 cores",
    ):
        assert phrase in text, f"docs/training.md should say: {phrase}"


def test_the_input_pipeline_figures_are_the_record():
    record = json.loads((ROOT / "benchmarks" / "results" / "input_pipeline.json").read_text())
    text = " ".join((ROOT / "docs" / "training.md").read_text().split())
    seconds = {name: [s["seconds"] for s in rows] for name, rows in record["samples"].items()}
    loads = [s["load_after"][0] for rows in record["samples"].values() for s in rows]
    median = record["median_epoch_s"]
    phrase = (
        f"{record['rounds']} interleaved rounds of one epoch of {record['steps_per_epoch']} steps) a median epoch "
        f"took {median['grain']:.2f} s through grain against {median['memory']:.2f} s in memory "
        f"({record['grain_over_memory']:.2f}×), but single epochs ranged over {min(seconds['grain']):.2f}–"
        f"{max(seconds['grain']):.2f} s and {min(seconds['memory']):.2f}–{max(seconds['memory']):.2f} s "
        f"(1-minute load average {min(loads):.1f}–{max(loads):.1f} on 2 cores)"
    )
    assert phrase in text, f"docs/training.md should say: {phrase}"
    assert record["equal_parameters"]
