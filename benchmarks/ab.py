"""recurrax against an earlier revision of itself, interleaved in one process: the before/after record of a change.

Usage::

    python -m benchmarks.ab --before baf8663                  # peers' shapes and the levers, LSTM and GRU
    python -m benchmarks.ab --before baf8663 --configs 0 --cells lstm --repeats 3

The earlier revision's ``src/recurrax`` is taken from git (``git archive``) and
imported as the package ``recurrax_before``, so both versions run side by side:
every block times the floor and each recurrax variant before and after, in
rotating order (``benchmarks.run.measure``), so a burst of load hits both.
Separate runs of the whole suite on a shared 2-core machine differ by more
than most changes do; this comparison does not have that problem. Results go
to ``benchmarks/results/<backend>_ab.json`` and ``.md``: per block the median
times and ``after / before`` speed ratios (above 1: the change made it faster).
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CELLS, MODES, PEER_CONFIGS, Config, Impl, jax_impl, load_average, write_record
from benchmarks.peers.recurrax_peer import LEVER_VARIANTS
from benchmarks.run import LEVER_CONFIG, build_impls, environment, input_batch, log, measure, with_ratios

ROOT = Path(__file__).resolve().parents[1]
# The variants compared at the peers' shapes (the levers suite adds the rest at its shape).
AB_VARIANTS = {
    "recurrax": {},
    "recurrax (plain scan)": {"fused": False, "hoist_input_projection": True},
}


def import_revision(revision: str, name: str = "recurrax_before") -> Any:
    """``src/recurrax`` at ``revision``, importable as the package ``name`` (unpacked to a temporary folder)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "src/recurrax"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="recurrax_ab_"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".py"):
                continue
            relative = Path(member.name).relative_to("src/recurrax")
            text = tar.extractfile(member).read().decode()
            target = folder / name / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(re.sub(r"\brecurrax\b", name, text))
    sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def build(package: Any, label: str, cell: str, mode: str, cfg: Config, xs: np.ndarray, variants: dict) -> list[Impl]:
    """One :class:`Impl` per variant of ``package``'s ``scan`` on a fresh LSTM or GRU."""
    import jax
    import jax.numpy as jnp

    cell_obj = package.lstm(cfg.H) if cell == "lstm" else package.gru(cfg.H)
    params = cell_obj.init(jax.random.key(0), cfg.D)
    x = jnp.asarray(xs)
    impls = []
    for name, kwargs in variants.items():

        def forward(p: Any, x: Any, kwargs: dict = kwargs) -> Any:
            return package.scan(cell_obj, p, x, **kwargs)[0]

        impl = jax_impl(f"{name} [{label}]", label, name, forward, params, x, mode, {"scan_kwargs": kwargs})
        impl.extra["hlo"] = _hlo_text(forward, params, x, mode)
        impls.append(impl)
    return impls


def _hlo_text(forward: Any, params: Any, x: Any, mode: str) -> Any:
    """A function returning the optimised HLO of the program ``jax_impl`` times (built the same way)."""
    import jax
    import jax.numpy as jnp

    def loss(p: Any, x: Any) -> Any:
        return jnp.mean(jnp.square(forward(p, x)))

    fn = jax.value_and_grad(loss) if mode == "train" else forward
    return lambda: jax.jit(fn).lower(params, x).compile().as_text()


def _canonical_hlo(text: str) -> str:
    """Optimised HLO without source information (stack frame tables, metadata) and with names numbered
    by first use: equal text, equal program."""
    lines = text.splitlines()
    # The module header and the stack-frame tables (file and function names) come before the first computation.
    first = next(i for i, line in enumerate(lines) if line.startswith(("%", "ENTRY")))
    text = "\n".join(lines[first:])
    text = re.sub(r", metadata=\{[^}]*\}", "", text)
    text = re.sub(r", stack_frame_id=\d+", "", text)
    names: dict[str, str] = {}
    return re.sub(r"%[\w.\-]+", lambda m: names.setdefault(m.group(0), f"%v{len(names)}"), text)


def same_programs(before: Any, after: Any, cell: str, mode: str, cfg: Config, variants: dict) -> dict[str, bool]:
    """Per variant: whether XLA compiles the same optimised program for both versions (no timing involved)."""
    xs = input_batch(cfg)
    pairs = zip(
        build(before, "before", cell, mode, cfg, xs, variants),
        build(after, "after", cell, mode, cfg, xs, variants),
        strict=True,
    )
    result = {}
    for name, (old, new) in zip(variants, pairs, strict=True):
        texts = [_canonical_hlo(impl.extra["hlo"]()) for impl in (old, new)]
        result[name] = texts[0] == texts[1]
    return result


def block(before: Any, after: Any, cell: str, mode: str, cfg: Config, repeats: int, variants: dict) -> dict:
    xs = input_batch(cfg)
    log(f"[ab] {cell} {mode} {cfg.label}  load={load_average()}")
    floor, skipped = build_impls(["floor"], cell, mode, cfg, xs)
    impls = (
        floor
        + build(before, "before", cell, mode, cfg, xs, variants)
        + build(after, "after", cell, mode, cfg, xs, variants)
    )
    load_before = load_average()
    rows = with_ratios(measure(impls, repeats, memory=False), cfg)
    times = {r["impl"]: r["median_s"] for r in rows if "median_s" in r}
    speedups = {name: times[f"{name} [before]"] / times[f"{name} [after]"] for name in variants}
    for name, s in speedups.items():
        ms_before, ms_after = 1e3 * times[f"{name} [before]"], 1e3 * times[f"{name} [after]"]
        log(f"    {name:<34} before {ms_before:8.2f} ms  after {ms_after:8.2f} ms  x{s:.3f}")
    return {
        "cell": cell,
        "mode": mode,
        "config": cfg.__dict__,
        "load_before": load_before,
        "load_after": load_average(),
        "rows": rows,
        "speedup_after_over_before": speedups,
        "skipped": skipped,
    }


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        f"# recurrax before ({meta['before']}) and after ({meta['after']}), interleaved",
        "",
        f"{meta['backend']}, {meta['date']}.",
        "",
        f"Machine: {meta['machine'].get('processor') or meta['machine'].get('platform')}, "
        f"{meta['machine']['cpu_count']} cores; jax {meta['versions'].get('jax')}; "
        f"{meta['repeats']} interleaved rounds per block; load average at start {meta['load_start']}.",
        "",
        "`after / before` is the before median over the after median: above 1, the change made it faster.",
        "",
        "| suite | cell | mode | config | load | variant | before ms | after ms | after / before |",
        "|---|---|---|---|---|---|---:|---:|---:|",
    ]
    for suite in ("peers", "levers"):
        for b in report.get(suite, []):
            times = {r["impl"]: r.get("median_s") for r in b["rows"]}
            label = Config(**b["config"]).label
            for name, s in b["speedup_after_over_before"].items():
                lines.append(
                    f"| {suite} | {b['cell']} | {b['mode']} | {label} | {b['load_before'][0]} | {name} | "
                    f"{1e3 * times[f'{name} [before]']:.2f} | {1e3 * times[f'{name} [after]']:.2f} | {s:.3f} |"
                )
    ratios = [
        s
        for suite in ("peers", "levers")
        for b in report.get(suite, [])
        for s in b["speedup_after_over_before"].values()
    ]
    if ratios:
        lines += [
            "",
            f"Over all {len(ratios)} comparisons: geometric mean {float(np.exp(np.mean(np.log(ratios)))):.3f}, "
            f"min {min(ratios):.3f}, max {max(ratios):.3f}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n")[0])
    p.add_argument("--before", required=True, help="the git revision to compare against (e.g. a commit)")
    p.add_argument("--configs", default=None, help="indices into the peer configurations, e.g. 0,1")
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-levers", action="store_true", help="skip the levers variants at the levers' shape")
    p.add_argument("--programs", action="store_true", help="only compare the compiled programs (no timing)")
    p.add_argument("--out", default=None, help="output path without suffix (default benchmarks/results/<backend>_ab)")
    args = p.parse_args(argv)

    import jax

    import recurrax

    before = import_revision(args.before)
    after_revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    configs = [PEER_CONFIGS[int(i)] for i in args.configs.split(",")] if args.configs else list(PEER_CONFIGS)
    cells, modes = args.cells.split(","), args.modes.split(",")
    report: dict[str, Any] = {"meta": environment()}
    report["meta"].update(
        before=args.before,
        after=after_revision.stdout.strip() + " (working tree)",
        repeats=args.repeats,
        load_start=load_average(),
    )
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{jax.default_backend()}_ab"
    t0 = time.perf_counter()
    if args.programs:
        return _compare_programs(before, recurrax, configs, cells, modes, not args.no_levers)
    report["peers"] = []
    for cfg in configs:
        for cell in cells:
            for mode in modes:
                report["peers"].append(block(before, recurrax, cell, mode, cfg, args.repeats, AB_VARIANTS))
                write_record(out, report, markdown)
    if not args.no_levers:
        report["levers"] = [
            block(before, recurrax, "lstm", mode, LEVER_CONFIG, args.repeats, LEVER_VARIANTS) for mode in modes
        ]
    report["meta"]["wall_s"] = time.perf_counter() - t0
    report["meta"]["load_end"] = load_average()
    write_record(out, report, markdown)
    return report


def _compare_programs(before: Any, after: Any, configs: list, cells: list, modes: list, levers: bool) -> dict:
    blocks = [(cfg, cell, mode, AB_VARIANTS) for cfg in configs for cell in cells for mode in modes]
    if levers:
        blocks += [(LEVER_CONFIG, "lstm", mode, LEVER_VARIANTS) for mode in modes]
    results = {}
    for cfg, cell, mode, variants in blocks:
        same = same_programs(before, after, cell, mode, cfg, variants)
        for name, equal in same.items():
            results[f"{cell} {mode} {cfg.label} {name}"] = equal
            log(f"[programs] {cell} {mode} {cfg.label} {name}: {'same' if equal else 'DIFFERENT'}")
    log(f"{sum(results.values())} of {len(results)} compiled programs are the same before and after")
    return results


if __name__ == "__main__":
    main()
