"""The floor: the T sequential recurrent matmuls alone, which no sequential LSTM/GRU can beat.

Forward: ``h ← (h W)[:, :H]`` for T steps, ``W[H, G·H]`` (G = 4 gates for an
LSTM, 3 for a GRU). Train: those T steps, then the T backward matmuls
``g ← tile(g) Wᵀ`` that any backward pass through time must do one after the
other. Everything else an RNN does (input projection, gates, weight
gradients) is either parallel over time or elementwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.common import Config, Impl

GATES = {"lstm": 4, "gru": 3}


def build(cell: str, mode: str, cfg: Config, xs: np.ndarray, **options: Any) -> list[Impl]:
    import jax
    import jax.numpy as jnp

    G, B, H, T = GATES[cell], cfg.B, cfg.H, cfg.T
    w = jax.random.normal(jax.random.key(0), (H, G * H), jnp.float32) / np.sqrt(H)
    h0 = jnp.ones((B, H), jnp.float32)

    def forward(w: Any, h0: Any) -> Any:
        h, _ = jax.lax.scan(lambda h, _: ((h @ w)[:, :H], None), h0, None, length=T)
        return h

    def train(w: Any, h0: Any) -> Any:
        h = forward(w, h0)
        g, _ = jax.lax.scan(lambda g, _: (jnp.tile(g, (1, G)) @ w.T, None), h, None, length=T)
        return g

    jitted = jax.jit(train if mode == "train" else forward)
    state: dict[str, Any] = {}

    def compile_() -> float:
        import time

        t0 = time.perf_counter()
        state["compiled"] = jitted.lower(w, h0).compile()
        return time.perf_counter() - t0

    def run() -> Any:
        return jax.block_until_ready(state.get("compiled", jitted)(w, h0))

    def loss() -> float:
        return float(jnp.mean(jnp.square(run())))

    path = f"lax.scan of [B,H]x[H,{G}H] matmuls only" + (", then T transposed ones" if mode == "train" else "")
    return [Impl("floor", "jax", path, run, loss, compile_)]
