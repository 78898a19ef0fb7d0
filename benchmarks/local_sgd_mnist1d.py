"""Local SGD and DiLoCo against plain data parallel on MNIST-1D, at the same number of examples seen.

Usage (from the repository root)::

    python -m benchmarks.local_sgd_mnist1d           # results in benchmarks/results/local_sgd_mnist1d.{json,md}
    python -m benchmarks.local_sgd_mnist1d --smoke   # tiny: checks that everything runs, writes nothing

Eight fake CPU devices (``--xla_force_host_platform_device_count=8``), one
replica on each. Every run trains the same GRU from the same initial
parameters on the same batches (``--batch-size`` examples a step, split into
8 slices) for the same number of steps, so each has seen the same examples;
they differ in how often the replicas communicate. Plain data parallel
all-reduces the gradient every step; local SGD and DiLoCo average the
replicas' parameters once every ``H`` steps (a communication round). The
accuracy is that of the global parameters on the test split. On fake devices
the wall times say nothing about a cluster with a slow interconnect (all
"devices" share the CPU and memory), so only the rounds are compared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, write_record
from benchmarks.distributed import environment, log, use_fake_cpu_devices

DEVICES = 8
CHUNK = 50  # steps per fit call, so that a long run logs as it goes
# On the loaded 2-core machine XLA:CPU's 8 fake devices sometimes stall at an all-reduce (6 or 7 of them wait
# 40 s for the rest, then XLA aborts the process: five runs out of about ten here, in data parallel and local
# SGD steps alike). Each recipe therefore runs in a process of its own, tried up to ATTEMPTS times.
ATTEMPTS = 3
RESULTS = Path(__file__).resolve().parent / "results"


def recipes(sync_every: list[int], learning_rate: float) -> dict[str, tuple[str, int]]:
    """``{name: (kind, H)}``: data parallel, then local SGD and DiLoCo at each ``H``."""
    out = {"data parallel": ("data_parallel", 1)}
    for h in sync_every:
        out[f"local SGD H={h}"] = ("local_sgd", h)
        out[f"DiLoCo H={h}"] = ("diloco", h)
    return out


def run(
    steps: int, batch_size: int, hidden: int, num_samples: int, sync_every: list[int], lr: float, seed: int, only: str
):
    import jax
    import optax
    from flax import nnx
    from jax.sharding import Mesh

    from recurrax import models, tasks, train

    if jax.device_count() < DEVICES:
        raise SystemExit(f"needs {DEVICES} devices, jax sees {jax.device_count()}: run it as a fresh process")
    data = tasks.mnist1d(num_samples=num_samples)
    partitioning = train.Partitioning(Mesh(np.array(jax.devices()[:DEVICES]), ("data",)))
    rows = []
    for name, (kind, h) in recipes(sync_every, lr).items():
        if only and name != only:
            continue
        inner = optax.adamw(lr, weight_decay=1e-4)
        if kind == "data_parallel":
            tx = inner
        elif kind == "local_sgd":
            tx = train.local_sgd(inner, replicas=DEVICES, sync_every=h)
        else:
            tx = train.diloco(inner, replicas=DEVICES, sync_every=h)
        model = models.model_for_task(data.info, cell="gru", hidden_size=hidden, rngs=nnx.Rngs(seed))
        trainer = train.Trainer(model, tx, loss=data.info.loss, metrics=["accuracy"], partitioning=partitioning)
        start = time.perf_counter()
        for done in range(CHUNK, steps + CHUNK, CHUNK):  # fit goes on where the last call stopped
            trainer.fit(data.train, steps=min(done, steps), batch_size=batch_size, progress=False, log_every=steps)
        seconds = time.perf_counter() - start
        test = trainer.evaluate(data.test)
        rounds = steps if kind == "data_parallel" else int(trainer.opt_state.rounds)
        row = {
            "recipe": name,
            "sync_every": h,
            "steps": steps,
            "examples_seen": steps * batch_size,
            "communication_rounds": rounds,
            "test_accuracy": float(test["accuracy"]),
            "test_loss": float(test["loss"]),
            "train_loss_last_step": float(trainer.history.steps[-1]["loss"]),
            "train_seconds": seconds,
        }
        rows.append(row)
        log(f"[local_sgd_mnist1d] {name}: accuracy {row['test_accuracy']:.3f}, {rounds} rounds, {seconds:.0f} s")
    return rows


def render(report: dict[str, Any]) -> str:
    cfg, machine = report["config"], report["environment"].get("machine", {})
    lines = [
        "# Local SGD and DiLoCo against data parallel on MNIST-1D (8 fake CPU devices)",
        "",
        f"A GRU({cfg['hidden']}) classifier, {cfg['steps']} steps of {cfg['batch_size']} examples "
        f"({cfg['steps'] * cfg['batch_size']} examples seen by every recipe; {cfg['batch_size'] // 8} per replica "
        f"a step), MNIST-1D with {cfg['num_samples']} examples, test accuracy on its test split. Inner optimizer "
        f"AdamW({cfg['learning_rate']}, weight decay 1e-4) everywhere; local SGD's outer step is SGD(1.0) (the "
        "replicas' mean), DiLoCo's Nesterov SGD(0.7, momentum 0.9). A communication round is one all-reduce of "
        "the gradient (data parallel) or of the parameters (local SGD, DiLoCo). Wall times are on fake devices "
        "sharing one CPU and are not a speed claim. Attempts: processes started for the recipe (on this loaded "
        "machine XLA:CPU's fake devices sometimes stall at an all-reduce until XLA aborts the process; the recipe "
        "is then rerun from the start). The accuracy is the global parameters', so steps after the last round "
        f"({cfg['steps']} mod H) count in the examples seen but not in the model evaluated. "
        f"{machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} cores shared with other jobs: load average "
        f"{report['load_average_before']} before the run, {report['load_average_after']} after.",
        "",
        "| recipe | H | communication rounds | test accuracy | test loss | last train loss | seconds | attempts |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['recipe']} | {r['sync_every']} | {r['communication_rounds']} | {r['test_accuracy']:.3f} "
            f"| {r['test_loss']:.3f} | {r['train_loss_last_step']:.3f} | {r['train_seconds']:.0f} | {r['attempts']} |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--sync-every", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few steps, nothing written")
    parser.add_argument("--only", default="", help=argparse.SUPPRESS)  # one recipe, in a child process
    parser.add_argument("--row-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.steps, args.num_samples, args.hidden, args.sync_every = 8, 500, 8, [4]
    config = {k: getattr(args, k) for k in ("steps", "batch_size", "hidden", "num_samples", "sync_every", "seed")}
    if args.only:
        use_fake_cpu_devices(DEVICES)
        rows = run(
            args.steps,
            args.batch_size,
            args.hidden,
            args.num_samples,
            args.sync_every,
            args.learning_rate,
            args.seed,
            args.only,
        )
        Path(args.row_out).write_text(json.dumps(rows[0]))
        return
    before = load_average()
    rows = []
    base = [
        "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--hidden", str(args.hidden),
        "--num-samples", str(args.num_samples), "--learning-rate", str(args.learning_rate), "--seed", str(args.seed),
        "--sync-every", *map(str, args.sync_every),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(recipes(args.sync_every, args.learning_rate)):
            out = Path(tmp) / f"{i}.json"
            for attempt in range(1, ATTEMPTS + 1):
                command = [sys.executable, "-m", "benchmarks.local_sgd_mnist1d", *base, "--only", name]
                done = subprocess.run([*command, "--row-out", str(out)], capture_output=True, text=True)
                if done.returncode == 0:
                    break
                log(f"[local_sgd_mnist1d] {name}: attempt {attempt} failed (exit {done.returncode})")
            else:
                raise SystemExit(f"{name} failed {ATTEMPTS} times: {done.stderr[-2000:]}")
            rows.append({**json.loads(out.read_text()), "attempts": attempt})
    report = {
        "config": {**config, "learning_rate": args.learning_rate},
        "environment": environment(),
        "load_average_before": before,
        "load_average_after": load_average(),
        "command": "python -m benchmarks.local_sgd_mnist1d " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows,
    }
    if args.smoke:
        print(render(report))
        return
    log(f"[local_sgd_mnist1d] wrote {write_record(RESULTS / 'local_sgd_mnist1d', report, render)}")


if __name__ == "__main__":
    main()
