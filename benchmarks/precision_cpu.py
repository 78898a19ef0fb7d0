"""What each mixed-precision policy costs per training step on this CPU, and whether bf16's slowdown is avoidable.

Two models of issue 13's precision suite: the adding problem's LSTM (H = 64,
T = 100, B = 32, D = 2) and MNIST-1D's GRU (H = 128, T = 40, B = 32, D = 1).
Each is timed under every policy as a jitted train step (value_and_grad of
an MSE loss plus an SGD update of the parameters) and a jitted forward pass,
with compile time apart. Policies:

* ``float32``;
* ``bf16``: bfloat16 compute (matmuls and the input side of the gates),
  float32 weights, carries, gates and loss — ``precision="bf16"``;
* ``bf16-storage``: weights *stored* in bfloat16, everything computed in
  float32 (``params=bfloat16,compute=float32``): half the parameter bytes,
  float32 arithmetic;
* ``fp16``: float16 compute.

A third row times one step's recurrent matmul alone (``[32, 64] × [64, 256]``)
in each policy's dtypes, to see where the time goes. Other processes share
the machine: the policies are timed interleaved, round after round, in wall
and in this process's CPU time, the least-disturbed round is kept, and the
load average is recorded before and after::

    python -m benchmarks.precision_cpu [--rounds 7] [--calls 5]

Writes ``benchmarks/results/precision_cpu.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import load_average, write_record
from recurrax import nn

RESULTS = Path(__file__).resolve().parent / "results"
POLICIES = {
    "float32": "float32",
    "bf16": "bf16",
    "bf16-storage": "params=bfloat16,compute=float32",
    "fp16": "fp16",
}
MODELS = {  # name: (layer, D, H, T, B)
    "adding LSTM 64": (nn.LSTM, 2, 64, 100, 32),
    "mnist1d GRU 128": (nn.GRU, 1, 128, 40, 32),
}


MATMUL = "one step's matmul [32,64]x[64,256]"


def hlo_counts(compiled: Any) -> dict[str, int]:
    """Converts and fusions in a compiled program: XLA:CPU runs bf16 arithmetic by converting to float32 and back."""
    text = compiled.as_text()
    return {"converts": len(re.findall(r"= \S+ convert\(", text)), "fusions": text.count(" fusion(")}


PROGRAMS: dict[tuple[str, str], dict[str, int]] = {}  # (model, policy) -> the train step's HLO counts


def matmul_programs(policy: str) -> tuple[Callable[[], Any], Callable[[], Any], float]:
    """The recurrent matmul of one LSTM step alone (``h @ W``), as the policy computes it; forward = train_step."""
    compute, storage = {"float32": ("float32",) * 2, "bf16": ("bfloat16",) * 2, "fp16": ("float16",) * 2}.get(
        policy, ("float32", "bfloat16")
    )
    h = jax.random.normal(jax.random.key(0), (32, 64)).astype(storage)
    w = jax.random.normal(jax.random.key(1), (64, 256)).astype(storage)
    fn = jax.jit(lambda a, b: jnp.matmul(a.astype(compute), b.astype(compute)))
    start = time.perf_counter()
    compiled = fn.lower(h, w).compile()
    compile_s = time.perf_counter() - start
    call = lambda: compiled(h, w)  # noqa: E731
    return call, call, compile_s


def programs(model_name: str, policy: str) -> tuple[Callable[[], Any], Callable[[], Any], float]:
    """``(train_step, forward, compile_seconds)`` for one model under one policy, compiled."""
    if model_name == MATMUL:
        return matmul_programs(policy)
    layer, d, h, t, b = MODELS[model_name]
    model = nn.apply_precision(layer(d, h, rngs=nnx.Rngs(0)), policy)
    head = jax.random.normal(jax.random.key(1), (h, 1), jnp.float32) / np.sqrt(h)
    graphdef, params = nnx.split(model)
    xs = jax.random.normal(jax.random.key(2), (b, t, d), jnp.float32)
    ys = jax.random.normal(jax.random.key(3), (b, 1), jnp.float32)

    def loss(p: Any) -> jax.Array:
        out = nnx.merge(graphdef, p)(xs)[:, -1].astype(jnp.float32)
        return jnp.mean(jnp.square(out @ head - ys))

    def step(p: Any) -> Any:
        value, grads = jax.value_and_grad(loss)(p)
        return value, jax.tree.map(lambda w, g: (w - 0.01 * g).astype(w.dtype), p, grads)

    forward = jax.jit(lambda p: nnx.merge(graphdef, p)(xs))
    step_jit = jax.jit(step)
    start = time.perf_counter()
    compiled_step = step_jit.lower(params).compile()
    compiled_forward = forward.lower(params).compile()
    compile_s = time.perf_counter() - start
    PROGRAMS[(model_name, policy)] = hlo_counts(compiled_step)
    return (lambda: compiled_step(params)), (lambda: compiled_forward(params)), compile_s


def time_calls(call: Callable[[], Any], calls: int) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` per call, after a warm-up call."""
    jax.block_until_ready(call())
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        out = call()
    jax.block_until_ready(out)
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def run(rounds: int, calls: int) -> dict[str, Any]:
    load_before = load_average()
    built = {(m, p): programs(m, POLICIES[p] if m != MATMUL else p) for m in (*MODELS, MATMUL) for p in POLICIES}
    times: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for (m, p), (step, forward, _) in built.items():
            for kind, call in (("train_step", step), ("forward", forward)) if m != MATMUL else (("forward", forward),):
                times.setdefault((m, p, kind), []).append(time_calls(call, calls))
    rows = []
    for (m, p), (_, _, compile_s) in built.items():
        for kind in ("train_step", "forward") if m != MATMUL else ("forward",):
            wall, cpu = (np.asarray(t) for t in zip(*times[(m, p, kind)], strict=True))
            base_cpu = np.asarray([c for _, c in times[(m, "float32", kind)]])
            base_wall = np.asarray([w for w, _ in times[(m, "float32", kind)]])
            # The least-disturbed round is the estimate; CPU time counts this process's threads only.
            per_round = cpu / base_cpu
            rows.append(
                {
                    "model": m,
                    "policy": p,
                    "kind": kind,
                    "wall_ms_min": round(float(wall.min()) * 1e3, 3),
                    "cpu_ms_min": round(float(cpu.min()) * 1e3, 3),
                    "cpu_ratio_to_float32": round(float(cpu.min() / base_cpu.min()), 3),
                    # On an accelerator the host's CPU time is not the work: read the wall ratio there.
                    "wall_ratio_to_float32": round(float(wall.min() / base_wall.min()), 3),
                    "cpu_ratio_per_round_median": round(float(np.median(per_round)), 3),
                    "cpu_ratio_per_round_min": round(float(per_round.min()), 3),
                    "cpu_ratio_per_round_max": round(float(per_round.max()), 3),
                    "compile_s": round(compile_s, 2),
                    **(PROGRAMS.get((m, POLICIES[p]), {}) if kind == "train_step" else {}),
                }
            )
    return {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": __import__("os").cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "rounds": rounds,
        "calls_per_round": calls,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"# Mixed-precision policies: time per call on {machine['backend'].upper()}",
        "",
        f"`python -m benchmarks.precision_cpu` — jax {machine['jax']} on {machine['backend']}, "
        f"{machine['cpu_count']} cores, load average {machine['load_average_before']} before and "
        f"{machine['load_average_after']} after (other processes shared the machine); {result['rounds']} "
        f"interleaved rounds of {result['calls_per_round']} calls. Times are the least-disturbed round's "
        "(the minimum); CPU ms counts this process's threads only, which other processes disturb less than "
        "wall time. × float32: the policy's minimum CPU time over float32's; per round: the same ratio within "
        "each round (median, min–max); wall ×: the same from wall times (the one to read on an accelerator, "
        "where the host's CPU time is not the work).",
        "",
        "Converts and fusions: counted in the compiled train step's HLO.",
        "",
        "| model | policy | call | wall ms | CPU ms | × float32 | per round | wall × | compile s "
        "| converts | fusions |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['model']} | {r['policy']} | {r['kind']} | {r['wall_ms_min']:.2f} | {r['cpu_ms_min']:.2f} | "
            f"{r['cpu_ratio_to_float32']:.2f} | {r['cpu_ratio_per_round_median']:.2f} "
            f"({r['cpu_ratio_per_round_min']:.2f}–{r['cpu_ratio_per_round_max']:.2f}) | "
            f"{r.get('wall_ratio_to_float32', float('nan')):.2f} | {r['compile_s']:.2f} | "
            f"{r.get('converts', '')} | {r.get('fusions', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.rounds, args.calls)
    write_record(args.out / "precision_cpu", result, markdown)
    print(markdown(result))


if __name__ == "__main__":
    main()
