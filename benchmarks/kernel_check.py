"""Are recurrax's kernels right on this machine? ``kernel="pallas"`` and ``"cudnn"`` against the step loop.

The test suite proves the kernels on CPU (Pallas interpreted, cuDNN's pure-JAX
reference standing in for the call); only a GPU runs the Triton-compiled
kernels and cuDNN itself. ``benchmarks/run_gpu.sh`` runs this first, so a GPU
run records the kernels' correctness beside their speed::

    python -m benchmarks.kernel_check --out benchmarks/results/gpu_kernels   # writes .json
    python -m benchmarks.kernel_check --smoke --cells gru                     # tiny shape, any backend
    python -m benchmarks.kernel_check --smoke --kernels pallas --kernel-variant tpu   # the TPU kernels, interpreted

For the LSTM and the GRU, each kernel the cell offers, forwards and reversed,
with per-example lengths and a random initial carry: the largest absolute
difference from the step loop (``fused=False``) in the outputs, the final
carry and the gradients of a loss with respect to parameters, inputs and
initial carry, each over the reference's largest magnitude. For minGRU and
the LRU (a complex state), the same for the linear scan's Pallas kernel
(``method="parallel", kernel="pallas"``), also with resets. Matmuls run at
``jax.default_matmul_precision("highest")``, so TF32 does not blur the
comparison. A kernel that cannot run here is recorded with its reason.

Every row records the backend, and a Pallas row the kernel variant that ran
(``"tpu"``: Mosaic, ``"triton"``) and whether it ran interpreted. On a GPU or
a TPU the variant is the device's; elsewhere ``--kernel-variant`` picks which
variant the interpreter runs (``benchmarks/run_tpu.sh --smoke`` checks the TPU
kernels that way on CPU). ``--kernels pallas`` leaves cuDNN out (a TPU has none).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Checked after the others: no timed suite waits on them.
EXTRA_CELLS = ("peephole_lstm", "simple_rnn")
# The linear kernel with time in chunks (_pallas_linear.TIME_CHUNK, here T/4 steps), recorded under its own name.
CHUNKED = "pallas (time chunks)"
KERNELS = {
    "lstm": ("pallas", "cudnn"),
    "gru": ("pallas",),
    "peephole_lstm": ("pallas",),  # the gates-from-a-matmul kernel with per-unit parameters
    "simple_rnn": ("pallas",),
    "min_gru": ("pallas", CHUNKED),
    "lru": ("pallas", CHUNKED),
}
# The linear cells: their kernel runs the parallel scan's recurrence (method="parallel").
LINEAR = ("min_gru", "lru")
SHAPE = {"B": 32, "T": 128, "D": 64, "H": 128}
SMOKE_SHAPE = {"B": 2, "T": 5, "D": 3, "H": 4}
DIRECT = "cudnn (direct call)"
DIRECT_VARIANTS = ("gathered_in_jit", "gathered_outside", "host_copy")
# The Pallas kernels' variants (recurrax.cells._pallas.kernel_variant): Triton (GPU) and Mosaic (TPU).
VARIANTS = ("triton", "tpu")


def _relative(got: Any, want: Any) -> float:
    import jax

    worst = 0.0
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        wide = np.complex128 if np.iscomplexobj(w) else np.float64
        g, w = np.asarray(g).astype(wide), np.asarray(w).astype(wide)
        worst = max(worst, float(np.max(np.abs(g - w)) / max(float(np.max(np.abs(w))), 1e-30)))
    return worst


def use_variant(variant: str | None) -> str:
    """Makes ``variant`` the Pallas kernels run off a GPU and a TPU (interpreted); returns the variant that runs.

    ``None`` leaves the library's choice. On a GPU or a TPU the device's own
    variant always runs, so asking for the other one there is an error, not a
    silent no-op. The benchmarks set this, never the library's callers.
    """
    import jax

    from recurrax.cells import _pallas

    if variant is not None:
        if variant not in VARIANTS:
            raise SystemExit(f"--kernel-variant: got {variant!r}, expected one of {VARIANTS}")
        backend = jax.default_backend()
        if backend in ("gpu", "tpu") and variant != _pallas.kernel_variant():
            raise SystemExit(
                f"--kernel-variant: got {variant!r}, but on a {backend} the {_pallas.kernel_variant()!r} kernels "
                "always run (the option picks the interpreted variant on other backends)"
            )
        _pallas.OFF_DEVICE_VARIANT = variant
    return _pallas.kernel_variant()


@contextlib.contextmanager
def linear_time_chunk(steps: int | None) -> Iterator[None]:
    """Inside: the linear Pallas scan runs time in chunks of ``steps`` (None: whole) for what is traced here.

    ``_pallas_linear.TIME_CHUNK`` is read while a call is traced, so a call traced inside keeps the setting.
    """
    from recurrax.cells import _pallas_linear

    saved, _pallas_linear.TIME_CHUNK = _pallas_linear.TIME_CHUNK, steps
    try:
        yield
    finally:
        _pallas_linear.TIME_CHUNK = saved


def run_facts(kernel: str) -> dict[str, Any]:
    """What ran a row: the backend, and for the Pallas kernels which variant and whether interpreted."""
    import jax

    from recurrax.cells import _pallas

    backend = jax.default_backend()
    facts: dict[str, Any] = {"backend": backend}
    if kernel.startswith("pallas"):
        # On a GPU or a TPU the device's own variant runs compiled; elsewhere every variant is interpreted.
        facts.update(variant=_pallas.kernel_variant(), interpreted=backend not in ("gpu", "tpu"))
    return facts


def check(cell_name: str, kernel: str, reverse: bool, shape: dict[str, int]) -> dict[str, Any]:
    """One comparison: the kernel against the step loop, values and gradients."""
    import jax
    import jax.numpy as jnp

    import recurrax

    B, T, D, H = shape["B"], shape["T"], shape["D"], shape["H"]
    linear = cell_name in LINEAR
    factories = {
        "lstm": recurrax.lstm,
        "gru": recurrax.gru,
        "peephole_lstm": lambda h: recurrax.lstm(h, peephole=True),
        "simple_rnn": recurrax.simple_rnn,
        "min_gru": recurrax.min_gru,
    }
    cell = recurrax.lru(H, skip=False) if cell_name == "lru" else factories[cell_name](H)
    k_p, k_x, k_c, k_l, k_w, k_r = jax.random.split(jax.random.key(0), 6)
    params = cell.init(k_p, D)
    xs = jax.random.normal(k_x, (B, T, D))
    carry = jax.tree.map(lambda a: 0.5 * jax.random.normal(k_c, a.shape, a.dtype), cell.initial_carry((B,)))
    lengths = jax.random.randint(k_l, (B,), max(1, T // 2), T + 1)
    weights = jax.random.normal(k_w, (B, T, H))
    # Episode starts for the linear kernel (the LSTM's and GRU's cuDNN path declines them).
    resets = jax.random.uniform(k_r, (B, T)) < 0.05 if linear else None

    def loss(params: Any, xs: Any, carry: Any, fused: bool) -> Any:
        # The kernel (fused=True) against the step loop (fused=False, method="sequential").
        method = "parallel" if linear and fused else "sequential"
        options = recurrax.ScanOptions(reverse=reverse, fused=fused, kernel=kernel.split(" ")[0], method=method)
        with linear_time_chunk(max(T // 4, 1) if kernel == CHUNKED else None):
            ys, final = recurrax.scan(
                cell, params, xs, initial_carry=carry, lengths=lengths, resets=resets, options=options
            )
        final_term = sum(jnp.sum(jnp.sin(jnp.real(leaf))) for leaf in jax.tree.leaves(final))
        final_term += sum(jnp.sum(jnp.cos(jnp.imag(leaf))) for leaf in jax.tree.leaves(final) if jnp.iscomplexobj(leaf))
        return jnp.sum(ys * weights) + final_term, (ys, final)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True), static_argnums=3)
    row: dict[str, Any] = {"cell": cell_name, "kernel": kernel, "reverse": reverse, "shape": shape}
    row.update(run_facts(kernel))
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


def cudnn_direct(reverse: bool, shape: dict[str, int]) -> dict[str, Any]:
    """cuDNN's own call against ``jax.experimental.rnn.lstm_ref`` on the inputs the engine would hand it.

    For ``reverse`` the inputs are reversed within each example's length, as the engine does, three ways:
    inside the jitted call (``gathered_in_jit``, the engine's situation), gathered outside and passed in as
    an argument (``gathered_outside``), and copied through the host (``host_copy``). Which of these agree
    with the reference tells a cuDNN fault from one in how XLA hands it a computed array.
    """
    import jax
    import jax.numpy as jnp
    from jax.experimental import rnn

    import recurrax
    from recurrax.cells import _cudnn

    B, T, D, H = shape["B"], shape["T"], shape["D"], shape["H"]
    k_p, k_x, k_c, k_l = jax.random.split(jax.random.key(1), 4)
    cell = recurrax.lstm(H)
    weights = _cudnn.pack_lstm_weights(cell.init(k_p, D))
    xs = jax.random.normal(k_x, (B, T, D))
    h0, c0 = (0.5 * jax.random.normal(k, (1, B, H)) for k in jax.random.split(k_c))
    lengths = jax.random.randint(k_l, (B,), max(1, T // 2), T + 1)
    steps = jnp.arange(T)[None, :]
    index = jnp.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps) if reverse else None
    sizes = {"input_size": D, "hidden_size": H, "num_layers": 1, "dropout": 0.0, "bidirectional": False}

    def prepare(x: Any) -> Any:
        return x if index is None else jnp.take_along_axis(x, index[..., None], axis=1)

    def reference(x: Any) -> Any:
        w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, D, H, 1, False)
        return rnn.lstm_ref(prepare(x), h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, D, H, 1, 0.0, False)

    row: dict[str, Any] = {"cell": "lstm", "kernel": DIRECT, "reverse": reverse, "shape": shape}
    row.update(run_facts(DIRECT))
    try:
        with jax.default_matmul_precision("highest"):
            want = jax.jit(reference)(xs)
            cudnn = jax.jit(lambda x: rnn.lstm(x, h0, c0, weights, lengths, **sizes))
            gathered = jax.block_until_ready(jax.jit(prepare)(xs))
            variants = {
                "gathered_in_jit": jax.jit(lambda x: cudnn(prepare(x)))(xs),
                "gathered_outside": cudnn(gathered),
                "host_copy": cudnn(jnp.asarray(np.asarray(gathered))),
            }
            for name in DIRECT_VARIANTS:
                row[name] = _relative(variants[name], want)
    except Exception as err:  # noqa: BLE001 — recorded: no cuDNN here says why
        row["error"] = f"{type(err).__name__}: {err}"
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_check", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help=f"the shape {SMOKE_SHAPE} instead of {SHAPE}")
    parser.add_argument("--cells", default=",".join(KERNELS), help=f"a subset of {tuple(KERNELS)}")
    parser.add_argument(
        "--kernels", default="cudnn,pallas", help="a subset of (cudnn, pallas): the kernels to check (a TPU: pallas)"
    )
    parser.add_argument(
        "--kernel-variant",
        choices=VARIANTS,
        default=None,
        help="off a GPU and a TPU: which Pallas kernels to interpret (default: the library's, triton)",
    )
    parser.add_argument("--out", default=None, help="write <out>.json")
    args = parser.parse_args(argv)
    import jax

    variant = use_variant(args.kernel_variant)
    shape = SMOKE_SHAPE if args.smoke else SHAPE
    rows = []
    cells = [c for c in args.cells.split(",") if c]
    unknown = sorted(set(cells) - set(KERNELS))
    if unknown:
        raise SystemExit(f"--cells: unknown {unknown}; choose from {tuple(KERNELS)}")
    kernels = [k for k in args.kernels.split(",") if k]
    unknown = sorted(set(kernels) - {"cudnn", "pallas"})
    if unknown:
        raise SystemExit(f"--kernels: unknown {unknown}; choose from ('cudnn', 'pallas')")
    # cuDNN first (seconds), then its diagnosis, then the Pallas kernels (Triton compiles take longest); the
    # rows the GPU script's timed suites depend on before the extra cells and the time-chunked linear kernel,
    # which a time cap may cut.
    if "pallas" in kernels:
        kernels.append(CHUNKED)
    checks = [
        (c, k, r)
        for extra in (False, True)
        for k in ("cudnn", "pallas", CHUNKED)
        if k in kernels
        for c in cells
        if k in KERNELS[c] and (c in EXTRA_CELLS or k == CHUNKED) is extra
        for r in (False, True)
    ]
    if "lstm" in cells and "cudnn" in kernels:
        checks[2:2] = [("lstm", DIRECT, r) for r in (False, True)]
    for cell_name, kernel, reverse in checks:
        row = cudnn_direct(reverse, shape) if kernel == DIRECT else check(cell_name, kernel, reverse, shape)
        rows.append(row)
        found = row.get("error") or ", ".join(
            f"{key.replace('_', ' ')} {row[key]:.1e}"
            for key in ("outputs", "final_carry", "gradients", *DIRECT_VARIANTS)
            if key in row
        )
        if "padding_zero" in row:
            found += f" (relative), padding zero: {row['padding_zero']}"
        ran = f" ({row['variant']}{', interpreted' if row['interpreted'] else ''})" if "variant" in row else ""
        print(f"{cell_name} kernel={kernel}{ran} reverse={reverse}: {found}", file=sys.stderr, flush=True)
        if args.out:  # after every row: a run cut by its time cap keeps what it checked
            report = {
                "backend": jax.default_backend(),
                "devices": [str(d) for d in jax.devices()],
                "device_kind": jax.devices()[0].device_kind,
                "kernel_variant": variant,
            }
            Path(args.out).with_suffix(".json").write_text(json.dumps({**report, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
