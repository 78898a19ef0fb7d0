"""The quick start's training epoch read in memory against the grain pipeline (issue 12 §5).

Usage (from the repository root)::

    python -m benchmarks.input_pipeline        # results in benchmarks/results/input_pipeline.{json,md}
    python -m benchmarks.input_pipeline --rounds 3

The quick start's run (the config that ``benchmarks/results/quickstart.json``
records from ``make demo``: MNIST-1D, a GRU of 128, batches of 32, adam with
clipping), built by the command's own builder; one long-lived Trainer per
configuration, compiled by an untimed epoch, then one timed ``fit`` epoch per
sample (``epochs=trainer.epoch + 1``), the two configurations interleaved in
a rotating order: the in-memory path (``fit``'s default) and
``input_pipeline=train.GrainPipeline()`` (4 batches prefetched by one
thread). Both read the same batches, so both trainers hold equal parameters
after every round (checked).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, write_record
from benchmarks.run import environment, log

OUT = Path(__file__).parent / "results" / "input_pipeline"
RECORD = Path(__file__).parent / "results" / "quickstart.json"
CONFIGS = ("memory", "grain")


def measure(rounds: int) -> dict[str, Any]:
    import jax

    from recurrax import train
    from recurrax._cli_run import build

    config = json.loads(RECORD.read_text())["runs"][0]["config"]
    trainers, data = {}, None
    for name in CONFIGS:
        data, model, optimizer = build(config)
        trainers[name] = train.Trainer(model, optimizer, loss=data.info.loss, metrics=list(data.info.metrics))
    assert data is not None
    pipelines = {"memory": None, "grain": train.GrainPipeline()}

    def epoch(name: str) -> float:
        trainer = trainers[name]
        start = time.perf_counter()
        trainer.fit(
            data.train,
            epochs=trainer.epoch + 1,
            batch_size=config["batch_size"],
            seed=config["seed"],
            input_pipeline=pipelines[name],
            progress=False,
        )
        jax.block_until_ready(trainer.params)
        return time.perf_counter() - start

    log("compiling (one untimed epoch each) ...")
    for name in CONFIGS:
        epoch(name)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    equal = True
    for r in range(rounds):
        for name in CONFIGS[r % 2 :] + CONFIGS[: r % 2]:
            seconds = epoch(name)
            samples[name].append({"seconds": seconds, "load_after": load_average()})
            log(f"round {r + 1}/{rounds} {name:6s}: {seconds:.2f} s, load {samples[name][-1]['load_after']}")
        leaves = [jax.tree.leaves(trainers[name].params) for name in CONFIGS]
        equal = equal and all(np.array_equal(a, b) for a, b in zip(*leaves, strict=True))
    steps = -(-len(data.train) // config["batch_size"])
    medians = {name: float(np.median([s["seconds"] for s in samples[name]])) for name in CONFIGS}
    return {
        "benchmark": "input_pipeline",
        "config": config,
        "steps_per_epoch": steps,
        "rounds": rounds,
        "environment": environment(),
        "samples": samples,
        "median_epoch_s": medians,
        "steps_per_s": {name: steps / medians[name] for name in CONFIGS},
        "grain_over_memory": medians["grain"] / medians["memory"],
        "equal_parameters": equal,
    }


def spread(record: dict[str, Any], name: str) -> tuple[float, float]:
    """The fastest and slowest timed epoch of configuration ``name``."""
    seconds = [s["seconds"] for s in record["samples"][name]]
    return min(seconds), max(seconds)


def render(record: dict[str, Any]) -> str:
    env, c = record["environment"], record["config"]
    loads = [s["load_after"][0] for rows in record["samples"].values() for s in rows]
    lines = [
        f"# The quick start's epoch: in memory against the grain pipeline — {env['date']}",
        "",
        f"Machine: {env['machine']['cpu']}, {env['machine']['cpu_count']} cores, shared with other work "
        f"(1-minute load average {min(loads):.1f}–{max(loads):.1f}). jax {env['versions'].get('jax')}.",
        "",
        f"The quick start's run ({c['task']}, {c['cell']} of {c['hidden']}, batch {c['batch_size']}, "
        f"{record['steps_per_epoch']} steps per epoch); one timed `fit` epoch per sample, {record['rounds']} "
        "interleaved rounds, medians. `python -m benchmarks.input_pipeline`.",
        "",
        "| input | epoch, s | min–max, s | steps/s |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (("memory", "in memory (default)"), ("grain", "GrainPipeline()")):
        low, high = spread(record, name)
        lines.append(
            f"| {label} | {record['median_epoch_s'][name]:.2f} | {low:.2f}–{high:.2f} | "
            f"{record['steps_per_s'][name]:.1f} |"
        )
    lines += [
        "",
        f"Grain ÷ in memory: {record['grain_over_memory']:.2f} (epoch time). Parameters equal after every "
        f"round: {'yes' if record['equal_parameters'] else 'NO'}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--render", type=Path, help="re-draw the markdown of a saved JSON record")
    args = parser.parse_args(argv)
    if args.render is not None:
        args.render.with_suffix(".md").write_text(render(json.loads(args.render.read_text())))
        return 0
    record = measure(args.rounds)
    write_record(args.out, record, render)
    print(render(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
