"""Runs the benchmark suites and writes ``<out>.json`` (every number, with machine and versions) and ``<out>.md``.

Usage (from the repository root)::

    python -m benchmarks.run                    # every suite, default backend, results in benchmarks/results/<backend>
    python -m benchmarks.run --quick            # the first configuration only, fewer repeats
    python -m benchmarks.run --suites peers --configs 0,1 --cells lstm --modes train
    python -m benchmarks.run --smoke            # tiny shapes: every implementation runs once (used by the tests)
    python -m benchmarks.run --smoke --kernels pallas --kernel-variant tpu   # the TPU kernels, interpreted on CPU

Suites: ``peers`` (every implementation, each configuration, LSTM and GRU, train
and forward, with the floor), ``levers`` (recurrax's own variants: hoisting,
unroll, fused, remat), ``scaling`` (an LSTM training step for T = 64 … 16384,
with and without remat), ``compile`` (compile time against T and layers) and
``linear`` (sequential vs parallel scan for the linear recurrences).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

from benchmarks.common import (
    CELLS,
    MODES,
    PEER_CONFIGS,
    SMOKE_CONFIG,
    Config,
    Impl,
    cpu_name,
    jax_impl,
    load_average,
    peak_rss_delta,
    summarize,
    timed,
    write_record,
)
from benchmarks.kernel_check import VARIANTS, linear_time_chunk, use_variant
from benchmarks.peers import PEERS

SUITES = ("peers", "levers", "scaling", "compile", "linear")
LEVER_CONFIG = Config(64, 256, 128, 256)
SCALING_STEPS = (64, 256, 1024, 4096, 16384)
SCALING_SHAPE = {"B": 16, "D": 64, "H": 256}
LINEAR_STEPS = (256, 1024, 4096, 16384)
LINEAR_CELLS = ("min_gru", "min_gru_log", "min_lstm", "lru")
# The cells that ``benchmarks/linear_reference.py`` writes by hand, and its function for each.
LINEAR_REFERENCES = {"min_gru": "min_gru_linear", "min_gru_log": "min_gru_log"}
HAND_WRITTEN = "hand-written"
LINEAR_PALLAS = "parallel (pallas)"
# The same kernel with time in chunks scanned at once (recurrax.cells._pallas_linear.TIME_CHUNK): more programs
# for the GPU at small B·H, about three times the memory traffic. Timed beside the whole-sequence kernel.
LINEAR_PALLAS_CHUNK = 128
LINEAR_PALLAS_CHUNKED = f"parallel (pallas, {LINEAR_PALLAS_CHUNK}-step chunks)"
TWO_LAYER = "min_gru ×2 (nn.RNN)"
MIN_SAMPLE_S = 0.02  # a repeat of a faster call averages several calls


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ metadata
def environment() -> dict[str, Any]:
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "equinox", "haiku", "keras", "torch", "numpy", "recurrax"):
        try:
            module = importlib.import_module(name)
            versions[name] = getattr(module, "__version__", "?")
        except Exception:  # noqa: BLE001 — a missing or broken optional peer is only reported
            versions[name] = None
    import jax

    cpu = cpu_name()
    memory = None
    with contextlib.suppress(ValueError, OSError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    devices = [str(d) for d in jax.devices()]
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "hostname": platform.node(),
            "platform": platform.platform(),
            "cpu": cpu,
            "cpu_count": os.cpu_count(),
            "memory_bytes": memory,
            "gpu": gpu,
        },
        "python": platform.python_version(),
        "versions": versions,
        "backend": jax.default_backend(),
        "devices": devices,
        "argv": sys.argv,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_", "KERAS_", "OMP_", "MALLOC_"))},
    }


# ---------------------------------------------------------------- measuring
def build_impls(
    names: Iterable[str], cell: str, mode: str, cfg: Config, xs: np.ndarray, **options: Any
) -> tuple[list[Impl], list[dict]]:
    impls, skipped = [], []
    for module_name in names:
        try:
            module = importlib.import_module(f"benchmarks.peers.{module_name}")
            impls.extend(module.build(cell, mode, cfg, xs, **options))
        except ImportError as err:
            skipped.append({"peer": module_name, "reason": f"not installed: {err}"})
        except Exception as err:  # noqa: BLE001 — one broken peer must not stop the suite
            skipped.append({"peer": module_name, "reason": f"{type(err).__name__}: {err}"})
            log(traceback.format_exc())
    return impls, skipped


def measure(impls: list[Impl], repeats: int, *, memory: bool = True) -> list[dict]:
    """Compiles, warms up, then times ``repeats`` interleaved rounds over every implementation."""
    import jax

    on_cpu = jax.default_backend() == "cpu"
    rows: dict[str, dict] = {}
    inner: dict[str, int] = {}
    alive: list[Impl] = []
    for impl in impls:
        row: dict[str, Any] = {"impl": impl.name, "framework": impl.framework}
        try:
            if impl.compile is not None:
                row["compile_s"] = impl.compile()
            row["first_call_s"] = timed(impl.run)
            probe = impl.extra.pop("probe_path", None)
            if probe is not None:
                impl.path = probe()
            warm = timed(impl.run)
            inner[impl.name] = max(1, min(20, math.ceil(MIN_SAMPLE_S / max(warm, 1e-6))))
            row["times_s"], row["cpu_times_s"] = [], []
            alive.append(impl)
        except Exception as err:  # noqa: BLE001 — recorded in the results
            row["error"] = f"{type(err).__name__}: {err}"
            log(f"  {impl.name}: {row['error']}")
        row["path"] = impl.path
        row.update({k: v for k, v in impl.extra.items() if isinstance(v, int | float | str | bool | dict)})
        rows[impl.name] = row
    for round_index in range(repeats):
        # Rotate the order each round so no implementation always runs right after the same one.
        shift = round_index % max(1, len(alive))
        for impl in alive[shift:] + alive[:shift]:
            k = inner[impl.name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(k):
                impl.run()
            rows[impl.name]["times_s"].append((time.perf_counter() - t0) / k)
            # CPU seconds of every thread of this process: what other processes' load disturbs least.
            rows[impl.name]["cpu_times_s"].append((time.process_time() - c0) / k)
    for impl in alive:
        row = rows[impl.name]
        row.update(summarize(row["times_s"]))
        row["cpu_median_s"] = float(np.median(row["cpu_times_s"]))
        row["calls_per_sample"] = inner[impl.name]
        if memory:
            peak = impl.device_peak(impl.run) if impl.device_peak is not None else None
            if peak is None and on_cpu:
                peak = peak_rss_delta(impl.run)
            row["peak_bytes"] = peak
            if impl.xla_bytes is not None:
                row["xla_bytes"] = impl.xla_bytes()
        value = impl.loss()
        row["loss"] = value
        row["finite"] = bool(np.isfinite(value))
    return list(rows.values())


def input_batch(cfg: Config, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((cfg.B, cfg.T, cfg.D)).astype(np.float32)


def with_ratios(rows: list[dict], cfg: Config) -> list[dict]:
    times = {r["impl"]: r["median_s"] for r in rows if "median_s" in r}
    floor = times.get("floor")
    reference = times.get("recurrax") or times.get("fused")  # the levers suite names its default "fused"
    for r in rows:
        if "median_s" not in r:
            continue
        r["tokens_per_s"] = cfg.B * cfg.T / r["median_s"]
        if floor:
            r["ratio_to_floor"] = r["median_s"] / floor
        if reference:
            r["recurrax_speedup"] = r["median_s"] / reference
    return rows


# ------------------------------------------------------------------- suites
def suite_peers(
    configs: list[Config],
    cells: list[str],
    modes: list[str],
    repeats: int,
    peers: list[str],
    options: dict,
    checkpoint: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Every implementation on every (config, cell, mode); ``checkpoint(results)`` after each block."""
    results = []
    for cfg in configs:
        xs = input_batch(cfg)
        for cell in cells:
            for mode in modes:
                log(f"[peers] {cell} {mode} {cfg.label}  load={load_average()}")
                impls, skipped = build_impls(peers, cell, mode, cfg, xs, **options)
                load_before = load_average()
                rows = with_ratios(measure(impls, repeats), cfg)
                for r in rows:
                    ms, floor = 1e3 * r.get("median_s", math.nan), r.get("ratio_to_floor", math.nan)
                    log(f"    {r['impl']:<34} {ms:9.2f} ms  x{floor:.2f} floor")
                results.append(
                    {
                        "cell": cell,
                        "mode": mode,
                        "config": cfg.__dict__,
                        "load_before": load_before,
                        "load_after": load_average(),
                        "rows": rows,
                        "skipped": skipped,
                    }
                )
                del impls
                if checkpoint is not None:
                    checkpoint(results)
    return results


def suite_levers(
    cfg: Config, repeats: int, modes: list[str], kernels: tuple[str, ...] = (), into: list | None = None
) -> list[dict]:
    from benchmarks.peers.recurrax_peer import LEVER_VARIANTS

    results = [] if into is None else into
    xs = input_batch(cfg)
    for mode in modes:
        log(f"[levers] lstm {mode} {cfg.label}  load={load_average()}")
        impls, skipped = build_impls(["floor"], "lstm", mode, cfg, xs)
        more, skipped_more = build_impls(
            ["recurrax_peer"], "lstm", mode, cfg, xs, variants=LEVER_VARIANTS, kernels=kernels
        )
        rows = with_ratios(measure(impls + more, repeats), cfg)
        for r in rows:
            log(f"    {r['impl']:<34} {1e3 * r.get('median_s', float('nan')):9.2f} ms")
        results.append(
            {"cell": "lstm", "mode": mode, "config": cfg.__dict__, "rows": rows, "skipped": skipped + skipped_more}
        )
    return results


def _recurrax_step(cfg: Config, kwargs: dict, layers: int = 1) -> tuple[Callable, Any, Any]:
    """A jitted LSTM training step of ``layers`` stacked recurrax LSTMs, with its arguments."""
    import jax
    import jax.numpy as jnp

    import recurrax

    keys = jax.random.split(jax.random.key(0), layers)
    cells = [recurrax.lstm(cfg.H) for _ in range(layers)]
    params = [c.init(k, cfg.D if i == 0 else cfg.H) for i, (c, k) in enumerate(zip(cells, keys, strict=True))]

    def loss(params: Any, xs: Any) -> Any:
        for c, p in zip(cells, params, strict=True):
            xs, _ = recurrax.scan(c, p, xs, **kwargs)
        return jnp.mean(jnp.square(xs))

    xs = jax.ShapeDtypeStruct((cfg.B, cfg.T, cfg.D), jnp.float32)
    return jax.jit(jax.value_and_grad(loss)), params, xs


def suite_scaling(
    steps: Iterable[int], repeats: int, shape: dict | None = None, plain: bool = True, into: list | None = None
) -> list[dict]:
    import jax.numpy as jnp

    shape = shape or SCALING_SHAPE
    rows = [] if into is None else into
    for T in steps:
        cfg = Config(shape["B"], T, shape["D"], shape["H"])
        xs = jnp.asarray(input_batch(cfg))
        for name, kwargs in (
            ("recurrax", {}),
            ("recurrax, remat", {"remat": True}),
            ("recurrax (plain scan)", {"fused": False}),
            ("recurrax (plain scan), remat", {"fused": False, "remat": True}),
        ):
            if "plain" in name and (T > 4096 or not plain):
                continue  # the plain loop at T=16384 takes minutes here; the trend is clear by 4096
            log(f"[scaling] {name} T={T}  load={load_average()}")
            step, params, _ = _recurrax_step(cfg, kwargs)
            t0 = time.perf_counter()
            compiled = step.lower(params, xs).compile()
            compile_s = time.perf_counter() - t0
            analysis = compiled.memory_analysis()

            def run(compiled: Any = compiled, params: Any = params, xs: Any = xs) -> Any:
                import jax

                return jax.block_until_ready(compiled(params, xs))

            first = timed(run)
            times = [timed(run) for _ in range(1 if T >= 4096 else repeats)]
            peak = peak_rss_delta(run)
            rows.append(
                {
                    "impl": name,
                    "config": cfg.__dict__,
                    "compile_s": compile_s,
                    "first_call_s": first,
                    **summarize(times),
                    "times_s": times,
                    "tokens_per_s": cfg.B * T / float(np.median(times)),
                    "peak_bytes": peak,
                    "xla_temp_bytes": None if analysis is None else int(analysis.temp_size_in_bytes),
                    "load": load_average(),
                }
            )
            log(f"    {np.median(times) * 1e3:10.1f} ms  peak {peak and peak / 2**20:.0f} MiB")
    return rows


def suite_compile() -> list[dict]:
    rows = []
    base = Config(16, 256, 64, 256)
    for layers, T in [(2, 64), (2, 1024), (2, 16384), (1, 256), (2, 256), (4, 256), (8, 256)]:
        cfg = Config(base.B, T, base.D, base.H)
        for name, kwargs in (("recurrax", {}), ("recurrax (plain scan)", {"fused": False})):
            step, params, xs = _recurrax_step(cfg, kwargs, layers)
            t0 = time.perf_counter()
            step.lower(params, xs).compile()
            rows.append({"impl": name, "layers": layers, "T": T, "compile_s": time.perf_counter() - t0})
            log(f"[compile] {name} layers={layers} T={T}: {rows[-1]['compile_s']:.2f} s")
    return rows


def _linear_impls(name: str, mode: str, cfg: Config, x: Any, kernels: tuple[str, ...] = ()) -> list[Impl]:
    """One block of the linear suite: recurrax sequential and parallel, and for minGRU the hand-written scan.

    With ``"pallas"`` in ``kernels`` also the parallel path with ``kernel="pallas"`` (its Pallas kernel),
    whole-sequence and, for T over :data:`LINEAR_PALLAS_CHUNK`, with time in chunks of that many steps.
    """
    import jax

    import recurrax
    from benchmarks import linear_reference

    log_space = name == "min_gru_log"
    factory = getattr(recurrax.cells, name.removesuffix("_log"))
    # The LRU's skip term needs D == H; the benchmark projects nothing, so it runs without it.
    cell = factory(cfg.H, skip=False) if name == "lru" else factory(cfg.H, **({"log_space": True} if log_space else {}))
    params = cell.init(jax.random.key(0), cfg.D)
    impls = []
    for method in ("sequential", "parallel"):

        def forward(p: Any, x: Any, method: str = method) -> Any:
            return recurrax.scan(cell, p, x, method=method)[0]

        impls.append(jax_impl(method, "recurrax", f"recurrax.scan(method={method!r})", forward, params, x, mode))
    if "pallas" in kernels:

        def forward_pallas(p: Any, x: Any) -> Any:
            return recurrax.scan(cell, p, x, method="parallel", kernel="pallas", fused=True)[0]

        call = "recurrax.scan(method='parallel', kernel='pallas')"
        impls.append(jax_impl(LINEAR_PALLAS, "recurrax", call, forward_pallas, params, x, mode))
        if cfg.T > LINEAR_PALLAS_CHUNK:

            def forward_chunked(p: Any, x: Any) -> Any:
                with linear_time_chunk(LINEAR_PALLAS_CHUNK):  # read while traced, inside jit
                    return forward_pallas(p, x)

            call = f"recurrax.scan(method='parallel', kernel='pallas'), _pallas_linear.TIME_CHUNK={LINEAR_PALLAS_CHUNK}"
            impls.append(jax_impl(LINEAR_PALLAS_CHUNKED, "recurrax", call, forward_chunked, params, x, mode))
    if name in LINEAR_REFERENCES:
        reference = getattr(linear_reference, LINEAR_REFERENCES[name])
        impls.append(
            jax_impl(
                HAND_WRITTEN, "jax", f"benchmarks/linear_reference.py:{reference.__name__}", reference, params, x, mode
            )
        )
    return impls


def _two_layer_impls(mode: str, cfg: Config, x: Any) -> list[Impl]:
    """The issue's model: two ``nn.RNN(min_gru(H), method="parallel")`` layers against the same two by hand."""
    from flax import nnx

    import recurrax
    from benchmarks import linear_reference

    layers = [
        recurrax.nn.RNN(recurrax.min_gru(cfg.H), width, rngs=nnx.Rngs(i), method="parallel")
        for i, width in enumerate((cfg.D, cfg.H))
    ]
    model = nnx.Sequential(*layers)
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)

    def forward(p: Any, x: Any) -> Any:
        return nnx.merge(graphdef, p, rest)(x)

    def by_hand(p: Any, x: Any) -> Any:
        for layer in p:
            x = linear_reference.min_gru_linear(layer, x)
        return x

    params = [layer.pure_params() for layer in layers]
    return [
        jax_impl("parallel", "recurrax", "2 × recurrax.nn.RNN(min_gru, method='parallel')", forward, state, x, mode),
        jax_impl(HAND_WRITTEN, "jax", "2 × benchmarks/linear_reference.py:min_gru_linear", by_hand, params, x, mode),
    ]


def suite_linear(
    steps: Iterable[int],
    repeats: int,
    cells: Iterable[str] = LINEAR_CELLS,
    modes: Iterable[str] = MODES,
    two_layer: bool = True,
    into: list | None = None,
    kernels: tuple[str, ...] = (),
) -> list[dict]:
    """Per T and cell: sequential, parallel and (minGRU) the hand-written scan, timed interleaved in pairs.

    minGRU in both spaces also runs the other ``modes`` (``forward``), and
    with ``two_layer`` the issue's two-layer ``nn.RNN`` model joins as
    ``min_gru ×2 (nn.RNN)`` at ``H/2`` units; ``vs_hand_written`` is each
    row's time over the hand-written scan's. ``into``: the list the rows are appended to as they are
    measured (what a time cap leaves of a cut run). ``kernels``: with ``"pallas"``, the parallel path's
    Pallas kernel joins as ``parallel (pallas)``, timed with the sequential loop (in a pair beside
    minGRU's parallel/hand-written pair; with the other cells, all three in rotation).
    """
    import jax.numpy as jnp

    rows = [] if into is None else into
    for T in steps:
        cfg = Config(16, T, 64, 256)
        x = jnp.asarray(input_batch(cfg))
        blocks = [(name, mode) for name in cells for mode in (modes if name in LINEAR_REFERENCES else ("train",))]
        if two_layer and "min_gru" in cells:
            blocks += [(TWO_LAYER, "train")]
        for name, mode in blocks:
            log(f"[linear] {name} {mode} T={T}  load={load_average()}")
            if name == TWO_LAYER:
                block_cfg = Config(cfg.B, T, cfg.D, cfg.H // 2)
                impls = _two_layer_impls(mode, block_cfg, x)
            else:
                block_cfg, impls = cfg, _linear_impls(name, mode, cfg, x, kernels)
            # Timed in pairs: with three, a rotating order puts each one after the same neighbour in two
            # rounds of three, and the call after the sequential loop's small working set runs slower.
            paired = [i for i in impls if i.name in ("parallel", HAND_WRITTEN)]
            groups = [paired, [i for i in impls if i not in paired]] if len(paired) == 2 else [impls]
            load_before = load_average()
            measured = [row for group in groups if group for row in measure(group, repeats)]
            load_after = load_average()
            by_hand = next((r for r in measured if r["impl"] == HAND_WRITTEN and "median_s" in r), None)
            for r in measured:
                r.update(cell=name, method=r["impl"], mode=mode, config=block_cfg.__dict__)
                r.update(load_before=load_before, load_after=load_after)
                if by_hand is not None and "median_s" in r:
                    r["vs_hand_written"] = r["median_s"] / by_hand["median_s"]
                    r["vs_hand_written_min"] = r["min_s"] / by_hand["min_s"]
                    r["vs_hand_written_cpu"] = r["cpu_median_s"] / by_hand["cpu_median_s"]
                ratio = r.get("vs_hand_written", math.nan)
                log(f"    {r['impl']:<14} {1e3 * r.get('median_s', math.nan):9.1f} ms  x{ratio:.3f} hand-written")
            rows.extend(measured)
    return rows


# ------------------------------------------------------------------ reports
def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.1f}"


def _num(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _mib(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**20:.0f}"


def summary_rows(peers: list[dict]) -> list[dict]:
    """Per (config, cell, mode): recurrax against the floor, the fastest JAX peer and the best PyTorch."""
    out = []
    for block in peers:
        rows = [r for r in block["rows"] if "median_s" in r]
        get = {r["impl"]: r for r in rows}
        rec = get.get("recurrax")
        if rec is None:
            continue
        floor_min = get["floor"]["min_s"] if "floor" in get else None
        jax_peers = [r for r in rows if r["framework"] in ("flax.nnx", "flax.linen", "equinox", "haiku", "keras")]
        torch_rows = [r for r in rows if r["framework"] == "torch"]
        best_jax = min(jax_peers, key=lambda r: r["median_s"], default=None)
        best_torch = min(torch_rows, key=lambda r: r["median_s"], default=None)
        # Under load the minimum is the least disturbed sample; both are reported.
        best_jax_min = min((r["min_s"] for r in jax_peers), default=None)
        best_torch_min = min((r["min_s"] for r in torch_rows), default=None)
        out.append(
            {
                "cell": block["cell"],
                "mode": block["mode"],
                "config": Config(**block["config"]).label,
                "load": block.get("load_before"),
                "recurrax_ms": rec["median_s"] * 1e3,
                "vs_floor": rec.get("ratio_to_floor"),
                "vs_floor_min": floor_min and rec["min_s"] / floor_min,
                "best_jax_peer": best_jax and best_jax["impl"],
                "speedup_vs_best_jax": best_jax and best_jax["median_s"] / rec["median_s"],
                "speedup_vs_best_jax_min": best_jax_min and best_jax_min / rec["min_s"],
                "best_torch": best_torch and best_torch["impl"],
                "speedup_vs_torch": best_torch and best_torch["median_s"] / rec["median_s"],
                "speedup_vs_torch_min": best_torch_min and best_torch_min / rec["min_s"],
            }
        )
    return out


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        f"# recurrax benchmarks — {meta['backend']} — {meta['date']}",
        "",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cpu_count']} cores"
        + (f", GPU {meta['machine']['gpu']}" if meta["machine"]["gpu"] else "")
        + f"; load average at start {meta['load_start']}, at end {meta.get('load_end')}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v),
        "",
        "Times are medians of interleaved repeats after warm-up (min–max in the JSON). "
        "`× floor`: time over the floor's (the T sequential recurrent matmuls alone). "
        "`recurrax ×`: this implementation's time over recurrax's (above 1: recurrax is faster). "
        "Memory: `XLA MiB` is XLA's own figure for a JAX program (arguments, outputs, temporaries); "
        "`peak MiB` is the rise of the process's peak RSS in one call (CPU) or PyTorch's CUDA peak — "
        "XLA keeps its buffers between calls, so for JAX on CPU it stays near 0 and XLA MiB is the one to read.",
        "",
    ]
    summary = summary_rows(report.get("peers", []))
    if summary:
        lines += [
            "## Summary: recurrax against the others",
            "",
            "Speed-ups above 1 mean recurrax is faster: from medians, and in brackets from each one's fastest "
            "repeat (the least disturbed sample on a shared machine). PyTorch: the better of its thread counts.",
            "",
            "| cell | mode | config | load | recurrax ms | × floor | fastest JAX peer | vs it | best PyTorch | vs it |",
            "|---|---|---|---|---:|---:|---|---:|---|---:|",
        ]

        def fmt(v: float | None, w: float | None = None) -> str:
            if v is None:
                return "–"
            return f"{v:.2f}" + ("" if w is None else f" ({w:.2f})")

        for s in summary:
            load = "–" if not s["load"] else f"{s['load'][0]:.1f}"
            lines.append(
                f"| {s['cell']} | {s['mode']} | {s['config']} | {load} | {s['recurrax_ms']:.1f} | "
                f"{fmt(s['vs_floor'], s['vs_floor_min'])} | {s['best_jax_peer'] or '–'} | "
                f"{fmt(s['speedup_vs_best_jax'], s['speedup_vs_best_jax_min'])} | {s['best_torch'] or '–'} | "
                f"{fmt(s['speedup_vs_torch'], s['speedup_vs_torch_min'])} |"
            )
        lines.append("")
    for title, key in (("Peers", "peers"), ("recurrax levers (before/after)", "levers")):
        blocks = report.get(key) or []
        if not blocks:
            continue
        lines += [f"## {title}", ""]
        for block in blocks:
            cfg = Config(**block["config"])
            lines += [
                f"### {block['cell'].upper()} {block['mode']}, {cfg.label}",
                "",
                "| implementation | ms | tokens/s | × floor | recurrax × | compile s | peak MiB | XLA MiB | path |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---|",
            ]
            for r in sorted(block["rows"], key=lambda r: r.get("median_s", math.inf)):
                if "median_s" not in r:
                    lines.append(f"| {r['impl']} | error: {r.get('error', '?')} | | | | | | | |")
                    continue
                lines.append(
                    f"| {r['impl']} | {_ms(r['median_s'])} | {r['tokens_per_s']:,.0f} | "
                    f"{_num(r.get('ratio_to_floor'))} | {_num(r.get('recurrax_speedup'))} | "
                    f"{_num(r.get('compile_s'))} | {_mib(r.get('peak_bytes'))} | "
                    f"{_mib(r.get('xla_bytes'))} | {r['path']} |"
                )
            for s in block.get("skipped", []):
                lines.append(f"| {s['peer']} | skipped: {s['reason'][:80]} | | | | | | | |")
            lines.append("")
    if report.get("scaling"):
        lines += [
            "## Scaling: LSTM training step against T (B=16, D=64, H=256)",
            "",
            "| implementation | T | ms | tokens/s | XLA temp MiB | RSS peak MiB | compile s |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in report["scaling"]:
            lines.append(
                f"| {r['impl']} | {r['config']['T']} | {_ms(r['median_s'])} | {r['tokens_per_s']:,.0f} | "
                f"{_mib(r.get('xla_temp_bytes'))} | {_mib(r['peak_bytes'])} | {r['compile_s']:.2f} |"
            )
        lines.append("")
    if report.get("compile"):
        lines += [
            "## Compile time of stacked LSTMs (B=16, D=64, H=256)",
            "",
            "| implementation | layers | T | compile s |",
        ]
        lines.append("|---|---:|---:|---:|")
        for r in report["compile"]:
            lines.append(f"| {r['impl']} | {r['layers']} | {r['T']} | {r['compile_s']:.2f} |")
        lines.append("")
    if report.get("linear"):
        lines += linear_markdown(report["linear"])
    return "\n".join(lines)


def linear_markdown(rows: list[dict]) -> list[str]:
    """The linear suite's tables: recurrax's parallel path over the hand-written scan, then every method."""
    lines = [
        "## Linear recurrences: recurrax's parallel scan against a hand-written associative scan",
        "",
        "The same minGRU (`benchmarks/linear_reference.py`: one matmul and `jax.lax.associative_scan` over",
        'batch-major inputs, zero initial state), interleaved with recurrax\'s `method="parallel"` in one process.',
        "`ratio`: recurrax's median wall time over the hand-written one's (in brackets: fastest repeat over",
        "fastest repeat); `CPU ratio`: the same for the process's CPU seconds per call (all its threads), which",
        "other processes' load disturbs least. `load`: the 1-minute load average before and after the block.",
        "B=16, D=64, H=256 (the two-layer `nn.RNN` model: H=128 per layer).",
        "",
        "| cell | mode | T | load | recurrax ms | hand-written ms | ratio | CPU ratio |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("method") != "parallel" or "vs_hand_written" not in r:
            continue
        by_hand = r["median_s"] / r["vs_hand_written"]
        load = "–" if not r.get("load_before") else f"{r['load_before'][0]:.1f}–{r['load_after'][0]:.1f}"
        lines.append(
            f"| {r['cell']} | {r.get('mode', 'train')} | {r['config']['T']} | {load} | {_ms(r['median_s'])} | "
            f"{_ms(by_hand)} | {r['vs_hand_written']:.3f} ({r['vs_hand_written_min']:.3f}) | {_ratio(r)} |"
        )
    lines += [
        "",
        "## Linear recurrences: every method (B=16, D=64, H=256)",
        "",
        "| cell | mode | method | T | ms | min ms | XLA MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "median_s" not in r:
            lines.append(f"| {r['cell']} | {r.get('mode', 'train')} | {r['method']} | {r['config']['T']} | error | | |")
            continue
        lines.append(
            f"| {r['cell']} | {r.get('mode', 'train')} | {r['method']} | {r['config']['T']} | {_ms(r['median_s'])} | "
            f"{_ms(r.get('min_s'))} | {_mib(r.get('xla_bytes', r.get('peak_bytes')))} |"
        )
    lines.append("")
    return lines


def _ratio(row: dict) -> str:
    return f"{row['vs_hand_written_cpu']:.3f}" if "vs_hand_written_cpu" in row else "–"


def write(report: dict, out: Path) -> None:
    write_record(out, report, markdown)
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


# --------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated subset of {SUITES}")
    p.add_argument("--configs", default=None, help="indices into the peer configurations, e.g. 0,1")
    p.add_argument("--cells", default=",".join(CELLS))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--peers", default=",".join(PEERS), help="peer modules to include")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--torch-threads", default=None, help="e.g. 2,1 (default: free cores and 1)")
    p.add_argument("--scaling-steps", default=",".join(map(str, SCALING_STEPS)))
    p.add_argument("--linear-steps", default=",".join(map(str, LINEAR_STEPS)))
    p.add_argument("--linear-cells", default=",".join(LINEAR_CELLS), help=f"a subset of {LINEAR_CELLS}")
    p.add_argument(
        "--kernels",
        default="",
        help="recurrax kernels to add to peers, levers and linear (ScanOptions.kernel): pallas,cudnn (linear: pallas)",
    )
    p.add_argument(
        "--kernel-variant",
        choices=VARIANTS,
        default=None,
        help="off a GPU and a TPU: which Pallas kernels to interpret (run_tpu.sh --smoke: tpu); recorded in meta",
    )
    p.add_argument("--quick", action="store_true", help="first configuration only, 3 repeats, short scaling")
    p.add_argument("--smoke", action="store_true", help="tiny shapes, 1 repeat: checks that everything runs")
    p.add_argument("--out", default=None, help="output path without suffix (default benchmarks/results/<backend>)")
    p.add_argument("--render", default=None, help="re-render the markdown table of an existing results JSON and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render:
        path = Path(args.render)
        report = json.loads(path.read_text())
        for block in report.get("peers", []) + report.get("levers", []):
            with_ratios(block["rows"], Config(**block["config"]))
        path.with_suffix(".md").write_text(markdown(report))
        log(f"wrote {path.with_suffix('.md')}")
        return report
    import jax

    kernel_variant = use_variant(args.kernel_variant)
    suites = [s for s in args.suites.split(",") if s]
    unknown = set(suites) - set(SUITES)
    if unknown:
        raise SystemExit(f"--suites: unknown {sorted(unknown)}; choose from {SUITES}")
    configs = list(PEER_CONFIGS)
    if args.configs:
        configs = [PEER_CONFIGS[int(i)] for i in args.configs.split(",")]
    repeats, scaling_steps, linear_steps = args.repeats, [int(t) for t in args.scaling_steps.split(",")], None
    linear_steps = [int(t) for t in args.linear_steps.split(",")]
    lever_config = LEVER_CONFIG
    if args.quick:
        configs, repeats = configs[:1], min(repeats, 3)
        scaling_steps, linear_steps = [t for t in scaling_steps if t <= 1024], [t for t in linear_steps if t <= 1024]
        lever_config = PEER_CONFIGS[0]
    if args.smoke:
        configs, repeats, lever_config = [SMOKE_CONFIG], 1, SMOKE_CONFIG
        scaling_steps, linear_steps = [8], [8]
    options: dict[str, Any] = {}
    if args.torch_threads:
        options["torch_threads"] = tuple(int(t) for t in args.torch_threads.split(","))
    kernels = tuple(k for k in args.kernels.split(",") if k)
    if kernels:
        options["kernels"] = kernels
    cells = args.cells.split(",")
    modes = args.modes.split(",")
    linear_cells = tuple(args.linear_cells.split(","))
    report: dict[str, Any] = {"meta": environment()}  # imports every installed peer's framework
    if args.smoke:
        # The memory probes collect garbage before each call; with jax, torch and keras loaded a full
        # collection takes ~0.3 s, more than a tiny program's compile. Smoke sizes measure nothing, so
        # the objects alive now (the frameworks' modules) are left out of those collections.
        gc.freeze()
    report["meta"]["kernel_variant"] = kernel_variant  # which Pallas kernels --kernels pallas ran
    report["meta"]["load_start"] = load_average()
    report["meta"]["repeats"] = repeats
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / jax.default_backend()
    t_start = time.perf_counter()

    def checkpoint(results: list[dict]) -> None:
        report["peers"] = results
        write(report, out)

    scaling_shape = {"B": 2, "D": 3, "H": 4} if args.smoke else None
    # Each runner appends to ``rows`` as it measures (peers checkpoints into the report itself), so a suite
    # cut by a time cap keeps what it measured.
    runners: dict[str, Callable[[list[dict]], Any]] = {
        "peers": lambda rows: suite_peers(configs, cells, modes, repeats, args.peers.split(","), options, checkpoint),
        "levers": lambda rows: suite_levers(lever_config, repeats, modes, kernels, into=rows),
        "scaling": lambda rows: suite_scaling(
            scaling_steps, min(repeats, 3), scaling_shape, plain=not args.smoke, into=rows
        ),
        "compile": lambda rows: suite_compile(),
        # Smoke: one linear cell is enough to prove the suite runs (the others share its code). Every
        # repeat otherwise: its ratios to the hand-written scan are the point, and load needs rounds.
        "linear": lambda rows: suite_linear(
            linear_steps, repeats, ("min_gru",) if args.smoke else linear_cells, modes, into=rows, kernels=kernels
        ),
    }
    # In the order given, so a time-capped run (run_gpu.sh) measures what matters most first.
    suite, rows = None, []
    try:
        for suite in suites:
            if suite == "compile" and args.smoke:
                continue
            rows = []
            report[suite] = runners[suite](rows)
            write(report, out)
    except KeyboardInterrupt:
        # A time cap (run_gpu.sh sends SIGINT): keep what was measured and say where it stopped.
        report["meta"]["interrupted_in"] = suite
        if suite is not None and suite not in report and rows:
            report[suite] = rows
        log(f"interrupted in suite {suite!r}: its results are partial (or missing: compile); the next did not run")
    finally:
        if args.smoke:
            gc.unfreeze()  # collectable again, for whatever the calling process does next
    report["meta"]["load_end"] = load_average()
    report["meta"]["wall_s"] = time.perf_counter() - t_start
    write(report, out)
    return report


if __name__ == "__main__":
    main()
