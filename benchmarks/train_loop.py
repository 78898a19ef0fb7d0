"""Optimizer updates per second of ``Trainer.fit`` against ``steps_per_call``, next to a hand-written loop.

Usage (from the repository root)::

    python -m benchmarks.train_loop            # results in benchmarks/results/train_loop.{json,md}
    python -m benchmarks.train_loop --rounds 9 --models small
    python -m benchmarks.train_loop --smoke    # tiny shapes, one round: checks that everything runs
    python -m benchmarks.train_loop --render benchmarks/results/train_loop.json   # re-draw the tables

The model is a ``recurrax.nn.GRU`` followed by a linear head on the last
output, trained with adam on an MSE target from a fixed in-memory dataset
(shuffled per epoch), the Trainer's gradient diagnostics on (its default).
For each ``steps_per_call`` S a long-lived Trainer is compiled (one untimed
call) and then timed over ``fit(data, steps=trainer.step + n,
steps_per_call=S, progress=False)`` calls of ``n`` steps: one sample per
call, the configurations interleaved in a rotating order over the rounds.

The reference rows are what a researcher writes by hand: a ``jax.jit``-ed
step (value and gradient, ``optax`` update) called in a Python loop over
host batches, reading nothing back until the end; and the same step under
``lax.scan`` over S stacked batches per call. They log no diagnostics and no
history, so they bound what any loop around the same step can reach.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, summarize, write_record
from benchmarks.run import environment, log

STEPS_PER_CALL = (1, 4, 16, 64)
HAND_SCAN = 64  # steps per call of the hand-written lax.scan row
LEARNING_RATE = 1e-3
OUT = Path(__file__).parent / "results" / "train_loop"


@dataclasses.dataclass(frozen=True)
class Model:
    """One model size: batch ``B``, steps ``T``, input features ``D``, GRU units ``H``; ``n`` steps per sample."""

    name: str
    B: int
    T: int
    D: int
    H: int
    n: int
    diagnostics_off: bool = True  # also time S=1 and the largest S with diagnostics=False

    @property
    def label(self) -> str:
        return f"B={self.B},T={self.T},D={self.D},H={self.H}"


MODELS = (
    Model("tiny", 8, 8, 4, 8, 256),
    Model("small", 32, 32, 4, 32, 256),
    Model("medium", 32, 32, 4, 256, 128, diagnostics_off=False),
)
SMOKE_MODEL = Model("smoke", 2, 3, 2, 4, 4, diagnostics_off=False)
SMOKE_STEPS_PER_CALL = (1, 2)


# ------------------------------------------------------------------ the model
def build_model(m: Model, seed: int = 0) -> Any:
    from flax import nnx

    from recurrax import nn

    class Regressor(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.rnn = nn.GRU(m.D, m.H, rngs=rngs)
            self.head = nnx.Linear(m.H, 1, rngs=rngs)

        def __call__(self, xs: Any) -> Any:
            return self.head(self.rnn(xs)[:, -1])

    return Regressor(nnx.Rngs(seed))


def dataset(m: Model, batches: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """``batches`` batches of examples: inputs ``[N, T, D]``, targets the mean of each sequence's first feature."""
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((batches * m.B, m.T, m.D)).astype(np.float32)
    return {"inputs": inputs, "targets": inputs[:, :, :1].mean(axis=1)}


# -------------------------------------------------------------- the runners
@dataclasses.dataclass
class Runner:
    """One configuration: ``run()`` does ``n`` optimizer updates and waits for them; ``loss()`` the latest loss."""

    name: str
    kind: str  # "trainer" or "hand-written"
    steps_per_call: int
    diagnostics: bool
    run: Callable[[], None]
    loss: Callable[[], float]
    params: Callable[[], Any]
    updates: Callable[[], int]


def trainer_runner(m: Model, data: dict, tx: Any, steps_per_call: int, diagnostics: bool = True) -> Runner:
    import jax

    from recurrax import train

    trainer = train.Trainer(build_model(m), tx, loss="mse", diagnostics=diagnostics)

    def run() -> None:
        trainer.fit(data, steps=trainer.step + m.n, steps_per_call=steps_per_call, batch_size=m.B, progress=False)
        jax.block_until_ready(trainer.params)  # fit has read the metrics back already; this costs nothing

    name = f"Trainer.fit, steps_per_call={steps_per_call}" + ("" if diagnostics else ", diagnostics off")
    return Runner(
        name,
        "trainer",
        steps_per_call,
        diagnostics,
        run,
        lambda: float(trainer.history.steps[-1]["loss"]),
        lambda: trainer.params,
        lambda: trainer.step,
    )


def hand_runner(m: Model, data: dict, tx: Any, steps_per_call: int) -> Runner:
    """The loop a researcher writes: a jitted step in a Python loop (or ``lax.scan`` over stacked batches)."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    graphdef, params = nnx.split(build_model(m))
    xs, ys = data["inputs"], data["targets"]
    per_epoch = len(xs) // m.B

    def loss_fn(p: Any, x: Any, y: Any) -> Any:
        return jnp.mean(jnp.square(nnx.merge(graphdef, p)(x) - y))

    def update(p: Any, o: Any, x: Any, y: Any) -> tuple:
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts with floats (the tests run strict)
            updates, o = tx.update(grads, o, p)
            return optax.apply_updates(p, updates), o, loss

    def scanned(p: Any, o: Any, x: Any, y: Any) -> tuple:
        def body(state: tuple, batch: tuple) -> tuple:
            p, o, loss = update(*state, *batch)
            return (p, o), loss

        (p, o), losses = jax.lax.scan(body, (p, o), (x, y))
        return p, o, losses[-1]

    step = jax.jit(update if steps_per_call == 1 else scanned)
    state: dict[str, Any] = {"params": params, "opt": tx.init(params), "step": 0, "loss": None}

    def batch_index(g: int) -> np.ndarray:
        epoch, i = divmod(g, per_epoch)
        order = np.random.default_rng([0, epoch]).permutation(len(xs))
        return order[i * m.B : (i + 1) * m.B]

    def run() -> None:
        p, o, g = state["params"], state["opt"], state["step"]
        for _ in range(m.n // steps_per_call):
            index = np.stack([batch_index(g + j) for j in range(steps_per_call)])
            if steps_per_call == 1:
                index = index[0]
            p, o, loss = step(p, o, xs[index], ys[index])
            g += steps_per_call
        state.update(params=jax.block_until_ready(p), opt=o, step=g, loss=loss)

    name = "hand-written: jitted step in a Python loop"
    if steps_per_call > 1:
        name = f"hand-written: lax.scan of {steps_per_call} steps per call"
    return Runner(
        name,
        "hand-written",
        steps_per_call,
        False,
        run,
        lambda: float(state["loss"]),
        lambda: state["params"],
        lambda: state["step"],
    )


# ---------------------------------------------------------------- measuring
def measure_model(m: Model, steps_per_call: tuple[int, ...], rounds: int, hand_scan: int = HAND_SCAN) -> dict:
    """Every configuration of model ``m``: compiled, then ``rounds`` interleaved samples of ``m.n`` updates.

    ``hand_scan``: the steps per call of the hand-written ``lax.scan`` row.
    """
    import jax
    import optax

    for s in (*steps_per_call, hand_scan):
        if m.n % s:
            raise ValueError(f"{m.name}: {m.n} steps per sample is not a multiple of steps_per_call={s}")
    data = dataset(m)
    tx = optax.adam(LEARNING_RATE)  # one object: equal Trainers share one compiled step
    runners = [trainer_runner(m, data, tx, s) for s in steps_per_call]
    if m.diagnostics_off:
        runners += [trainer_runner(m, data, tx, s, diagnostics=False) for s in sorted({1, max(steps_per_call)})]
    runners += [hand_runner(m, data, tx, 1), hand_runner(m, data, tx, hand_scan)]
    rows: dict[str, dict[str, Any]] = {}
    for r in runners:
        log(f"[train_loop] {m.name} {m.label}: compiling {r.name}  load={load_average()}")
        t0 = time.perf_counter()
        r.run()  # compiles; its updates count like the others' (every runner does the same number)
        rows[r.name] = {
            "impl": r.name,
            "kind": r.kind,
            "steps_per_call": r.steps_per_call,
            "diagnostics": r.diagnostics,
            "first_call_s": time.perf_counter() - t0,
            "times_s": [],
        }
    load_before = load_average()
    for round_index in range(rounds):
        shift = round_index % len(runners)
        for r in runners[shift:] + runners[:shift]:
            t0 = time.perf_counter()
            r.run()
            rows[r.name]["times_s"].append(time.perf_counter() - t0)
    load_after = load_average()
    reference = next(r for r in runners if r.kind == "trainer" and r.steps_per_call == 1 and r.diagnostics)
    reference_params = jax.tree.leaves(reference.params())
    for r in runners:
        row = rows[r.name]
        row.update(summarize(row["times_s"]))
        row["updates_per_s"] = m.n / row["median_s"]
        row["updates_per_s_min"] = m.n / row["max_s"]
        row["updates_per_s_max"] = m.n / row["min_s"]
        row["updates"] = r.updates()
        row["loss"] = r.loss()
        row["finite"] = bool(np.isfinite(row["loss"]))
        if r.kind == "trainer":
            leaves = jax.tree.leaves(r.params())
            row["params_equal_to_s1"] = all(
                np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(leaves, reference_params, strict=True)
            )
    out = list(rows.values())
    s1 = rows[reference.name]["updates_per_s"]
    hand = next(r["updates_per_s"] for r in out if r["kind"] == "hand-written" and r["steps_per_call"] == 1)
    for row in out:
        row["ratio_to_s1"] = row["updates_per_s"] / s1
        row["ratio_to_hand_loop"] = row["updates_per_s"] / hand
    for row in out:
        log(
            f"    {row['impl']:<52} {row['updates_per_s']:9.0f} updates/s  x{row['ratio_to_s1']:.2f} S=1  "
            f"x{row['ratio_to_hand_loop']:.2f} hand loop"
        )
    return {
        "model": m.name,
        "config": dataclasses.asdict(m),
        "steps_per_sample": m.n,
        "rounds": rounds,
        "load_before": load_before,
        "load_after": load_after,
        "rows": out,
    }


# ------------------------------------------------------------------ reports
def _rate(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "–"


def markdown(report: dict) -> str:
    meta = report["meta"]
    versions = ", ".join(
        f"{k} {meta['versions'][k]}" for k in ("jax", "jaxlib", "flax", "optax") if meta["versions"][k]
    )
    lines = [
        f"# Training-loop throughput: updates/s against steps_per_call — {meta['backend']} — {meta['date']}",
        "",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cpu_count']} cores"
        + (f", GPU {meta['machine']['gpu']}" if meta["machine"]["gpu"] else "")
        + f"; load average at start {meta['load_start']}, at end {meta.get('load_end')}. {versions}.",
        "",
        "A `recurrax.nn.GRU` and a linear head on the last output, adam, MSE, an in-memory dataset shuffled per "
        "epoch. `Trainer.fit` rows: one long-lived Trainer per configuration, compiled before timing, each sample "
        "one `fit(..., steps=trainer.step + n, steps_per_call=S, progress=False)` call of n updates (gradient "
        "diagnostics on unless said; the default `log_every=10`). Hand-written rows: a jitted adam step in a "
        "Python loop over host batches, and the same step under `lax.scan`, no diagnostics, nothing read back "
        "until the end. Updates/s from the median sample over interleaved rounds (rotating order), min–max "
        "beside it. `× S=1`: over `Trainer.fit` with `steps_per_call=1`; `× hand loop`: over the hand-written "
        "Python loop. `equal`: after the last round (each configuration has run as many updates, on the same "
        "batches) the parameters equal those of `steps_per_call=1` bit for bit.",
        "",
        "## Summary (updates/s, median)",
        "",
        "| model | config | load | hand loop | "
        + " | ".join(f"S={s}" for s in report["steps_per_call"])
        + " | hand scan | best S ÷ S=1 | best S ÷ hand loop |",
        "|---|---|---|---:|" + "---:|" * len(report["steps_per_call"]) + "---:|---:|---:|",
    ]
    for block in report["models"]:
        rows = block["rows"]
        trainer = {r["steps_per_call"]: r for r in rows if r["kind"] == "trainer" and r["diagnostics"]}
        hand = {r["steps_per_call"]: r for r in rows if r["kind"] == "hand-written"}
        hand_scan = max(hand.items())[1]  # the one with the most steps per call
        best = max(trainer.values(), key=lambda r: r["updates_per_s"])
        load = block["load_before"][0] if block["load_before"] else math.nan
        c = block["config"]
        cells = [
            block["model"],
            f"{c['B']},{c['T']},{c['D']},{c['H']}",
            f"{load:.1f}",
            _rate(hand[1]["updates_per_s"]),
            *(_rate(trainer[s]["updates_per_s"]) for s in report["steps_per_call"]),
            _rate(hand_scan["updates_per_s"]),
            f"{best['ratio_to_s1']:.2f} (S={best['steps_per_call']})",
            f"{best['ratio_to_hand_loop']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for block in report["models"]:
        c = block["config"]
        lines += [
            f"## {block['model']}: B={c['B']}, T={c['T']}, D={c['D']}, H={c['H']}, "
            f"{block['steps_per_sample']} updates per sample, {block['rounds']} interleaved round(s)",
            "",
            f"Load average before {block['load_before']}, after {block['load_after']}.",
            "",
            "| configuration | updates/s | min–max | × S=1 | × hand loop | first call s | equal | loss |",
            "|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        for r in block["rows"]:
            equal = {True: "yes", False: "no"}.get(r.get("params_equal_to_s1"), "–")
            lines.append(
                f"| {r['impl']} | {_rate(r['updates_per_s'])} | {_rate(r['updates_per_s_min'])}–"
                f"{_rate(r['updates_per_s_max'])} | {r['ratio_to_s1']:.2f} | {r['ratio_to_hand_loop']:.2f} | "
                f"{r['first_call_s']:.2f} | {equal} | {r['loss']:.4g} |"
            )
        lines.append("")
    return "\n".join(lines)


def write(report: dict, out: Path) -> None:
    write_record(out, report, markdown)
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


# --------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_loop", description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(m.name for m in MODELS), help="comma-separated subset")
    p.add_argument("--steps-per-call", default=",".join(map(str, STEPS_PER_CALL)))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--smoke", action="store_true", help="tiny shapes, one round: checks that everything runs")
    p.add_argument("--out", default=None, help="output path without suffix (default benchmarks/results/train_loop)")
    p.add_argument("--render", default=None, help="re-render the markdown table of an existing results JSON and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render:
        path = Path(args.render)
        report = json.loads(path.read_text())
        path.with_suffix(".md").write_text(markdown(report))
        log(f"wrote {path.with_suffix('.md')}")
        return report
    steps_per_call = tuple(int(s) for s in args.steps_per_call.split(","))
    names = args.models.split(",")
    unknown = set(names) - {m.name for m in MODELS}
    if unknown:
        raise SystemExit(f"--models: unknown {sorted(unknown)}; choose from {[m.name for m in MODELS]}")
    models, rounds = [m for m in MODELS if m.name in names], args.rounds
    if args.smoke:
        models, rounds, steps_per_call = [SMOKE_MODEL], 1, SMOKE_STEPS_PER_CALL
    hand_scan = max(steps_per_call) if args.smoke else HAND_SCAN
    report: dict[str, Any] = {"meta": environment(), "steps_per_call": list(steps_per_call), "models": []}
    report["meta"]["load_start"] = load_average()
    out = Path(args.out) if args.out else OUT
    t_start = time.perf_counter()
    for m in models:
        report["models"].append(measure_model(m, steps_per_call, rounds, hand_scan))
        write(report, out)
    report["meta"]["load_end"] = load_average()
    report["meta"]["wall_s"] = time.perf_counter() - t_start
    write(report, out)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
