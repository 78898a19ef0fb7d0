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
#: Post-training quantization of the float32 model: name -> (weights, activations).
PTQ = {
    "int8 PTQ weight-only": ("int8", None),
    "int8 PTQ weight+activation": ("int8", "int8"),
    "fp8 PTQ weight-only": ("fp8", None),
    "fp8 PTQ weight+activation": ("fp8", "fp8"),
}
PRECISIONS = [*TRAINED, *PTQ]
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


def build_trainer(task: str, data: Any, precision: str, seed: int, hidden: int) -> Any:
    """A fresh model of ``task`` under ``precision`` and its Trainer, as ``recurrax train --precision`` builds them."""
    from flax import nnx

    from recurrax import train
    from recurrax.models import model_for_task
    from recurrax.quantize import quantization_aware_model

    spec = TASKS[task]
    policy, qat = TRAINED[precision]
    model = model_for_task(
        data.info, cell=spec["cell"], hidden_size=hidden, rngs=nnx.Rngs(params=seed, dropout=seed + 1)
    )
    if qat is not None:
        quantization_aware_model(model, qat)
    optimizer = train.build_optimizer("adam", spec["lr"], clip_norm=spec["clip"])
    return train.Trainer(model, optimizer, loss=data.info.loss, metrics=list(data.info.metrics), precision=policy)


def fit(trainer: Any, task: str, data: Any, budget: int, seed: int) -> float:
    """Trains ``budget`` epochs (MNIST-1D) or steps (adding); returns the wall seconds."""
    start = time.perf_counter()
    length = {"epochs": budget} if task == "mnist1d" else {"steps": budget}
    trainer.fit(data.train, batch_size=TASKS[task]["batch_size"], seed=seed, progress=False, **length)
    return time.perf_counter() - start


def evaluator(model: Any, data: Any) -> Any:
    from recurrax import train

    return train.Trainer(model, None, loss=data.info.loss, metrics=list(data.info.metrics), diagnostics=False)


def variants(trainer: Any, precision: str) -> dict[str, Any]:
    """The models a trained precision yields, by row name: itself (QAT: its int8 copy), and PTQ copies of float32."""
    from recurrax.quantize import Quantization, quantize

    model = trainer.model
    if precision == "int8 QAT":
        return {precision: quantize(model, Quantization(TRAINED[precision][1]))}
    out = {precision: model}
    if precision == "float32":
        for name, (weights, activations) in PTQ.items():
            out[name] = quantize(model, Quantization(weights, activations=activations))
    return out


def train_all(task: str, seeds: list[int], budget: int, hidden: int, smoke: bool, log: Callable[[str], None]) -> dict:
    """Every seed of every precision: test metric, bytes, training time; the last seed's trainers for timing."""
    from recurrax.quantize import parameter_bytes

    data = load_data(task, smoke)
    metric = TASKS[task]["metric"]
    runs: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    for seed in seeds:
        for precision in TRAINED:
            load_before = load_average()
            trainer = build_trainer(task, data, precision, seed, hidden)
            seconds = fit(trainer, task, data, budget, seed)
            last_step = trainer.history.steps[-1]
            for name, model in variants(trainer, precision).items():
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
    for name in PRECISIONS:
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
    return "\n".join(lines) + "\n"


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
        row = (
            f"| {r['precision']} | {fmt(r['mean'])} ± {fmt(r['std'])} | {seeds} | {signed(r['delta_mean'])} ± "
            f"{fmt(r['delta_std'])} | {r['parameter_bytes']:,} | {r['bytes_ratio']:.2f} | {step} | "
            f"{r['inference_ratio']:.2f} ({r['inference_cpu_ratio']:.2f}) |"
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
    parser.add_argument("--seeds", default="0,1,2")
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

    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = {"mnist1d": args.mnist1d_epochs, "adding": args.adding_steps}
    if args.smoke:
        budgets, args.rounds, args.calls = {"mnist1d": 1, "adding": 2}, 2, 1
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
        },
        "targets": {"mnist1d_points": TARGETS, "bytes_ratio": BYTES_TARGET},
        "tasks": {},
    }
    for task in args.tasks.split(","):
        started, loads = time.time(), [load_average()]
        trained = train_all(task, seeds, budgets[task], hidden[task], args.smoke, lambda line: print(line, flush=True))
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


def write(record: dict[str, Any], out: Path) -> dict[str, Any]:
    """Writes ``record`` into ``out``/precision.json, keeping the tasks it did not run from the same stack.

    The two tasks may run as two processes at once (one per core): each adds its
    task under a lock. The wall time is from the first task's start to the last
    one's end.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / "precision.json"
    with open(Path(tempfile.gettempdir()) / "recurrax_precision.lock", "w") as lock:  # not in the results folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.exists() else None
        if old is not None and old["stack"] == record["stack"] and old["settings"] == record["settings"]:
            record["tasks"] = {**old["tasks"], **record["tasks"]}
        entries = record["tasks"].values()
        record["wall_seconds"] = max(e["finished"] for e in entries) - min(e["started"] for e in entries)
        record["load_range"] = [min(e["load_range"][0] for e in entries), max(e["load_range"][1] for e in entries)]
        record["tasks"] = {task: record["tasks"][task] for task in TASKS if task in record["tasks"]}
        path.write_text(json.dumps(record, indent=2) + "\n")
        (out / "precision.md").write_text(markdown(record))
    return record


if __name__ == "__main__":
    main()
