"""Issue 13's precision suite: what each precision costs in accuracy, parameter bytes and step time.

Two tasks, each trained from scratch under every training precision with the
same recipe and budget, for several seeds (the seed draws the initial weights
and, for MNIST-1D, the order of the examples):

* **MNIST-1D**, a GRU with 128 units: the quick start's recipe (``make demo``:
  Adam 3e-3, gradient clipping at 1, batches of 32, the default 4,000 / 500 /
  1,000 split), for ``--mnist1d-epochs`` epochs; test accuracy after the last one.
* **The adding problem**, T = 100, an LSTM with 64 units: fresh batches of 64
  sequences per step, Adam 3e-3 with clipping at 1 (``benchmarks/attribution.py``'s
  short recipe), for ``--adding-steps`` steps; test MSE on 1,000 sequences.

Precisions:

* trained: ``float32``; ``bf16`` and ``fp16`` (``Trainer(precision=...)``; fp16
  with dynamic loss scaling); ``int8 QAT`` (``quantization_aware_model(model,
  "int8")``, the CLI's ``--precision int8-qat``), evaluated as its stored int8
  copy (``quantize(model, "int8")``, equal to the QAT model bit for bit);
* post-training quantization of the float32-trained model (``quantize``):
  ``int8 PTQ weight-only``, ``int8 PTQ weight+activation`` (per-step, per-row
  dynamic int8 activations), ``fp8 PTQ weight-only`` and ``fp8 PTQ
  weight+activation`` (e4m3 codes; stored on CPU, dequantized before each
  matmul).

Rows run only when ``--precisions`` names them (issue 13's QAT study):

* ``int8 QAT learned scales``: QAT from scratch with ``scales="learned"`` (LSQ);
* ``int8 QAT fine-tune``: that seed's float32 run, ``--fine-tune-epochs``
  before its end (weights and Adam state), trained on quantization-aware for
  the last epochs on the same batches (float32 epochs plus QAT epochs make the
  same budget);
* ``int8 PTQ weight+activation static``: PTQ with static activation scales
  calibrated on the first 256 training examples (``quantize(...,
  calibration_data=...)``).

A run with ``--precisions`` is restricted: it trains float32 and the rows named
(``--rounds 0`` skips the timing) and is kept in ``precision.json``'s
``"restricted"`` list beside the full suite's record, which it leaves as it
is; ``precision.md`` adds its table and, for each row, the paired differences'
standard error and 95% t-interval.

Parameter bytes are ``recurrax.quantize.parameter_bytes`` of the model as it
is stored: float32 masters for float32, bf16 and fp16 (a policy stores float32
weights), codes plus float32 scales and biases for the quantized ones.

Step time: after training, each trained precision's Trainer step
(``trainer.train_step`` on one batch, steps_per_call=1 as ``fit`` runs it) and
each precision's inference call (a jitted forward pass on 256 test examples)
are timed interleaved, round after round in a rotating order, and reported as
ratios to float32 within each round (median over rounds), in wall and in this
process's CPU time, with the load average before every round. Other processes
share the machine; read the ratios, not the milliseconds.

    python -m benchmarks.precision --probe                 # one epoch / a few steps of each: plan the budget
    python -m benchmarks.precision [--seeds 0,1,2] [--mnist1d-epochs E] [--adding-steps N] [--rounds R]
    python -m benchmarks.precision --tasks mnist1d --mnist1d-epochs 12 --seeds 0-7 --rounds 0 \
        --precisions "int8 QAT,int8 QAT fine-tune,int8 QAT learned scales"   # a restricted run

Writes ``benchmarks/results/precision.json`` (every seed's numbers, the
machine, versions, load averages, budgets) and ``precision.md``;
docs/precision.md quotes the summary and tests/test_docs.py holds it to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ["jax", "jaxlib", "flax", "optax", "numpy", "mnist1d", "recurrax"]

#: Trained precisions: name -> (Trainer precision policy, quantization-aware training format or None).
TRAINED = {
    "float32": ("float32", None),
    "bf16": ("bf16", None),
    "fp16": ("fp16", None),
    "int8 QAT": ("float32", "int8"),
}
#: Other ways to train an int8 model, run only when ``--precisions`` names them (issue 13's QAT study):
#: name -> (the Quantization's settings, whether QAT only fine-tunes the float32 run's last epochs).
QAT_VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "int8 QAT learned scales": ({"weights": "int8", "scales": "learned"}, False),
    "int8 QAT fine-tune": ({"weights": "int8"}, True),
}
#: Post-training quantization of the float32 model: name -> (weights, activations).
PTQ = {
    "int8 PTQ weight-only": ("int8", None),
    "int8 PTQ weight+activation": ("int8", "int8"),
    "fp8 PTQ weight-only": ("fp8", None),
    "fp8 PTQ weight+activation": ("fp8", "fp8"),
}
#: Post-training quantization with static activation scales, calibrated on the first CALIBRATION training
#: examples (``quantize(..., calibration_data=...)``); run only when ``--precisions`` names them.
PTQ_STATIC = {"int8 PTQ weight+activation static": ("int8", "int8")}
CALIBRATION = 256
PRECISIONS = [*TRAINED, *PTQ]  # the suite's rows (the default of --precisions)
KNOWN = [*PRECISIONS, *QAT_VARIANTS, *PTQ_STATIC]
TASKS = {
    "mnist1d": {"cell": "gru", "hidden": 128, "batch_size": 32, "lr": 3e-3, "clip": 1.0, "metric": "accuracy"},
    "adding": {
        "cell": "lstm",
        "hidden": 64,
        "seq_len": 100,
        "batch_size": 64,
        "lr": 3e-3,
        "clip": 1.0,
        "metric": "loss",
    },
}
# The issue's targets, on MNIST-1D's mean test accuracy (points = percent) and on the weights' bytes.
TARGETS = {"bf16": 0.5, "int8 QAT": 0.5, "int8 PTQ weight-only": 1.0, "int8 PTQ weight+activation": 1.0}
BYTES_TARGET = 4.0
INFERENCE_BATCH = 256
LABELS = {"mnist1d": "MNIST-1D, GRU 128", "adding": "adding problem T = 100, LSTM 64"}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def load_data(task: str, smoke: bool) -> Any:
    from recurrax import tasks

    if task == "mnist1d":
        return tasks.load_task("mnist1d", **({"num_samples": 400} if smoke else {}))
    sizes = {"num_validation": 16, "num_test": 64} if smoke else {}
    return tasks.load_task("adding", seq_len=8 if smoke else TASKS["adding"]["seq_len"], infinite=True, **sizes)


def quantization_of_row(precision: str) -> Any:
    """The Quantization a quantization-aware row trains with (None: not quantization-aware)."""
    from recurrax.quantize import Quantization

    if precision in QAT_VARIANTS:
        return Quantization(**QAT_VARIANTS[precision][0])
    qat = TRAINED[precision][1]
    return None if qat is None else Quantization(qat)


def build_trainer(task: str, data: Any, precision: str, seed: int, hidden: int, model: Any = None) -> Any:
    """A fresh model of ``task`` under ``precision`` and its Trainer, as ``recurrax train --precision`` builds them.

    ``model``: train this (already built) model instead, e.g. a float32 one to fine-tune quantization-aware.
    """
    from flax import nnx

    from recurrax import train
    from recurrax.models import model_for_task
    from recurrax.quantize import quantization_aware_model

    spec = TASKS[task]
    policy = TRAINED[precision][0] if precision in TRAINED else "float32"
    if model is None:
        model = model_for_task(
            data.info, cell=spec["cell"], hidden_size=hidden, rngs=nnx.Rngs(params=seed, dropout=seed + 1)
        )
    qat = quantization_of_row(precision)
    if qat is not None:
        quantization_aware_model(model, qat)
    optimizer = train.build_optimizer("adam", spec["lr"], clip_norm=spec["clip"])
    return train.Trainer(model, optimizer, loss=data.info.loss, metrics=list(data.info.metrics), precision=policy)


def fine_tune(
    task: str, data: Any, precision: str, float_run: Any, snapshot: Any, budget: int, seed: int
) -> tuple[float, Any]:
    """QAT for the last epochs: ``float_run``'s model at ``snapshot`` (its weights and Adam state), trained on
    quantization-aware to ``budget`` epochs in all, the examples in the order float32 saw them.

    Returns the seconds of the QAT epochs and their Trainer."""
    from flax import nnx

    state, step, epoch = snapshot
    model = nnx.merge(*nnx.split(float_run.model))  # a copy: the float32 run goes on untouched
    trainer = build_trainer(task, data, precision, seed, 0, model=model)
    trainer.load_training_state(state)  # QAT's parameters are the float ones: Adam's moments carry over
    trainer.step, trainer.epoch = step, epoch
    return fit(trainer, task, data, budget, seed), trainer


def fit(trainer: Any, task: str, data: Any, budget: int, seed: int) -> float:
    """Trains ``budget`` epochs (MNIST-1D) or steps (adding); returns the wall seconds."""
    start = time.perf_counter()
    length = {"epochs": budget} if task == "mnist1d" else {"steps": budget}
    trainer.fit(data.train, batch_size=TASKS[task]["batch_size"], seed=seed, progress=False, **length)
    return time.perf_counter() - start


def evaluator(model: Any, data: Any) -> Any:
    from recurrax import train

    return train.Trainer(model, None, loss=data.info.loss, metrics=list(data.info.metrics), diagnostics=False)


def variants(trainer: Any, precision: str, ptq: list[str], calibration: Any = None) -> dict[str, Any]:
    """The models a trained precision yields, by row name: itself (QAT: its int8 copy), and PTQ copies of float32
    (static activation scales calibrated on ``calibration``, a split of training examples)."""
    from recurrax.quantize import Quantization, quantize

    model = trainer.model
    qat = quantization_of_row(precision)
    if qat is not None:
        return {precision: quantize(model, qat)}
    out = {precision: model}
    if precision == "float32":
        for name in ptq:
            if name in PTQ_STATIC:
                spec = Quantization(*PTQ_STATIC[name][:1], activations=PTQ_STATIC[name][1])
                out[name] = quantize(model, spec, calibration_data=calibration)
            else:
                weights, activations = PTQ[name]
                out[name] = quantize(model, Quantization(weights, activations=activations))
    return out


def train_all(
    task: str,
    seeds: list[int],
    budget: int,
    hidden: int,
    smoke: bool,
    log: Callable[[str], None],
    precisions: list[str] | None = None,
    fine_tune_epochs: int = 3,
) -> dict:
    """Every seed of every precision: test metric, bytes, training time; the last seed's trainers for timing.

    ``precisions``: the rows to make (default: the suite's, :data:`PRECISIONS`); float32 always trains. A
    fine-tuned QAT row starts from that seed's float32 run ``fine_tune_epochs`` before its end.
    """
    from recurrax.quantize import parameter_bytes

    precisions = PRECISIONS if precisions is None else precisions
    trained = [p for p in [*TRAINED, *QAT_VARIANTS] if p == "float32" or p in precisions]
    ptq = [p for p in [*PTQ, *PTQ_STATIC] if p in precisions]
    tuned = [p for p in trained if p in QAT_VARIANTS and QAT_VARIANTS[p][1]]
    if tuned and (task != "mnist1d" or not 0 < fine_tune_epochs < budget):
        raise ValueError(f"{tuned} fine-tune a MNIST-1D run for 0 < epochs < {budget}, got {task}, {fine_tune_epochs}")
    data = load_data(task, smoke)
    metric = TASKS[task]["metric"]
    runs: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    for seed in seeds:
        float_run, snapshot = None, None
        for precision in trained:
            load_before = load_average()
            if precision in tuned:
                seconds, trainer = fine_tune(task, data, precision, float_run, snapshot, budget, seed)
            else:
                trainer = build_trainer(task, data, precision, seed, hidden)
                seconds = 0.0
                if precision == "float32" and tuned:  # the state QAT fine-tuning starts from, on the way
                    seconds = fit(trainer, task, data, budget - fine_tune_epochs, seed)
                    snapshot = (trainer.training_state(), trainer.step, trainer.epoch)
                seconds += fit(trainer, task, data, budget, seed)
            if precision == "float32":
                float_run = trainer
            last_step = trainer.history.steps[-1]
            calibration = data.train.subset(slice(0, CALIBRATION)) if task == "mnist1d" else None
            for name, model in variants(trainer, precision, ptq, calibration).items():
                # A trained precision's own Trainer evaluates it (its policy casts the outputs to float32).
                judge = trainer if model is trainer.model else evaluator(model, data)
                value = judge.evaluate(data.test)[metric]
                row = {
                    "precision": name,
                    "seed": seed,
                    "test_" + ("accuracy" if metric == "accuracy" else "mse"): value,
                    "parameter_bytes": parameter_bytes(model),
                    "train_seconds": round(seconds, 1) if name == precision else None,
                    "load_before": load_before,
                    "load_after": load_average(),
                }
                if precision in tuned:  # its float32 epochs are the float32 row's
                    row["float32_epochs"] = budget - fine_tune_epochs
                    row["qat_epochs"] = fine_tune_epochs
                if "loss_scale_skipped" in last_step and name == precision:
                    row["loss_scale_final"] = float(last_step["loss_scale"])
                    row["loss_scale_skipped"] = int(last_step["loss_scale_skipped"])
                runs.append(row)
                log(f"{task} seed {seed} {name}: {metric} {value:.4g} ({seconds:.0f} s, load {load_before})")
                if seed == seeds[-1]:
                    last[name] = (model, trainer if name == precision and precision in TRAINED else None)
    return {"data": data, "runs": runs, "last": last}


def timing(task: str, data: Any, last: dict[str, Any], rounds: int, calls: int) -> dict[str, Any]:
    """Train steps and inference calls of every precision, interleaved; ratios to float32 within each round."""
    import jax
    import numpy as np
    from flax import nnx

    if rounds == 0:
        return {"rounds": 0, "calls_per_round": calls, "load_per_round": [], "rows": []}
    spec = TASKS[task]
    first = (
        data.train.subset(slice(0, spec["batch_size"]))
        if task == "mnist1d"
        else data.train.batch(0, spec["batch_size"])
    )
    batch = {"inputs": first.inputs, "targets": first.targets}
    inputs = jax.numpy.asarray(data.test.inputs[:INFERENCE_BATCH])
    programs: dict[tuple[str, str], Callable[[], Any]] = {}
    for name, (model, trainer) in last.items():
        if trainer is not None:
            programs[name, "train_step"] = lambda t=trainer: t.train_step(batch)
        graphdef, state = nnx.split(model)
        forward = jax.jit(lambda s, x, g=graphdef: nnx.merge(g, s)(x))
        programs[name, "inference"] = lambda f=forward, s=state: f(s, inputs)
    for call in programs.values():  # compile and warm up outside the timed rounds
        jax.block_until_ready(call())
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {key: [] for key in programs}
    loads = []
    keys = list(programs)
    for r in range(rounds):
        loads.append(load_average())
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(calls):
                out = programs[key]()
            jax.block_until_ready(out)
            samples[key].append(((time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls))
    rows = []
    for (name, kind), values in samples.items():
        wall, cpu = np.asarray(values).T
        base_wall, base_cpu = np.asarray(samples["float32", kind]).T
        rows.append(
            {
                "precision": name,
                "kind": kind,
                "wall_ms_median": round(float(np.median(wall)) * 1e3, 2),
                "cpu_ms_median": round(float(np.median(cpu)) * 1e3, 2),
                "wall_ratio_median": round(float(np.median(wall / base_wall)), 2),
                "wall_ratio_min": round(float(np.min(wall / base_wall)), 2),
                "wall_ratio_max": round(float(np.max(wall / base_wall)), 2),
                "cpu_ratio_median": round(float(np.median(cpu / base_cpu)), 2),
            }
        )
    return {"rounds": rounds, "calls_per_round": calls, "load_per_round": loads, "rows": rows}


def summarize(task: str, runs: list[dict[str, Any]], timed: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per precision: mean ± std over seeds, the paired difference to float32, bytes, time ratios."""
    key = "test_accuracy" if task == "mnist1d" else "test_mse"
    scale = 100.0 if task == "mnist1d" else 1.0  # accuracy in points (percent)
    by = {(r["precision"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    f32_bytes = by["float32", seeds[0]]["parameter_bytes"]
    times = {(t["precision"], t["kind"]): t for t in timed["rows"]}
    out = []
    for name in KNOWN:
        if (name, seeds[0]) not in by:
            continue
        values = [by[name, s][key] * scale for s in seeds]
        deltas = [(by[name, s][key] - by["float32", s][key]) * scale for s in seeds]
        row = {
            "precision": name,
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "delta_mean": statistics.fmean(deltas),
            "delta_std": statistics.stdev(deltas) if len(deltas) > 1 else 0.0,
            "parameter_bytes": by[name, seeds[0]]["parameter_bytes"],
            "bytes_ratio": round(f32_bytes / by[name, seeds[0]]["parameter_bytes"], 2),
            "train_step_ratio": times.get((name, "train_step"), {}).get("wall_ratio_median"),
            "train_step_cpu_ratio": times.get((name, "train_step"), {}).get("cpu_ratio_median"),
            "inference_ratio": times.get((name, "inference"), {}).get("wall_ratio_median"),
            "inference_cpu_ratio": times.get((name, "inference"), {}).get("cpu_ratio_median"),
        }
        if task == "mnist1d" and name in TARGETS:
            # Within the target: the mean accuracy is at most TARGETS[name] points below float32's.
            row["target_points"] = TARGETS[name]
            row["target_met"] = row["delta_mean"] >= -TARGETS[name]
        out.append(row)
    return out


def markdown(record: dict[str, Any]) -> str:
    lines = [
        "# Precision: accuracy, parameter bytes and step time",
        "",
        provenance(record),
        "",
        "Accuracy / MSE: mean ± std over the seeds; Δ: the paired difference to float32 of the same seed, mean ± std "
        "(points of accuracy, or MSE). Bytes: the parameters as stored. Step time: the ratio to float32 within each "
        "interleaved round, median (wall time; CPU time of this process in brackets).",
    ]
    for task, label in LABELS.items():
        if task not in record["tasks"]:
            continue
        entry = record["tasks"][task]
        t = entry["timing"]
        fp16 = [r for r in entry["runs"] if r["precision"] == "fp16"]
        lines += [
            "",
            f"## {label}",
            "",
            *table(record, task),
            "",
            f"Trained and timed in {entry['wall_seconds'] / 60:.0f} min, load {entry['load_range'][0]}–"
            f"{entry['load_range'][1]}. Timing: {t['rounds']} rounds × {t['calls_per_round']} calls, load "
            f"{min(t['load_per_round'])}–{max(t['load_per_round'])}; float32's median train step "
            f"{_ms(t, 'float32', 'train_step')} ms, inference on {INFERENCE_BATCH} examples "
            f"{_ms(t, 'float32', 'inference')} ms. fp16's loss scale at the end, per seed: "
            + ", ".join(f"{r['loss_scale_final']:g} ({r['loss_scale_skipped']} steps skipped)" for r in fp16)
            + ".",
        ]
    for restricted in record.get("restricted", []):
        lines += ["", *restricted_section(restricted)]
    return "\n".join(lines) + "\n"


def restricted_section(record: dict[str, Any]) -> list[str]:
    """A run of some precisions only (``--precisions``): its table and the paired differences' standard errors."""
    names = ", ".join(record["settings"]["precisions"])
    lines = [f"## Restricted run: {names}", "", provenance(record)]
    if record["settings"].get("fine_tune_epochs") is not None:
        lines += [
            "",
            f"int8 QAT fine-tune: that seed's float32 run, {record['settings']['fine_tune_epochs']} epochs before its "
            "end (weights and Adam state), trained on quantization-aware for those last epochs on the same "
            "batches in the same order; evaluated as its stored int8 copy.",
        ]
    for task, entry in record["tasks"].items():
        lines += ["", f"### {LABELS[task]}", "", *table(record, task), ""]
        for name, p in paired(task, entry["runs"]).items():
            low, high = p["ci95"]
            lines.append(
                f"- {name}: paired Δ vs float32 {p['delta_mean']:+.2f} ± {p['delta_std']:.2f} (std) over "
                f"{p['n']} seeds, standard error {p['delta_sem']:.2f}, 95% t-interval [{low:+.2f}, {high:+.2f}]; "
                f"above float32 in {p['wins']} of {p['n']} seeds, equal in {p['ties']}, below in "
                f"{p['n'] - p['wins'] - p['ties']}."
            )
    return lines


# Student's t: the 97.5th percentile for 1-30 degrees of freedom (scipy.stats.t.ppf(0.975, df), to 4 decimals).
_T975 = [12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.306, 2.2622, 2.2281, 2.201, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.093, 2.086, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423]  # fmt: skip


def t_975(df: int) -> float:
    """The two-sided 95% critical value of Student's t with ``df`` degrees of freedom (the normal's 1.96 plus
    the Cornish-Fisher terms past 30, within 1e-4)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired(task: str, runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each non-float32 row's paired differences to float32 (points of accuracy, or MSE): mean, std, standard
    error and the 95% Student-t interval of the mean (better is higher accuracy, lower MSE)."""
    key, scale = ("test_accuracy", 100.0) if task == "mnist1d" else ("test_mse", 1.0)
    by = {(r["precision"], r["seed"]): r[key] * scale for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    out = {}
    for name in KNOWN:
        if name == "float32" or (name, seeds[0]) not in by:
            continue
        deltas = [by[name, s] - by["float32", s] for s in seeds]
        n, mean = len(deltas), statistics.fmean(deltas)
        std = statistics.stdev(deltas) if n > 1 else 0.0
        half = t_975(n - 1) * std / n**0.5 if n > 1 else float("inf")
        better = [d > 0 if task == "mnist1d" else d < 0 for d in deltas]
        out[name] = {
            "n": n,
            "delta_mean": mean,
            "delta_std": std,
            "delta_sem": std / n**0.5,
            "ci95": [mean - half, mean + half],
            "wins": sum(better),
            "ties": sum(abs(d) < 1e-9 for d in deltas),
        }
    return out


def provenance(record: dict[str, Any]) -> str:
    """Where the numbers come from, in one sentence (docs/precision.md quotes it)."""
    stack, seeds = record["stack"], ", ".join(map(str, record["settings"]["seeds"]))
    return (
        f"`python -m benchmarks.precision` on {stack['machine']} ({stack['backend']}), Python {stack['python']}, "
        f"jax {stack['jax']}, flax {stack['flax']}, {record['date']}: {_budgets(record)}, seeds {seeds}; 1-minute "
        f"load average {record['load_range'][0]}–{record['load_range'][1]} (other processes shared the cores); "
        f"{record['wall_seconds'] / 60:.0f} min in all."
    )


def table(record: dict[str, Any], task: str) -> list[str]:
    """The markdown table of one task's summary (docs/precision.md quotes it; tests/test_docs_precision.py checks)."""
    acc = task == "mnist1d"
    fmt = (lambda v: f"{v:.2f}") if acc else (lambda v: f"{v:.2e}")
    signed = (lambda v: f"{v:+.2f}") if acc else (lambda v: f"{v:+.1e}")
    lines = [
        f"| precision | test {'accuracy %' if acc else 'MSE'} | per seed | Δ vs float32 | parameter bytes | "
        "× smaller | train step × float32 | inference × float32 |" + (" target |" if acc else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if acc else ""),
    ]
    runs = record["tasks"][task]["runs"]
    key, scale = ("test_accuracy", 100.0) if acc else ("test_mse", 1.0)
    for r in record["tasks"][task]["summary"]:
        seeds = ", ".join(fmt(run[key] * scale) for run in runs if run["precision"] == r["precision"])
        step = (
            "—" if r["train_step_ratio"] is None else f"{r['train_step_ratio']:.2f} ({r['train_step_cpu_ratio']:.2f})"
        )
        inference = (
            "—" if r["inference_ratio"] is None else f"{r['inference_ratio']:.2f} ({r['inference_cpu_ratio']:.2f})"
        )
        row = (
            f"| {r['precision']} | {fmt(r['mean'])} ± {fmt(r['std'])} | {seeds} | {signed(r['delta_mean'])} ± "
            f"{fmt(r['delta_std'])} | {r['parameter_bytes']:,} | {r['bytes_ratio']:.2f} | {step} | {inference} |"
        )
        if acc:
            met = "met" if r.get("target_met") else "missed"
            row += f" within {r['target_points']:g}: {met} |" if "target_points" in r else " |"
        lines.append(row)
    return lines


def _budgets(record: dict[str, Any]) -> str:
    tasks = record["tasks"]
    parts = []
    if "mnist1d" in tasks:
        parts.append(f"MNIST-1D {tasks['mnist1d']['budget']['epochs']} epochs")
    if "adding" in tasks:
        parts.append(f"the adding problem {tasks['adding']['budget']['steps']} steps")
    return ", ".join(parts)


def _ms(timed: dict[str, Any], name: str, kind: str) -> float:
    return next(r["wall_ms_median"] for r in timed["rows"] if r["precision"] == name and r["kind"] == kind)


def probe(smoke: bool, hidden: dict[str, int]) -> None:
    """One MNIST-1D epoch and 100 adding steps of each trained precision (compile included): plan the budget."""
    for task, budget in (("mnist1d", 1), ("adding", 100)):
        data = load_data(task, smoke)
        for precision in TRAINED:
            trainer = build_trainer(task, data, precision, 0, hidden[task])
            first = fit(trainer, task, data, budget, 0)
            second = fit(trainer, task, data, 2 * budget, 0)  # compiled now: the second epoch / 100 steps
            unit = "epoch" if task == "mnist1d" else "steps"
            print(f"{task} {precision}: first {first:.1f} s, then {second:.1f} s per {budget} {unit}", flush=True)
        print(f"(load {load_average()})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated, or a range such as 0-7")
    parser.add_argument(
        "--precisions",
        default=None,
        help=f"comma-separated rows to run (float32 always trains; default: the suite, {PRECISIONS}; also "
        f"{list(QAT_VARIANTS)}); a restricted run is kept in the record beside the suite's, not in place of it",
    )
    parser.add_argument("--fine-tune-epochs", type=int, default=3, help="int8 QAT fine-tune: QAT's last epochs")
    parser.add_argument("--mnist1d-epochs", type=int, default=20)
    parser.add_argument("--adding-steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--tasks", default="mnist1d,adding")
    parser.add_argument("--probe", action="store_true", help="time one epoch / 100 steps of each precision and stop")
    parser.add_argument("--smoke", action="store_true", help="tiny data and models, 1 epoch / 2 steps: a harness check")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    hidden = {task: (8 if args.smoke else spec["hidden"]) for task, spec in TASKS.items()}
    if args.probe:
        probe(args.smoke, hidden)
        return
    import jax

    seeds = parse_seeds(args.seeds)
    precisions = None if args.precisions is None else parse_precisions(args.precisions)
    budgets = {"mnist1d": args.mnist1d_epochs, "adding": args.adding_steps}
    if args.smoke:
        budgets, args.rounds, args.calls = {"mnist1d": 2, "adding": 2}, min(args.rounds, 2), 1
        args.fine_tune_epochs = 1
    record: dict[str, Any] = {
        "stack": {
            "python": platform.python_version(),
            **{name: version(name) for name in PACKAGES},
            "backend": jax.default_backend(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        },
        "date": time.strftime("%Y-%m-%d"),
        "settings": {
            "seeds": seeds,
            "tasks": {task: {**spec, "hidden": hidden[task]} for task, spec in TASKS.items()},
            "inference_batch": INFERENCE_BATCH,
            "smoke": args.smoke,
            **({} if precisions is None else {"precisions": precisions}),
            **(
                {"fine_tune_epochs": args.fine_tune_epochs}
                if any(QAT_VARIANTS.get(p, ({}, False))[1] for p in precisions or [])
                else {}
            ),
        },
        "targets": {"mnist1d_points": TARGETS, "bytes_ratio": BYTES_TARGET},
        "tasks": {},
    }
    for task in args.tasks.split(","):
        started, loads = time.time(), [load_average()]
        trained = train_all(
            task,
            seeds,
            budgets[task],
            hidden[task],
            args.smoke,
            lambda line: print(line, flush=True),
            precisions,
            args.fine_tune_epochs,
        )
        timed = timing(task, trained["data"], trained["last"], args.rounds, args.calls)
        loads += [load for r in trained["runs"] for load in (r["load_before"], r["load_after"])]
        loads += timed["load_per_round"]
        record["tasks"][task] = {
            "budget": {"epochs": budgets[task]} if task == "mnist1d" else {"steps": budgets[task]},
            "runs": trained["runs"],
            "timing": timed,
            "summary": summarize(task, trained["runs"], timed),
            "started": round(started),
            "finished": round(time.time()),
            "wall_seconds": round(time.time() - started, 1),
            "load_range": [min(loads), max(loads)],
        }
    # A copy before the merge, so that a failure there loses no run.
    Path(tempfile.gettempdir(), f"precision_{'_'.join(record['tasks'])}_{os.getpid()}.json").write_text(
        json.dumps(record)
    )
    merged = write(record, args.out)
    print(markdown(merged))


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-7"`` as a list of seeds."""
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in text.split(",")]


def parse_precisions(text: str) -> list[str]:
    """``--precisions``' names (float32 added first), each one of :data:`KNOWN` (else a ValueError naming it)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in KNOWN]
    if unknown:
        raise ValueError(f"--precisions: unknown {unknown}; expected names among {KNOWN}")
    return [name for name in KNOWN if name == "float32" or name in names]


def _finish(record: dict[str, Any]) -> None:
    entries = record["tasks"].values()
    record["wall_seconds"] = max(e["finished"] for e in entries) - min(e["started"] for e in entries)
    record["load_range"] = [min(e["load_range"][0] for e in entries), max(e["load_range"][1] for e in entries)]
    record["tasks"] = {task: record["tasks"][task] for task in TASKS if task in record["tasks"]}


def write(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """Writes ``record`` into ``out``/precision.json, keeping the tasks it did not run from the same stack.

    The two tasks may run as two processes at once (one per core): each adds its
    task under a lock. The wall time is from the first task's start to the last
    one's end. A restricted run (``settings["precisions"]``) goes into the
    record's ``"restricted"`` list (replacing one of the same settings), beside
    the full suite's record; a full run keeps the restricted ones.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / "precision.json"
    with open(Path(tempfile.gettempdir()) / "recurrax_precision.lock", "w") as lock:  # not in the results folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.exists() else None
        if "precisions" in record["settings"]:
            if old is None:
                raise FileNotFoundError(f"{path}: a restricted run is kept beside a full run's record; run the suite")
            kept = [
                r
                for r in old.get("restricted", [])
                if (r["stack"], r["settings"]) != (record["stack"], record["settings"])
            ]
            same = [r for r in old.get("restricted", []) if r not in kept]
            if same:
                record["tasks"] = {**same[0]["tasks"], **record["tasks"]}
            _finish(record)
            old["restricted"] = [*kept, record]
            record = old
        else:
            if old is not None and old["stack"] == record["stack"] and old["settings"] == record["settings"]:
                record["tasks"] = {**old["tasks"], **record["tasks"]}
            _finish(record)
            if old is not None and old.get("restricted"):
                record["restricted"] = old["restricted"]
        path.write_text(json.dumps(record, indent=2) + "\n")
        (out / "precision.md").write_text(markdown(record))
    return record


if __name__ == "__main__":
    main()
