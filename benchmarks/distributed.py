"""The ``distributed`` suite: a training step's time against the device count, data parallel and FSDP.

Usage (from the repository root)::

    python -m benchmarks.distributed                 # results in benchmarks/results/distributed_<platform>.{json,md}
    python -m benchmarks.distributed --smoke         # tiny: checks that everything runs, writes nothing

On a machine with 8 GPUs, or on one TPU host of a slice (v4-8, v5e-8: the
host's chips), the same command times real devices, and that is a speed claim::

    python -m benchmarks.distributed --devices 1 2 4 8 --batch-size 1024 --hidden 1024 --seq-len 256

On a CPU it runs on ``--fake-devices`` (default 8) host-platform devices
(``--xla_force_host_platform_device_count``): every "device" is a thread of the
same CPU sharing its cores and memory, so the times show the overhead of the
sharded program and its collectives, NOT a speed-up a real cluster would see.

For each device count ``n`` a mesh of the first ``n`` devices, one ``"data"``
axis, trains an LSTM classifier with Adam through :class:`recurrax.train.Trainer`
and :class:`recurrax.train.Partitioning`: data parallel (parameters
replicated) and FSDP (``shard_params=True``). The global batch is fixed
(``--batch-size``, split over the ``n`` devices: strong scaling). ``median_ms``
is the median of ``--repeats`` calls of ``trainer.train_step`` after warm-up,
each waited for; ``first_call_s`` the first call, compile included.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import cpu_name, load_average, write_record


def use_fake_cpu_devices(count: int) -> None:
    """Asks XLA for ``count`` host-platform devices (GPUs and TPUs ignore it); only before jax is imported,
    since XLA reads the count once, when jax starts."""
    if "jax" in sys.modules:
        return
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}"
    ).strip()


def environment() -> dict[str, Any]:
    """The versions and the machine. Not ``benchmarks.run.environment``: that one imports every peer
    framework, and with them in the process (torch, keras) an 8-fake-device all-reduce stalled, 7 devices
    waiting 40 s for the 8th, until XLA aborted (three times; never without them)."""
    import importlib.metadata
    import platform

    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "recurrax"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    cpu = cpu_name()
    return {
        "versions": versions,
        "python": platform.python_version(),
        "machine": {"cpu": cpu, "cpu_count": os.cpu_count(), "system": platform.platform()},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_"))},
    }


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


RESULTS = Path(__file__).resolve().parent / "results"
MODES = {"data parallel": False, "FSDP": True}


def time_steps(n: int, shard_params: bool, args: argparse.Namespace) -> dict[str, Any]:
    """One device count and mode: the first call's and the warm calls' times."""
    import jax
    import optax
    from flax import nnx
    from jax.sharding import Mesh

    from recurrax import models, train

    rng = np.random.default_rng(0)
    batch = {
        "inputs": rng.normal(size=(args.batch_size, args.seq_len, args.features)).astype(np.float32),
        "targets": rng.integers(0, args.classes, args.batch_size).astype(np.int32),
    }
    mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
    model = models.SequenceClassifier(
        args.features, args.classes, cell="lstm", hidden_size=args.hidden, dropout=0.0, rngs=nnx.Rngs(0)
    )
    trainer = train.Trainer(
        model,
        optax.adam(1e-3),
        loss="softmax_cross_entropy",
        diagnostics=False,
        partitioning=train.Partitioning(mesh, shard_params=shard_params),
    )
    start = time.perf_counter()
    trainer.train_step(batch)  # waits for its metrics
    first = time.perf_counter() - start
    for _ in range(args.warmup):
        trainer.train_step(batch)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {
        "devices": n,
        "mode": "FSDP" if shard_params else "data parallel",
        "global_batch": args.batch_size,
        "per_device_batch": args.batch_size // n,
        "first_call_s": first,
        "median_ms": 1e3 * median,
        "min_ms": 1e3 * min(times),
        "max_ms": 1e3 * max(times),
        "examples_per_s": args.batch_size / median,
    }


def render(report: dict[str, Any]) -> str:
    cfg, machine = report["config"], report["environment"].get("machine", {})
    platform = report["platform"]
    if platform == "cpu":
        claim = (
            f"**NOT a speed claim**: {report['device_count']} fake CPU devices "
            "(`--xla_force_host_platform_device_count`) share the same "
            f"{machine.get('cpu_count', '?')} cores and memory, so adding devices adds the sharded program's "
            "overhead and its collectives without adding compute. On 8 GPUs or a TPU host the same script is one: "
            f"`{report['gpu_command']}`."
        )
    else:
        claim = f"{report['device_count']} {report['device_kind']} devices ({platform})."
    lines = [
        f"# Training step time against device count ({platform})",
        "",
        claim,
        "",
        f"LSTM({cfg['hidden']}) classifier, Adam, global batch {cfg['batch_size']} split over the devices "
        f"(strong scaling), {cfg['seq_len']} steps of {cfg['features']} features. Median of {cfg['repeats']} "
        f"calls of `trainer.train_step` after {cfg['warmup']} warm-up calls. {machine.get('cpu', '?')}; load "
        f"average {report['load_average_before']} before, {report['load_average_after']} after (the machine "
        "is shared with other jobs).",
        "",
        "| devices | mode | per-device batch | median ms | min ms | max ms | examples/s | first call s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['devices']} | {r['mode']} | {r['per_device_batch']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} "
            f"| {r['max_ms']:.1f} | {r['examples_per_s']:.0f} | {r['first_call_s']:.1f} |"
        )
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--fake-devices", type=int, default=8, help="host-platform devices on a CPU")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--smoke", action="store_true", help="two device counts, few calls, nothing written")
    parser.add_argument("--out", type=Path, default=None, help="output path without suffix (default: see above)")
    args = parser.parse_args(argv)
    use_fake_cpu_devices(args.fake_devices)
    if args.smoke:
        args.devices, args.hidden, args.seq_len, args.warmup, args.repeats = [1, 2], 8, 4, 1, 2

    import jax

    available = jax.device_count()
    counts = [n for n in args.devices if n <= available and args.batch_size % n == 0]
    if not counts:
        raise SystemExit(f"none of --devices {args.devices} fits {available} devices and --batch-size")
    before = load_average()
    rows = []
    for n in counts:
        for mode, shard in MODES.items():
            row = time_steps(n, shard, args)
            rows.append(row)
            log(f"[distributed] {n} devices, {mode}: {row['median_ms']:.1f} ms/step")
    platform = jax.devices()[0].platform
    report = {
        "platform": platform,
        "device_kind": jax.devices()[0].device_kind,
        "device_count": available,
        "config": {k: v for k, v in vars(args).items() if k not in ("smoke", "out")},
        "environment": environment(),
        "load_average_before": before,
        "load_average_after": load_average(),
        "command": "python -m benchmarks.distributed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "gpu_command": "python -m benchmarks.distributed --devices 1 2 4 8 --batch-size 1024 --hidden 1024 "
        "--seq-len 256",
        "rows": rows,
    }
    if args.smoke:
        print(render(report))
        return
    out = args.out if args.out is not None else RESULTS / f"distributed_{platform}"
    log(f"[distributed] wrote {write_record(out, report, render)}")


if __name__ == "__main__":
    main()
