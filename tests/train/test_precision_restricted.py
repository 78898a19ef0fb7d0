"""benchmarks/precision.py's restricted runs (``--precisions``): the names it takes, the paired statistics it
prints, and how it keeps such a run beside the suite's record without touching it. No training: records
are built by hand."""

from __future__ import annotations

import copy
import json
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import precision as bench  # noqa: E402

SUITE = json.loads((ROOT / "benchmarks" / "results" / "precision.json").read_text())
SUITE.pop("restricted", None)  # the full suite's record alone


def _runs(accuracies: dict[str, list[float]]) -> list[dict]:
    return [
        {"precision": name, "seed": seed, "test_accuracy": value, "parameter_bytes": 100 if name == "float32" else 25}
        for name, values in accuracies.items()
        for seed, value in enumerate(values)
    ]


def _restricted(accuracies: dict[str, list[float]], started: int = 0) -> dict:
    runs = _runs(accuracies)
    timing = {"rounds": 0, "calls_per_round": 5, "load_per_round": [], "rows": []}
    return {
        "stack": SUITE["stack"],
        "date": "2026-12-04",
        "settings": {**SUITE["settings"], "seeds": [0, 1, 2, 3], "precisions": list(accuracies)},
        "wall_seconds": 60.0,  # what write() sets from the tasks'
        "load_range": [1.0, 2.0],
        "tasks": {
            "mnist1d": {
                "budget": {"epochs": 12},
                "runs": runs,
                "timing": timing,
                "summary": bench.summarize("mnist1d", runs, timing),
                "started": started,
                "finished": started + 60,
                "wall_seconds": 60.0,
                "load_range": [1.0, 2.0],
            }
        },
    }


def test_names_and_seeds_are_parsed_and_unknown_names_refused():
    assert bench.parse_seeds("0-3") == [0, 1, 2, 3] and bench.parse_seeds("4,1") == [4, 1]
    assert bench.parse_precisions("int8 QAT fine-tune, int8 QAT") == ["float32", "int8 QAT", "int8 QAT fine-tune"]
    with pytest.raises(ValueError, match=r"--precisions: unknown \['int4'\]"):
        bench.parse_precisions("int8 QAT,int4")


def test_paired_differences_are_their_definitions():
    """Mean, std, standard error and the 95% t-interval (t = 3.182 for 3 degrees of freedom) of the paired
    differences in points, and the count of seeds above, equal to and below float32."""
    record = _restricted({"float32": [0.90, 0.95, 0.96, 0.93], "int8 QAT": [0.92, 0.95, 0.95, 0.96]})
    got = bench.paired("mnist1d", record["tasks"]["mnist1d"]["runs"])["int8 QAT"]
    deltas = [2.0, 0.0, -1.0, 3.0]
    std = statistics.stdev(deltas)
    assert got["n"] == 4 and got["delta_mean"] == pytest.approx(1.0) and got["delta_std"] == pytest.approx(std)
    assert got["delta_sem"] == pytest.approx(std / 2)
    assert got["ci95"] == pytest.approx([1.0 - 3.1824 * std / 2, 1.0 + 3.1824 * std / 2], rel=1e-9)
    assert (got["wins"], got["ties"]) == (2, 1)
    assert bench.t_975(7) == 2.3646 and bench.t_975(40) == pytest.approx(2.021075, abs=1e-4)  # tables' values
    lines = bench.restricted_section(record)
    assert "- int8 QAT: paired Δ vs float32 +1.00 ± 1.83 (std) over 4 seeds, standard error 0.91" in lines[-1]


def test_a_restricted_run_is_kept_beside_the_suite_record_which_stays_as_it_was(tmp_path):
    (tmp_path / "precision.json").write_text(json.dumps(SUITE))
    first = _restricted({"float32": [0.9, 0.9, 0.9, 0.9], "int8 QAT": [0.91, 0.9, 0.9, 0.9]})
    bench.write(copy.deepcopy(first), tmp_path)
    again = _restricted({"float32": [0.9, 0.9, 0.9, 0.9], "int8 QAT": [0.8, 0.9, 0.9, 0.9]}, started=100)
    other = _restricted({"float32": [0.9, 0.9, 0.9, 0.9], "int8 QAT fine-tune": [0.9, 0.9, 0.9, 0.9]})
    bench.write(copy.deepcopy(again), tmp_path)  # the same settings: replaces the first
    merged = bench.write(copy.deepcopy(other), tmp_path)
    saved = json.loads((tmp_path / "precision.json").read_text())
    assert saved == merged
    restricted = saved.pop("restricted")
    assert saved == SUITE  # the suite's record untouched
    assert [r["settings"]["precisions"] for r in restricted] == [
        ["float32", "int8 QAT"],
        ["float32", "int8 QAT fine-tune"],
    ]
    assert restricted[0]["tasks"]["mnist1d"]["runs"] == again["tasks"]["mnist1d"]["runs"]
    text = (tmp_path / "precision.md").read_text()
    assert text.count("## Restricted run:") == 2 and "| int8 QAT fine-tune | 90.00 ± 0.00 |" in text
