"""docs/precision.md's measured tables are benchmarks/results/precision.json's, and the record's summary is its runs'.

`python -m benchmarks.precision` trains every precision on MNIST-1D and the adding problem and writes the
record; these tests hold the page to it (the tables and the sentence saying where they come from) and the
record's summary rows (means, paired differences, bytes ratios, time ratios, targets met) to its own
per-seed runs and timings, so neither can be edited by hand into something the run did not measure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import precision as bench  # noqa: E402  (standard library only at import: no jax)

RECORD = json.loads((ROOT / "benchmarks" / "results" / "precision.json").read_text())


def test_the_record_is_a_full_run():
    assert not RECORD["settings"]["smoke"], "the committed record is a --smoke run"
    assert list(RECORD["tasks"]) == list(bench.TASKS)
    for task, entry in RECORD["tasks"].items():
        seeds = {run["seed"] for run in entry["runs"]}
        assert seeds == set(RECORD["settings"]["seeds"]) and len(seeds) >= 3, task
        assert {run["precision"] for run in entry["runs"]} == set(bench.PRECISIONS), task


def test_the_summary_is_computed_from_the_runs():
    for task, entry in RECORD["tasks"].items():
        assert entry["summary"] == bench.summarize(task, entry["runs"], entry["timing"]), task
        for row in entry["summary"]:
            if "target_points" in row:  # met: the mean is at most that many points below float32's
                assert row["target_met"] == (row["delta_mean"] >= -row["target_points"]), row["precision"]


def test_the_docs_tables_are_the_record():
    text = (ROOT / "docs" / "precision.md").read_text()
    assert " ".join(bench.provenance(RECORD).split()) in " ".join(text.split()), (
        "docs/precision.md should say where its table comes from: " + bench.provenance(RECORD)
    )
    for task in RECORD["tasks"]:
        for line in bench.table(RECORD, task):
            assert line in text, f"docs/precision.md should hold the row (benchmarks/results/precision.json): {line}"


def test_the_docs_prose_quotes_the_record():
    text = " ".join((ROOT / "docs" / "precision.md").read_text().split())
    rows = {task: {r["precision"]: r for r in entry["summary"]} for task, entry in RECORD["tasks"].items()}
    gru, lstm = rows["mnist1d"], rows["adding"]
    runs = {(r["precision"], r["seed"]): r for r in RECORD["tasks"]["mnist1d"]["runs"]}
    qat_worst = min(
        runs["int8 QAT", s]["test_accuracy"] - runs["float32", s]["test_accuracy"] for s in RECORD["settings"]["seeds"]
    )
    late = sorted(r["test_mse"] for r in RECORD["tasks"]["adding"]["runs"] if r["test_mse"] > 0.03)
    for phrase in (
        f"one lost {-qat_worst * 100:.1f} points",
        f"{gru['int8 PTQ weight-only']['bytes_ratio']:.2f}x for the GRU classifier and "
        f"{lstm['int8 PTQ weight-only']['bytes_ratio']:.2f}x for the LSTM regressor",
        f"(MSE {late[0]:.2f} and {late[1]:.2f})",
        f"a bf16 training step costs {gru['bf16']['train_step_ratio']:.1f}x (GRU) and "
        f"{lstm['bf16']['train_step_ratio']:.1f}x (LSTM) float32's, fp16 {gru['fp16']['train_step_ratio']:.1f}x "
        f"and {lstm['fp16']['train_step_ratio']:.1f}x",
        f"the GRU's {gru['int8 QAT']['train_step_ratio']:.2f}x wall ratio",
        f"(and fp16's {gru['fp16']['inference_ratio']:.1f}x)",
    ):
        assert phrase in text, f"docs/precision.md should say: {phrase}"
    assert len(late) == 2, "docs/precision.md says two adding runs were still on the plateau"
    assert round(gru["bf16"]["inference_ratio"], 1) == 0.5, "docs/precision.md: bf16 inference took half the time"
