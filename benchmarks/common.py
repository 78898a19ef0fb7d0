"""What every benchmark shares: the configurations, one implementation's interface, timing and memory.

Terms used in the results:
  ``train``   one training step: forward over the whole sequence, the loss
              ``mean(ys²)`` over every output, and the gradient of every parameter;
  ``forward`` the outputs ``ys[B, T, H]`` only (no gradient bookkeeping);
  ``median_s`` the median over interleaved repeats after warm-up (``min_s``/``max_s`` beside it);
  ``tokens_per_s`` ``B·T / median_s``;
  ``compile_s`` for a JAX implementation the ahead-of-time ``lower().compile()``
              time; ``first_call_s`` the first call, compile included;
  ``peak_bytes`` on CPU the rise of the process's peak resident memory during
              one call (``VmHWM`` after ``malloc_trim`` and a reset); on GPU,
              PyTorch's device peak (JAX cannot reset its own, so none);
  ``xla_bytes`` XLA's static estimate for a JAX implementation: arguments,
              outputs and temporaries of the compiled program.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MODES = ("train", "forward")
CELLS = ("lstm", "gru")


@dataclasses.dataclass(frozen=True)
class Config:
    """One problem size: batch ``B``, steps ``T``, input features ``D``, hidden units ``H``."""

    B: int
    T: int
    D: int
    H: int

    @property
    def label(self) -> str:
        return f"B={self.B},T={self.T},D={self.D},H={self.H}"


PEER_CONFIGS = (
    Config(32, 128, 64, 128),
    Config(64, 256, 128, 256),
    Config(16, 1024, 32, 128),
    Config(128, 64, 256, 512),
)
SMOKE_CONFIG = Config(2, 5, 3, 4)


@dataclasses.dataclass
class Impl:
    """One implementation, built for one (cell, mode, config).

    ``run()`` executes one call and waits for its results; ``loss()`` returns
    the loss (train) or the mean square of the outputs (forward) as a float,
    the smoke test's sanity check. ``compile()`` (JAX only) compiles ahead of
    time and returns the seconds it took; the harness calls it before ``run``.
    """

    name: str
    framework: str
    path: str
    run: Callable[[], Any]
    loss: Callable[[], float]
    compile: Callable[[], float] | None = None
    xla_bytes: Callable[[], int | None] | None = None
    device_peak: Callable[[Callable[[], Any]], int | None] | None = None
    extra: dict = dataclasses.field(default_factory=dict)


def jax_impl(
    name: str,
    framework: str,
    path: str,
    forward: Callable[[Any, Any], Any],
    params: Any,
    xs: Any,
    mode: str,
    extra: dict | None = None,
) -> Impl:
    """An :class:`Impl` from a pure ``forward(params, xs) -> ys[B, T, H]``, jitted the standard way."""
    import jax
    import jax.numpy as jnp

    if mode == "train":

        def loss_fn(p: Any, x: Any) -> Any:
            return jnp.mean(jnp.square(forward(p, x)))

        fn = jax.value_and_grad(loss_fn)
    else:
        fn = forward
    jitted = jax.jit(fn)
    state: dict[str, Any] = {}

    def compile_() -> float:
        t0 = time.perf_counter()
        state["compiled"] = jitted.lower(params, xs).compile()
        return time.perf_counter() - t0

    def run() -> Any:
        out = state["compiled"](params, xs) if "compiled" in state else jitted(params, xs)
        return jax.block_until_ready(out)

    def loss() -> float:
        out = run()
        value = out[0] if mode == "train" else jnp.mean(jnp.square(out))
        finite_grads = all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(out[1])) if mode == "train" else True
        return float(value) if finite_grads else float("nan")

    def xla_bytes() -> int | None:
        compiled = state.get("compiled")
        analysis = compiled.memory_analysis() if compiled is not None else None
        if analysis is None:
            return None
        return int(
            analysis.temp_size_in_bytes
            + analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            - analysis.alias_size_in_bytes
        )

    # No device_peak: JAX cannot reset its device peak; off CPU, xla_bytes is its memory figure.
    return Impl(name, framework, path, run, loss, compile_, xla_bytes, None, extra or {})


# ------------------------------------------------------------------ environment
def cpu_name() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what ``platform.processor()`` says."""
    import platform

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def free_cores() -> int:
    """Cores not busy with other processes right now (at least 1)."""
    cores = os.cpu_count() or 1
    load = load_average()
    return max(1, min(cores, round(cores - (load[0] if load else 0.0))))


# ---------------------------------------------------------------------- memory
_LIBC: Any = None


def _trim_heap() -> None:
    global _LIBC
    gc.collect()
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except OSError:
        pass


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_delta(call: Callable[[], Any]) -> int | None:
    """Bytes by which one ``call()`` raises this process's peak resident memory (Linux only)."""
    _trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident size
    except OSError:
        return None
    before = _status_kib("VmRSS")
    call()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, (peak - before) * 1024)


# ---------------------------------------------------------------------- timing
def timed(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def summarize(times: list[float]) -> dict[str, float]:
    return {
        "median_s": float(np.median(times)),
        "min_s": float(np.min(times)),
        "max_s": float(np.max(times)),
    }


def write_record(out: Path, record: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> Path:
    """A benchmark's results pair: ``record`` as ``out.json`` and ``render(record)`` as ``out.md``.

    ``out`` is the path without suffix; its folder is made if missing. Returns the markdown file's path.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    markdown = out.with_suffix(".md")
    markdown.write_text(render(record))
    return markdown
