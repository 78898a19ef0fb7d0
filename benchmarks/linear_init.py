"""Does minGRU's initialisation change how fast it learns? The old default against the paper's, same batches.

    python -m benchmarks.linear_init                   # about 1.5 minutes on 2 CPU cores
    python -m benchmarks.linear_init --readout mean    # the same with the mean over steps read out

One minGRU classifier on MNIST-1D (``SequenceClassifier``: minGRU(H) → last
step → Dense(64, relu) → Dense(10), parallel scan), trained by Adam on the
same batches for the same steps, three times per seed: its input kernel and
bias drawn as recurrax drew them before (glorot-uniform kernel, zero bias), as
the paper's PyTorch reference code draws them (``nn.Linear``: kernel and bias
``U(±1/√D)``, the new default), and the new default with chrono gate biases.
Only the cell's parameters differ between the runs of a seed; the head, the
batches and the optimizer are the same. Test accuracy is recorded along the
way; results go to ``benchmarks/results/linear_init.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from importlib.metadata import version
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import recurrax
from recurrax import tasks
from recurrax.models import SequenceClassifier

RECORD = Path(__file__).resolve().parent / "results" / "linear_init.json"

INITS = {
    "glorot kernel, zero bias (old default)": {
        "kernel_init": jax.nn.initializers.glorot_uniform(),
        "bias_init": jax.nn.initializers.zeros,
    },
    "nn.Linear U(±1/√D) (paper, new default)": {},
    # Not a default (the paper does not use it): what a memory as long as the sequence does on its own.
    "new default + chrono_max_timescale=40": {"chrono_max_timescale": 40.0},
}


def train(
    data: tasks.Dataset, options: dict, *, seed: int, hidden: int, steps: int, batch: int, lr: float, readout: str
) -> list[tuple[int, float]]:
    """Test accuracy every ``steps // 4`` steps of one run."""
    cell = recurrax.min_gru(hidden, **options)
    model = SequenceClassifier(1, 10, cell=cell, dropout=0.0, readout=readout, method="parallel", rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xs, ys):
        def loss(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(xs), ys).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    @nnx.jit
    def accuracy(model, xs, ys):
        return jnp.mean(jnp.argmax(model(xs), -1) == ys)

    train_x, train_y = data.train.inputs, data.train.targets
    # The batches depend on the seed only: both inits of a seed see the same ones.
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(train_y)) for _ in range(steps * batch // len(train_y) + 1)])
    curve = []
    for k in range(steps):
        idx = order[k * batch : (k + 1) * batch]
        step(model, optimizer, jnp.asarray(train_x[idx]), jnp.asarray(train_y[idx]))
        if (k + 1) % (steps // 4) == 0:
            curve.append((k + 1, float(accuracy(model, data.test.inputs, data.test.targets))))
    return curve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--readout", choices=("last", "mean"), default="last")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    data = tasks.mnist1d()
    start = time.perf_counter()
    runs = []
    for seed in range(args.seeds):
        for name, options in INITS.items():
            curve = train(
                data,
                options,
                seed=seed,
                hidden=args.hidden,
                steps=args.steps,
                batch=args.batch,
                lr=args.lr,
                readout=args.readout,
            )
            runs.append({"init": name, "seed": seed, "test_accuracy": curve})
            print(f"seed {seed}  {name:42s}  " + "  ".join(f"{s}: {a:.3f}" for s, a in curve), flush=True)
    final = {name: [r["test_accuracy"][-1][1] for r in runs if r["init"] == name] for name in INITS}
    for name, accs in final.items():
        print(f"final test accuracy, {name}: {', '.join(f'{a:.3f}' for a in accs)} (mean {np.mean(accs):.3f})")
    record = {
        "task": "mnist1d (5,000 examples: 3,600 train, 1,000 test)",
        "model": f"SequenceClassifier(min_gru({args.hidden}), readout {args.readout}, Dense(64, relu), no dropout)",
        "settings": vars(args) | {"optimizer": "adam"},
        "runs": runs,
        "final_test_accuracy": final,
        "seconds": round(time.perf_counter() - start, 1),
        "stack": {p: version(p) for p in ("jax", "jaxlib", "flax", "optax")} | {"python": platform.python_version()},
    }
    if not args.no_write:
        # One entry per readout: the last step needs a long memory, the mean over steps does not.
        records = json.loads(RECORD.read_text()) if RECORD.exists() else {}
        records[f"readout={args.readout}"] = record
        RECORD.write_text(json.dumps(dict(sorted(records.items())), indent=1) + "\n")
        print(f"wrote {RECORD} (readout={args.readout})")


if __name__ == "__main__":
    main()
