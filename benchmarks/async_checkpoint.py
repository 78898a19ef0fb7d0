"""The step loop's stall at a checkpoint, with synchronous and asynchronous saves (issue 12 §5).

Usage (from the repository root)::

    python -m benchmarks.async_checkpoint          # results in benchmarks/results/async_checkpoint.{json,md}
    python -m benchmarks.async_checkpoint --rounds 3 --hidden 256
    python -m benchmarks.async_checkpoint --render benchmarks/results/async_checkpoint.json

An LSTM (``recurrax.nn.LSTM``, ``H`` units) with a linear head on the last
output, adam, MSE, trained by ``Trainer.fit(steps=S, log_every=1)``: the host
reads each step's metrics, so a step's wall time is its device time and the
host's. Three configurations, interleaved in a rotating order over the rounds,
each on a fresh Trainer (one compiled step shared by all) and a fresh directory:
no checkpoint; a checkpoint every ``N`` steps with ``async_checkpointing=False``
(each save blocks until its files are renamed into place); the same with
``async_checkpointing=True`` (the save returns once orbax holds the arrays; the
files are written on a background thread while training goes on).

A callback stamps the time of each ``on_step_end``; the interval after step
``k`` holds step ``k``'s metric read, its save (if ``k`` is a multiple of ``N``)
and step ``k + 1``'s dispatch. The **stall** of a save is its interval minus the
median interval of the steps without a save in the same run; the last step's
save (after which fit waits for the write) has no interval and is counted in
``fit s`` only. On a shared machine the background write also competes with
training for the cores, so the table gives the whole run's time beside the stall.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, write_record
from benchmarks.run import environment, log

OUT = Path(__file__).parent / "results" / "async_checkpoint"
CONFIGS = ("none", "sync", "async")
LABELS = {
    "none": "no checkpoint",
    "sync": "async_checkpointing=False",
    "async": "async_checkpointing=True",
}


def _setup(args: argparse.Namespace) -> tuple[Any, Any, dict[str, np.ndarray]]:
    import optax
    from flax import nnx

    from recurrax import nn

    class Model(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.rnn = nn.LSTM(args.features, args.hidden, rngs=rngs)
            self.head = nnx.Linear(args.hidden, 1, rngs=rngs)

        def __call__(self, xs: Any) -> Any:
            return self.head(self.rnn(xs)[:, -1])

    rng = np.random.default_rng(0)
    n = args.batch * 8
    data = {
        "inputs": rng.normal(size=(n, args.length, args.features)).astype(np.float32),
        "targets": rng.normal(size=(n, 1)).astype(np.float32),
    }
    return Model, optax.adam(1e-3), data


def _one_run(config: str, model_cls: Any, tx: Any, data: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    from flax import nnx

    from recurrax import train

    stamps: list[float] = []
    timer = train.LambdaCallback(on_step_end=lambda trainer, step, metrics: stamps.append(time.perf_counter()))
    trainer = train.Trainer(model_cls(nnx.Rngs(0)), tx, diagnostics=False)
    directory = Path(tempfile.mkdtemp(prefix="recurrax-async-ckpt-"))
    checkpoint = None if config == "none" else train.Checkpointer(directory, every_steps=args.every, keep=2)
    load_before = load_average()
    start = time.perf_counter()
    try:
        trainer.fit(
            data,
            steps=args.steps,
            batch_size=args.batch,
            log_every=1,
            checkpoint=checkpoint,
            async_checkpointing=config == "async",
            callbacks=[timer],
            progress=False,
        )
        fit_s = time.perf_counter() - start
        saved_mb = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**20 / 2
    finally:
        if checkpoint is not None:
            checkpoint.close()
        shutil.rmtree(directory, ignore_errors=True)
    intervals = np.diff(np.asarray(stamps))  # intervals[k - 1]: after step k
    saves = [k for k in range(1, args.steps) if k % args.every == 0] if config != "none" else []
    plain = [intervals[k - 1] for k in range(1, args.steps) if k not in saves]
    step_s = float(np.median(plain))
    stalls = [float(intervals[k - 1] - step_s) for k in saves]
    return {
        "config": config,
        "fit_s": fit_s,
        "step_s": step_s,
        "stalls_s": stalls,
        "stall_s": float(np.mean(stalls)) if stalls else 0.0,
        "train_s": float(stamps[-1] - stamps[0]),
        "checkpoint_mb": saved_mb if config != "none" else 0.0,
        "load_before": load_before,
        "load_after": load_average(),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    model_cls, tx, data = _setup(args)
    log("compiling (one untimed run of each configuration) ...")
    for config in CONFIGS:
        _one_run(config, model_cls, tx, data, argparse.Namespace(**{**vars(args), "steps": 2 * args.every}))
    samples: dict[str, list[dict]] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        order = CONFIGS[r % 3 :] + CONFIGS[: r % 3]
        for config in order:
            sample = _one_run(config, model_cls, tx, data, args)
            samples[config].append(sample)
            log(
                f"round {r + 1}/{args.rounds} {config:5s}: stall {sample['stall_s'] * 1e3:7.1f} ms, "
                f"step {sample['step_s'] * 1e3:6.1f} ms, fit {sample['fit_s']:.2f} s, load {sample['load_after']}"
            )
    summary = {}
    for config in CONFIGS:
        rows = samples[config]
        summary[config] = {
            key: float(np.median([row[key] for row in rows])) for key in ("stall_s", "step_s", "fit_s", "train_s")
        }
        summary[config]["checkpoint_mb"] = rows[0]["checkpoint_mb"]
    # Over every save of every round: an asynchronous stall is a few ms, so one round's ratio is noise.
    sync_stall = float(np.median([x for row in samples["sync"] for x in row["stalls_s"]]))
    async_stall = float(np.median([x for row in samples["async"] for x in row["stalls_s"]]))
    return {
        "benchmark": "async_checkpoint",
        "settings": {
            k: getattr(args, k) for k in ("hidden", "features", "length", "batch", "steps", "every", "rounds")
        },
        "environment": environment(),
        "samples": samples,
        "summary": summary,
        "stall_sync_s": sync_stall,
        "stall_async_s": async_stall,
        "stall_ratio": sync_stall / async_stall,
        "saves_per_run": len(samples["sync"][0]["stalls_s"]),
    }


def render(record: dict[str, Any]) -> str:
    s, env, summary = record["settings"], record["environment"], record["summary"]
    lines = [
        f"# Checkpoint stall: synchronous against asynchronous saves — {env['date']}",
        "",
        f"Machine: {env['machine']['cpu']}, {env['machine']['cpu_count']} cores, shared with other work "
        f"(load average per run below). jax {env['versions'].get('jax')}, "
        f"orbax-checkpoint {env.get('orbax', '?')}.",
        "",
        f"An LSTM (H={s['hidden']}, D={s['features']}, T={s['length']}, B={s['batch']}) and a linear head, "
        f"adam; `Trainer.fit(steps={s['steps']}, log_every=1)` with a checkpoint every {s['every']} steps "
        f"({summary['sync']['checkpoint_mb']:.1f} MiB each: parameters and adam state). "
        f"{s['rounds']} interleaved rounds; medians. Stall: the interval after a save step minus the median "
        "interval without a save, in the same run (the last step's save is in `fit s` only). "
        "`python -m benchmarks.async_checkpoint`; the method is in the script's docstring.",
        "",
        "| configuration | stall per save, ms | step, ms | steps 1..S, s | fit, s |",
        "|---|---:|---:|---:|---:|",
    ]
    for config in CONFIGS:
        row = summary[config]
        stall = "–" if config == "none" else f"{row['stall_s'] * 1e3:.1f}"
        lines.append(
            f"| {LABELS[config]} | {stall} | {row['step_s'] * 1e3:.1f} | {row['train_s']:.2f} | {row['fit_s']:.2f} |"
        )
    lines += [
        "",
        f"**Stall ratio (synchronous ÷ asynchronous): {record['stall_ratio']:.1f}**: the median stall over all "
        f"{record['saves_per_run'] * s['rounds']} saves of each, {record['stall_sync_s'] * 1e3:.1f} ms against "
        f"{record['stall_async_s'] * 1e3:.1f} ms.",
        "",
        "Load average (1 min) after each run:",
        "",
        "| configuration | " + " | ".join(f"round {i + 1}" for i in range(s["rounds"])) + " |",
        "|---|" + "---:|" * s["rounds"],
    ]
    for config in CONFIGS:
        loads = " | ".join(f"{row['load_after'][0]:.1f}" for row in record["samples"][config])
        lines.append(f"| {LABELS[config]} | {loads} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--length", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--render", type=Path, help="re-draw the markdown of a saved JSON record")
    args = parser.parse_args(argv)
    if args.render is not None:
        record = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(render(record))
        return 0
    record = measure(args)
    import orbax.checkpoint as ocp

    record["environment"]["orbax"] = ocp.__version__
    write_record(args.out, record, render)
    print(render(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
