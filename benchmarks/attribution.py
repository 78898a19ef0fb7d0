"""Attributions with a known answer: on the adding problem they must land on the two marked values.

Usage (from the repository root)::

    python -m benchmarks.attribution            # results in benchmarks/results/attribution.{json,md}
    python -m benchmarks.attribution --smoke    # tiny: checks that everything runs, writes nothing

The adding problem (``recurrax.tasks.adding_problem``): ``T`` steps of a
random value and a marker; the target is the sum of the two marked values.
Only those two values matter, so a model that solved the task must put its
attributions there: the score is the share of ``Σ|attribution|`` on the
marked steps' value channel, per sequence, averaged over the test sequences.
A trained LSTM is compared with the same LSTM untrained, for integrated
gradients, SHAP (``shap``'s permutation explainer), gradient × input and
occlusion. The baseline of each sequence is the sequence itself with every
value at its mean, 0.5, and its markers kept: the question is what the output
owes to the values (with markers removed too, the markers that route the
values into memory would rightly share the credit). A zero value baseline
would make "no value" and "value 0" the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average
from benchmarks.run import environment, log

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("integrated_gradients", "shap", "gradient_x_input", "occlusion")


def marked_share(attributions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """``[B]``: the share of each sequence's ``Σ|attribution|`` on the marked steps' value channel."""
    total = np.abs(attributions).sum(axis=(1, 2))
    marked = (np.abs(attributions[..., 0]) * (inputs[..., 1] > 0.5)).sum(axis=1)
    return marked / np.maximum(total, 1e-30)


def run(seq_len: int, hidden: int, steps: int, num_explained: int, shap_evals: int | None) -> dict[str, Any]:
    import optax
    from flax import nnx

    from recurrax import models, tasks, train
    from recurrax.interpret import explain

    data = tasks.adding_problem(seq_len, infinite=True, num_validation=200, num_test=num_explained)
    inputs = np.asarray(data.test.inputs)[:num_explained]
    baseline = inputs.copy()  # the same markers, every value at its mean: what does the output owe the values?
    baseline[..., 0] = 0.5
    untrained = models.model_for_task(data.info, cell="lstm", hidden_size=hidden, rngs=nnx.Rngs(0))
    trained = models.model_for_task(data.info, cell="lstm", hidden_size=hidden, rngs=nnx.Rngs(0))
    start = time.perf_counter()
    train.fit(trained, optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3)), data.train, loss="mse",
              steps=steps, batch_size=64, progress=False)  # fmt: skip
    train_seconds = time.perf_counter() - start
    mse = {}
    rows = []
    for name, model in (("trained", trained), ("untrained", untrained)):
        model.eval()
        mse[name] = float(train.evaluate(model, data.test, loss="mse")["loss"])
        for method in METHODS:
            start = time.perf_counter()
            attributions = explain(model, inputs, method=method, baseline=baseline, max_evals=shap_evals)
            share = marked_share(attributions, inputs)
            rows.append(
                {
                    "model": name,
                    "method": method,
                    "marked_share_mean": float(share.mean()),
                    "marked_share_min": float(share.min()),
                    "fraction_of_sequences_at_least_80pct": float(np.mean(share >= 0.8)),
                    "seconds": time.perf_counter() - start,
                }
            )
            log(f"[attribution] {name} {method}: {share.mean():.3f} of |attribution| on the marked values")
    return {"mse": mse, "rows": rows, "train_seconds": train_seconds}


def render(report: dict) -> str:
    cfg, machine = report["config"], report["environment"].get("machine", {})
    lines = [
        "# Attributions on the adding problem: the share on the two marked values",
        "",
        f"LSTM({cfg['hidden']}) on the adding problem, T = {cfg['seq_len']}, trained {cfg['steps']} steps of 64 "
        f"fresh sequences (test MSE {report['mse']['trained']:.4f}; untrained {report['mse']['untrained']:.3f}; "
        f"predicting 1: 0.167). Share of Σ|attribution| on the marked steps' value channel (2 of "
        f"{2 * cfg['seq_len']} inputs), over {cfg['num_explained']} test sequences; "
        "baseline: values 0.5, markers kept. "
        f"{machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} cores, load average "
        f"{report['load_average_before']} before the run.",
        "",
        "| model | method | mean share | smallest share | sequences ≥ 80 % | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['marked_share_mean']:.3f} | {r['marked_share_min']:.3f} | "
            f"{r['fraction_of_sequences_at_least_80pct']:.2f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--num-explained", type=int, default=100)
    parser.add_argument("--shap-evals", type=int, default=None, help="SHAP evaluations per sequence (10 permutations)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seq_len, args.hidden, args.steps, args.num_explained = 6, 4, 2, 2
    config = {k: getattr(args, k) for k in ("seq_len", "hidden", "steps", "num_explained")}
    load = load_average()
    result = run(args.seq_len, args.hidden, args.steps, args.num_explained, args.shap_evals)
    report = {"config": config, **result, "load_average_before": load, "environment": environment()}
    if not args.smoke:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "attribution.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "attribution.md").write_text(render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
