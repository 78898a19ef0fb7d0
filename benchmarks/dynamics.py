"""Vanishing gradients, measured: the recurrent Jacobians of a tanh RNN, an LSTM and an LRU on the adding problem.

    python -m benchmarks.dynamics            # 80 CPU-seconds: about 2-4 minutes on 2 shared CPU cores

Each model (``SequenceRegressor``: recurrence(H) → last step → Dense(1)) is
trained briefly on the adding problem (T = 100, fresh batches, Adam 3e-3,
gradients clipped at 1, the same batches for every model). Before and after
training, on the same 100 test sequences, ``recurrax.interpret`` measures the
singular values of every step's Jacobian ``∂state_t/∂state_{t−1}`` and the
largest Lyapunov exponent of each trajectory. The numbers go to
``benchmarks/results/dynamics.json`` and ``dynamics.md``; the figures (the
trained models' spectra, the trained LSTM's state trajectories with its
fixed points) to ``docs/images/``, for docs/interpretability.md.

The state is each model's whole carry: ``h`` for the tanh RNN, ``[h, c]`` for
the LSTM (so half its directions are the cell state's, whose Jacobian block is
the forget gate), real and imaginary parts for the LRU's complex state.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import jax
import numpy as np
from flax import nnx

import recurrax
from benchmarks.common import write_record
from recurrax import interpret, tasks, train
from recurrax.models import SequenceRegressor

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"
MODELS = {"tanh RNN": "rnn", "LSTM": "lstm", "LRU": None}  # None: the plain LRU cell in an nn.RNN (no block)
CHUNK = 20  # sequences per Jacobian call: [20, T, S, S] floats, not [100, T, S, S]


def build(name: str, hidden: int, seed: int) -> nnx.Module:
    cell = MODELS[name] or recurrax.lru(hidden, skip=False)
    return SequenceRegressor(2, cell=cell, hidden_size=hidden, rngs=nnx.Rngs(seed))


def measure(layer: nnx.Module, xs: np.ndarray) -> dict:
    """The spectrum statistics and Lyapunov exponents of ``layer`` on ``xs[N, T, D]`` (and the raw σ)."""
    cell, params = layer.cell, layer.pure_params()
    chunks = (interpret.recurrent_jacobians(cell, params, xs[i : i + CHUNK]) for i in range(0, len(xs), CHUNK))
    sigma = np.concatenate([np.asarray(interpret.jacobian_singular_values(j)) for j in chunks])
    lyapunov = np.asarray(interpret.lyapunov_exponent(cell, params, xs, key=jax.random.key(0)))
    log_sigma = np.log(sigma)
    return {
        "state_size": int(sigma.shape[-1]),
        "median_abs_log_sigma": float(np.median(np.abs(log_sigma))),
        "fraction_sigma_in_0.5_2": float(np.mean((sigma >= 0.5) & (sigma <= 2.0))),
        "median_sigma": float(np.median(sigma)),
        "median_largest_sigma": float(np.median(sigma[..., 0])),
        "lyapunov_mean": float(lyapunov.mean()),
        "lyapunov_std": float(lyapunov.std()),
    }, sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3000, help="training steps per model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-write", action="store_true", help="print only (a trial run)")
    args = parser.parse_args()

    data = tasks.adding_problem(args.seq_len, infinite=True, seed=args.seed)
    test = data.test
    xs = np.asarray(test.inputs[:100])
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    results, spectra, trained = {}, {}, {}
    for name in args.models:
        model = build(name, args.hidden, args.seed)
        before, _ = measure(model.backbone, xs)
        optimizer = train.build_optimizer("adam", 3e-3, clip_norm=1.0)
        t0 = time.perf_counter()
        train.fit(model, optimizer, data.train, loss="mse", steps=args.steps, batch_size=args.batch_size,
                  seed=args.seed, progress=False)  # fmt: skip
        train_seconds = time.perf_counter() - t0
        after, sigma = measure(model.backbone, xs)
        mse = train.evaluate(model, test, loss="mse")["loss"]
        results[name] = {"test_mse": mse, "train_seconds": round(train_seconds, 1), "init": before, "trained": after}
        spectra[name], trained[name] = sigma, model
        print(f"{name}: test MSE {mse:.4f} ({train_seconds:.0f} s); init {before}; trained {after}", flush=True)

    record = {
        "config": vars(args) | {"task": "adding", "sequences": len(xs), "baseline_mse": data.info.baseline},
        "stack": {p: version(p) for p in ("jax", "jaxlib", "flax", "optax")}
        | {"python": platform.python_version(), "backend": jax.default_backend(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d"),
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "models": results,
    }
    if args.no_write:
        print(json.dumps(record, indent=2))
        return
    if "LSTM" in trained:
        record["lstm_fixed_points"] = plot_lstm_trajectories(trained["LSTM"].backbone, xs, IMAGES / "dynamics_pca.png")
    interpret.plot_jacobian_spectrum(
        spectra, IMAGES / "dynamics_spectrum.png", title=f"trained on the adding problem (T = {args.seq_len})"
    )
    write_record(RESULTS / "dynamics", record, render)
    print(f"wrote {RESULTS / 'dynamics.json'}, dynamics.md and the figures in {IMAGES}")


def plot_lstm_trajectories(layer: nnx.Module, xs: np.ndarray, path: Path) -> dict:
    """The trained LSTM's states in their first two principal components, with the fixed points for x = 0."""
    cell, params = layer.cell, layer.pure_params()
    states = np.asarray(interpret.state_trajectory(cell, params, xs))
    pca = interpret.pca_trajectories(states)
    starts = states[:, :: xs.shape[1] // 4].reshape(-1, states.shape[-1])  # states the model visits
    found = interpret.fixed_points(cell, params, starts, steps=3000).unique(1e-2, max_speed=1e-6)
    summary = {
        "input": "zeros",
        "starts": len(starts),
        "distinct": len(found.points),
        "stable": found.stable.tolist(),
        "largest_abs_eigenvalue": np.abs(found.eigenvalues[:, 0]).astype(float).round(4).tolist(),
        "speed_max": float(found.speeds.max()) if len(found.speeds) else None,
        "pca_explained_variance": pca.explained_variance_ratio.round(4).tolist(),
        "fixed_points_in_pcs": pca.project(found.points).round(3).tolist(),
    }
    print(f"LSTM fixed points for x = 0: {summary}")
    interpret.plot_pca_trajectories(
        pca.projections[:12],
        path,
        fixed_points=pca.project(found.points),
        stable=found.stable,
        title=f"trained LSTM: states, PCs 1-2 ({100 * pca.explained_variance_ratio.sum():.0f}% of the variance)",
    )
    return summary


def render(record: dict) -> str:
    """The Markdown table of a record."""
    config = record["config"]
    lines = [
        "# Recurrent Jacobians on the adding problem",
        "",
        f"`python -m benchmarks.dynamics` on {record['date']}: H = {config['hidden']}, T = {config['seq_len']}, "
        f"{config['steps']} Adam steps of {config['batch_size']} fresh sequences per model; measured on "
        f"{config['sequences']} test sequences (jax {record['stack']['jax']}, {record['stack']['backend']}, "
        f"{record['wall_seconds']:.0f} s in all). Test MSE against {config['baseline_mse']:.3f} for always "
        "predicting 1. σ: the singular values of every step's Jacobian ∂state_t/∂state_{t−1}, pooled over "
        "sequences, steps and directions; λ: the largest Lyapunov exponent per step (mean ± std over sequences); "
        "−1/λ: the steps over which a gradient through time shrinks by e.",
        "",
        "| model | S | test MSE | | median \\|log σ\\| | σ in [0.5, 2] | median σ | median σ_max | λ | −1/λ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in record["models"].items():
        for phase in ("init", "trained"):
            m = result[phase]
            mse = f"{result['test_mse']:.4f}" if phase == "trained" else ""
            lines.append(
                f"| {name if phase == 'init' else ''} | {m['state_size']} | {mse} | {phase} | "
                f"{m['median_abs_log_sigma']:.3f} | {100 * m['fraction_sigma_in_0.5_2']:.1f}% | "
                f"{m['median_sigma']:.3f} | "
                f"{m['median_largest_sigma']:.3f} | {m['lyapunov_mean']:.3f} ± {m['lyapunov_std']:.3f} | "
                f"{-1 / m['lyapunov_mean']:.0f} |"
            )
    fixed = record.get("lstm_fixed_points")
    if fixed:
        lines += [
            "",
            f"The trained LSTM's fixed points for a zero input, from {fixed['starts']} visited states: "
            f"{fixed['distinct']} distinct (0.01 apart, q ≤ 1e-6), {sum(fixed['stable'])} stable; largest "
            f"|eigenvalue| of ∂F/∂h at each: {', '.join(f'{e:.4f}' for e in fixed['largest_abs_eigenvalue'])}.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
