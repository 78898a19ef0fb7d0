"""The benchmark harness cannot rot: its smoke mode runs every implementation once on tiny shapes.

No timing is asserted (timings on a shared CI machine mean nothing); the checks
are that every implementation that is installed builds, runs and computes a
finite loss, that the reports are written, and that they carry the metadata.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import run as bench  # noqa: E402
from benchmarks.peers import PEERS  # noqa: E402

# ~45 s of the suite (every installed peer compiles its own model): not in the newest-stack leg.
pytestmark = pytest.mark.slow

# A peer's framework is optional; only those installed here are required to run.
OPTIONAL = {"equinox_peer": "equinox", "haiku_peer": "haiku", "keras_peer": "keras", "torch_peer": "torch"}


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "smoke"
    with warnings.catch_warnings():
        # Third-party frameworks warn about their own deprecations; that is not the harness's concern.
        warnings.simplefilter("ignore")
        # LSTM training only, to keep compiles few: it builds and runs every peer; the GRU is each peer's
        # other class and forward mode is the same code minus the gradient.
        args = ["--smoke", "--suites", "peers,scaling,linear", "--cells", "lstm", "--modes", "train"]
        report = bench.main([*args, "--out", str(out)])
    return report, out


def test_every_installed_peer_runs_with_a_finite_loss(smoke_report):
    report, _ = smoke_report
    blocks = report["peers"]
    assert [(b["cell"], b["mode"]) for b in blocks] == [("lstm", "train")]
    for block in blocks:
        skipped = {s["peer"] for s in block["skipped"]}
        required = {p for p in PEERS if p not in OPTIONAL or importlib.util.find_spec(OPTIONAL[p])}
        assert not skipped & required, block["skipped"]
        frameworks = {r["framework"] for r in block["rows"]}
        assert {"jax", "recurrax", "flax.nnx", "flax.linen"} <= frameworks
        for row in block["rows"]:
            assert "error" not in row, row
            assert row["finite"] and math.isfinite(row["loss"]), row
            assert row["median_s"] > 0 and row["path"]


def test_recurrax_reports_the_path_it_took(smoke_report):
    report, _ = smoke_report
    for block in report["peers"]:
        rows = {r["impl"]: r for r in block["rows"]}
        assert rows["recurrax (plain scan)"]["path"].startswith("plain")
        assert rows["recurrax"]["path"].startswith("fused")
        assert rows["recurrax"]["ratio_to_floor"] > 0


def test_reports_are_written_with_metadata(smoke_report):
    _, out = smoke_report
    saved = json.loads(out.with_suffix(".json").read_text())
    meta = saved["meta"]
    assert meta["backend"] == "cpu" and meta["versions"]["jax"] and meta["machine"]["cpu_count"] >= 1
    assert isinstance(meta["load_start"], list) and meta["date"]
    table = out.with_suffix(".md").read_text()
    assert "## Summary: recurrax against the others" in table and "× floor" in table
    assert {r["impl"] for r in saved["scaling"]} >= {"recurrax", "recurrax, remat"}
    assert {(r["cell"], r["method"]) for r in saved["linear"]} >= {("min_gru", "sequential"), ("min_gru", "parallel")}


def test_train_loop_benchmark_runs_every_configuration_with_finite_numbers(tmp_path):
    from benchmarks import train_loop

    out = tmp_path / "train_loop"
    report = train_loop.main(["--smoke", "--out", str(out)])
    (block,) = report["models"]
    kinds = {(r["kind"], r["steps_per_call"]) for r in block["rows"]}
    per_call = train_loop.SMOKE_STEPS_PER_CALL
    assert kinds == {("trainer", s) for s in per_call} | {("hand-written", 1), ("hand-written", max(per_call))}
    for row in block["rows"]:
        assert row["finite"] and math.isfinite(row["loss"]), row
        for key in ("updates_per_s", "ratio_to_s1", "ratio_to_hand_loop", "first_call_s"):
            assert math.isfinite(row[key]) and row[key] > 0, (key, row)
        assert row["updates"] == (1 + 1) * train_loop.SMOKE_MODEL.n  # the compiling call and one round
        if row["kind"] == "trainer":
            assert row["params_equal_to_s1"], row  # several steps per call train exactly like one
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["meta"]["versions"]["jax"] and isinstance(saved["meta"]["load_start"], list)
    assert isinstance(saved["models"][0]["load_before"], list)
    assert "## Summary (updates/s, median)" in out.with_suffix(".md").read_text()
