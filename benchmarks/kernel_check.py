"""Are recurrax's kernels right on this machine? ``kernel="pallas"`` and ``"cudnn"`` against the step loop.

The test suite proves the kernels on CPU (Pallas interpreted, cuDNN's pure-JAX
reference standing in for the call); only a GPU runs the Triton-compiled
kernels and cuDNN itself. ``benchmarks/run_gpu.sh`` runs this first, so a GPU
run records the kernels' correctness beside their speed::

    python -m benchmarks.kernel_check --out benchmarks/results/gpu_kernels   # writes .json
    python -m benchmarks.kernel_check --smoke --cells gru                     # tiny shape, any backend

For the LSTM and the GRU, each kernel the cell offers, forwards and reversed,
with per-example lengths and a random initial carry: the largest absolute
difference from the step loop (``fused=False``) in the outputs, the final
carry and the gradients of a loss with respect to parameters, inputs and
initial carry, each over the reference's largest magnitude. Matmuls run at
``jax.default_matmul_precision("highest")``, so TF32 does not blur the
comparison. A kernel that cannot run here is recorded with its reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

KERNELS = {"lstm": ("pallas", "cudnn"), "gru": ("pallas",)}
SHAPE = {"B": 32, "T": 128, "D": 64, "H": 128}
SMOKE_SHAPE = {"B": 2, "T": 5, "D": 3, "H": 4}


def _relative(got: Any, want: Any) -> float:
    import jax

    worst = 0.0
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        worst = max(worst, float(np.max(np.abs(g - w)) / max(float(np.max(np.abs(w))), 1e-30)))
    return worst


def check(cell_name: str, kernel: str, reverse: bool, shape: dict[str, int]) -> dict[str, Any]:
    """One comparison: the kernel against the step loop, values and gradients."""
    import jax
    import jax.numpy as jnp

    import recurrax

    B, T, D, H = shape["B"], shape["T"], shape["D"], shape["H"]
    cell = recurrax.lstm(H) if cell_name == "lstm" else recurrax.gru(H)
    k_p, k_x, k_c, k_l, k_w = jax.random.split(jax.random.key(0), 5)
    params = cell.init(k_p, D)
    xs = jax.random.normal(k_x, (B, T, D))
    carry = jax.tree.map(lambda a: 0.5 * jax.random.normal(k_c, a.shape), cell.initial_carry((B,)))
    lengths = jax.random.randint(k_l, (B,), max(1, T // 2), T + 1)
    weights = jax.random.normal(k_w, (B, T, H))

    def loss(params: Any, xs: Any, carry: Any, fused: bool) -> Any:
        options = recurrax.ScanOptions(reverse=reverse, fused=fused, kernel=kernel)
        ys, final = recurrax.scan(cell, params, xs, initial_carry=carry, lengths=lengths, options=options)
        total = jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(final))
        return total, (ys, final)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)
    row: dict[str, Any] = {"cell": cell_name, "kernel": kernel, "reverse": reverse, "shape": shape}
    try:
        with jax.default_matmul_precision("highest"):
            t0 = time.perf_counter()
            (_, (ys, final)), grads = jax.block_until_ready(grad(params, xs, carry, True))
            row["kernel_first_call_s"] = time.perf_counter() - t0
            (_, (ys_ref, final_ref)), grads_ref = jax.block_until_ready(grad(params, xs, carry, False))
    except Exception as err:  # noqa: BLE001 — recorded: a kernel that cannot run here says why
        row["error"] = f"{type(err).__name__}: {err}"
        return row
    row["outputs"] = _relative(ys, ys_ref)
    row["final_carry"] = _relative(final, final_ref)
    row["gradients"] = _relative(grads, grads_ref)
    row["padding_zero"] = bool(all(np.all(np.asarray(ys)[b, int(n) :] == 0) for b, n in enumerate(lengths)))
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_check", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help=f"the shape {SMOKE_SHAPE} instead of {SHAPE}")
    parser.add_argument("--cells", default=",".join(KERNELS), help=f"a subset of {tuple(KERNELS)}")
    parser.add_argument("--out", default=None, help="write <out>.json")
    args = parser.parse_args(argv)
    import jax

    shape = SMOKE_SHAPE if args.smoke else SHAPE
    rows = []
    cells = [c for c in args.cells.split(",") if c]
    unknown = sorted(set(cells) - set(KERNELS))
    if unknown:
        raise SystemExit(f"--cells: unknown {unknown}; choose from {tuple(KERNELS)}")
    for cell_name in cells:
        for kernel in KERNELS[cell_name]:
            for reverse in (False, True):
                row = check(cell_name, kernel, reverse, shape)
                rows.append(row)
                found = row.get("error") or (
                    f"outputs {row['outputs']:.1e}, final carry {row['final_carry']:.1e}, "
                    f"gradients {row['gradients']:.1e} (relative), padding zero: {row['padding_zero']}"
                )
                print(f"{cell_name} kernel={kernel} reverse={reverse}: {found}", file=sys.stderr, flush=True)
                if args.out:  # after every row: a run cut by its time cap keeps what it checked
                    report = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
                    Path(args.out).with_suffix(".json").write_text(
                        json.dumps({**report, "rows": rows}, indent=1) + "\n"
                    )
    return rows


if __name__ == "__main__":
    main()
