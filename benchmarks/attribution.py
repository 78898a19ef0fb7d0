"""Attributions with a known answer: on the adding problem they must land on the two marked values.

Usage (from the repository root)::

    python -m benchmarks.attribution            # results in benchmarks/results/attribution.{json,md}
    python -m benchmarks.attribution --smoke    # tiny: checks that everything runs, writes nothing

The adding problem (``recurrax.tasks.adding_problem``): ``T`` steps of a
random value and a marker; the target is the sum of the two marked values.
Only those two values matter, so a model that solved the task must put its
attributions there: the score is the share of ``Σ|attribution|`` on the
marked steps' value channel, per sequence, averaged over the test sequences
(the rest is split into the other steps' values and the marker channel).

**What the share measures is how well the model solved the task.** A model
that is not exact reads every other value a little: an effective weight ``w``
on each of the ``T − 2`` other values costs ``(T − 2)·w²/12`` of MSE and
``(T − 2)·|w|·E|x − x̄|`` of attribution, so an MSE that looks small
(0.004 at ``T = 100``) still leaves a third of the attribution spread thinly
over the other 98 values. The benchmark therefore trains LSTMs with three
recipes of increasing quality (Adam, clipping at 1, 64 fresh sequences per
step): 2,000 steps at a constant rate (the first record's); 8,000 steps with
the rate decayed by a cosine to 1 %; the same with chrono initialisation of
the gates (Tallec & Ollivier, 2018, ``chrono_max_timescale=T``), the model of
the check. Each is measured by integrated gradients; the last one, and the
same LSTM untrained, by every method. A tanh RNN trained like the last one
(it does not learn the task) is the model that fails.

**The baseline** is a modelling choice, made for the question asked: *what
does the output owe to the values?* So the baseline is the sequence itself
with its markers kept and every value at its mean, 0.5. Keeping the markers
keeps the question on the values (remove them too, as the all-zero default
does, and the markers that route the values into memory rightly take most of
the credit); the mean keeps the integration path among inputs like the
training data's, where a zero value baseline sends it through sequences of
near-zero values that the model never saw. Both other baselines are measured
too, by integrated gradients, and reported beside it.

The trained LSTM and tanh RNN are kept in ``benchmarks/results/attribution_models.npz``
(float32, about 90 KB) for notebooks/05_seeing_inside.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, write_record
from benchmarks.run import environment, log

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("integrated_gradients", "shap", "gradient_x_input", "occlusion")
MAIN_BASELINE = "values 0.5, markers kept"
BASELINES = (MAIN_BASELINE, "values 0, markers kept", "zeros")
BATCH_SIZE = 64
PEAK_LR = 3e-3


def baseline_for(name: str, inputs: np.ndarray) -> np.ndarray:
    """The reference input ``[B, T, 2]`` of each sequence for baseline ``name`` (one of :data:`BASELINES`)."""
    reference = inputs.copy()
    if name == "zeros":
        reference[:] = 0.0
    else:
        reference[..., 0] = 0.5 if name == MAIN_BASELINE else 0.0
    return reference


def shares(attributions: np.ndarray, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """``[B]`` each: the shares of each sequence's ``Σ|attribution|`` on the marked values, the others, the markers."""
    magnitude = np.abs(attributions)
    total = np.maximum(magnitude.sum(axis=(1, 2)), 1e-30)
    marked = inputs[..., 1] > 0.5
    return {
        "marked_values": (magnitude[..., 0] * marked).sum(axis=1) / total,
        "other_values": (magnitude[..., 0] * ~marked).sum(axis=1) / total,
        "markers": magnitude[..., 1].sum(axis=1) / total,
    }


def recipes(steps: int, short_steps: int, seq_len: int) -> dict[str, dict[str, Any]]:
    """The trained models: ``name -> {cell, steps, cosine, chrono}``; ``"lstm"`` is the model of the check."""
    return {
        "lstm_short": {"cell": "lstm", "steps": short_steps, "cosine": False, "chrono": None},
        "lstm_no_chrono": {"cell": "lstm", "steps": steps, "cosine": True, "chrono": None},
        "lstm": {"cell": "lstm", "steps": steps, "cosine": True, "chrono": seq_len},
        "rnn": {"cell": "rnn", "steps": steps, "cosine": True, "chrono": None},
    }


def describe(recipe: dict[str, Any]) -> str:
    cell = "LSTM" if recipe["cell"] == "lstm" else "tanh RNN"
    rate = f"cosine {PEAK_LR:g} → {PEAK_LR / 100:g}" if recipe["cosine"] else f"constant {PEAK_LR:g}"
    chrono = f", chrono init (T_max = {recipe['chrono']})" if recipe["chrono"] else ""
    return f"{cell}, {recipe['steps']} steps, {rate}{chrono}"


def build(info: Any, recipe: dict[str, Any], hidden: int) -> Any:
    from flax import nnx

    from recurrax import models

    options = {"chrono_max_timescale": float(recipe["chrono"])} if recipe["chrono"] else {}
    return models.model_for_task(info, cell=recipe["cell"], hidden_size=hidden, rngs=nnx.Rngs(0), **options)


def trained_model(data: Any, recipe: dict[str, Any], hidden: int) -> tuple[Any, float]:
    """The model of ``recipe`` trained on ``data``'s fresh batches (seeded: the same batches for every recipe)."""
    import optax

    from recurrax import train

    model = build(data.info, recipe, hidden)
    steps = recipe["steps"]
    rate = optax.cosine_decay_schedule(PEAK_LR, steps, alpha=0.01) if recipe["cosine"] else PEAK_LR
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(rate))
    calls = 50 if steps % 50 == 0 else 1  # 50 steps per compiled call: the same updates, less dispatch
    start = time.perf_counter()
    train.fit(model, optimizer, data.train, loss="mse", steps=steps, batch_size=BATCH_SIZE, seed=0,
              steps_per_call=calls, diagnostics=False, progress=False)  # fmt: skip
    return model, time.perf_counter() - start


def measure(model: Any, name: str, method: str, baseline: str, inputs: np.ndarray, shap_evals: int | None) -> dict:
    from recurrax.interpret import explain

    start = time.perf_counter()
    attributions = explain(model, inputs, method=method, baseline=baseline_for(baseline, inputs), max_evals=shap_evals)
    seconds = time.perf_counter() - start
    share = shares(attributions, inputs)
    marked = share["marked_values"]
    log(f"[attribution] {name} {method} ({baseline}): {marked.mean():.3f} of |attribution| on the marked values")
    return {
        "model": name,
        "method": method,
        "baseline": baseline,
        "marked_share_mean": float(marked.mean()),
        "marked_share_min": float(marked.min()),
        "fraction_of_sequences_at_least_80pct": float(np.mean(marked >= 0.8)),
        "other_values_share_mean": float(share["other_values"].mean()),
        "markers_share_mean": float(share["markers"].mean()),
        "seconds": seconds,
    }


def parameters(model: Any) -> dict[str, np.ndarray]:
    """A model's parameters as flat ``{"backbone/params/bias": array}``, the way the notebook loads them."""
    from flax import nnx, traverse_util

    flat = traverse_util.flatten_dict(nnx.state(model, nnx.Param).to_pure_dict())
    return {"/".join(map(str, path)): np.asarray(value) for path, value in flat.items()}  # a layer's index: "0"


def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from recurrax import tasks, train

    data = tasks.adding_problem(args.seq_len, infinite=True, num_validation=200, num_test=args.num_test)
    inputs = np.asarray(data.test.inputs)[: args.num_explained]
    models_report, rows, saved = {}, [], {}
    for name, recipe in recipes(args.steps, args.short_steps, args.seq_len).items():
        model, seconds = trained_model(data, recipe, args.hidden)
        model.eval()
        mse = float(train.evaluate(model, data.test, loss="mse")["loss"])
        models_report[name] = {**recipe, "description": describe(recipe), "test_mse": mse, "train_seconds": seconds}
        log(f"[attribution] {name} ({describe(recipe)}): test MSE {mse:.2e} in {seconds:.0f} s")
        for baseline in BASELINES:
            rows.append(measure(model, name, "integrated_gradients", baseline, inputs, args.shap_evals))
        if name == "lstm":
            rows += [measure(model, name, m, MAIN_BASELINE, inputs, args.shap_evals) for m in METHODS[1:]]
        if name in ("lstm", "rnn"):
            saved.update({f"{name}/{key}": value for key, value in parameters(model).items()})
    untrained = build(data.info, recipes(args.steps, args.short_steps, args.seq_len)["lstm"], args.hidden)
    untrained.eval()
    mse = float(train.evaluate(untrained, data.test, loss="mse")["loss"])
    models_report["lstm_untrained"] = {"description": "the LSTM of the check, untrained", "test_mse": mse}
    rows.append(measure(untrained, "lstm_untrained", "integrated_gradients", MAIN_BASELINE, inputs, args.shap_evals))
    rows += [measure(untrained, "lstm_untrained", m, MAIN_BASELINE, inputs, args.shap_evals) for m in METHODS[1:]]
    return {"models": models_report, "rows": rows, "baseline_mse": data.info.baseline}, saved


def render(report: dict) -> str:
    cfg, machine = report["config"], report["environment"].get("machine", {})
    models = report["models"]
    lines = [
        "# Attributions on the adding problem: the share on the two marked values",
        "",
        f"`python -m benchmarks.attribution`: the adding problem at T = {cfg['seq_len']}, models with "
        f"{cfg['hidden']} units trained on {BATCH_SIZE} fresh sequences per step (Adam, clipping at 1). Test MSE over "
        f"{cfg['num_test']} test sequences (predicting 1: {report['baseline_mse']:.3f}). Share of Σ|attribution| on "
        f"the marked steps' value channel (2 of {2 * cfg['seq_len']} inputs), on the other steps' values and on the "
        f"marker channel, per sequence, mean over {cfg['num_explained']} test sequences. "
        f"{machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} cores, load average "
        f"{report['load_average_before']} before the run.",
        "",
        "| model | | test MSE |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {m['description']} | {m['test_mse']:.2e} |" for name, m in models.items()]
    lines += [
        "",
        "| model | method | baseline | marked values | smallest | sequences ≥ 80 % | other values | markers "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['baseline']} | {r['marked_share_mean']:.3f} | "
            f"{r['marked_share_min']:.3f} | {r['fraction_of_sequences_at_least_80pct']:.2f} | "
            f"{r['other_values_share_mean']:.3f} | {r['markers_share_mean']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8000, help="training steps of the cosine recipes")
    parser.add_argument("--short-steps", type=int, default=2000, help="training steps of the constant-rate recipe")
    parser.add_argument("--num-test", type=int, default=1000, help="test sequences for the MSE")
    parser.add_argument("--num-explained", type=int, default=100, help="test sequences explained")
    parser.add_argument("--shap-evals", type=int, default=None, help="SHAP evaluations per sequence (10 permutations)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seq_len, args.hidden, args.steps, args.short_steps, args.num_test, args.num_explained = 6, 4, 2, 2, 4, 2
    config = {k: getattr(args, k) for k in ("seq_len", "hidden", "steps", "short_steps", "num_test", "num_explained")}
    load = load_average()
    result, saved = run(args)
    report = {"config": config, **result, "load_average_before": load, "environment": environment()}
    if not args.smoke:
        write_record(RESULTS / "attribution", report, render)
        np.savez(RESULTS / "attribution_models.npz", **saved)
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
