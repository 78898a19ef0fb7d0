"""Do attributions find the steps a classifier needs? A deletion test on MNIST-1D, a GRU against a CNN.

Usage (from the repository root)::

    python -m benchmarks.attribution_mnist1d           # results in benchmarks/results/attribution_mnist1d.{json,md,png}
    python -m benchmarks.attribution_mnist1d --smoke   # tiny: checks that everything runs, writes nothing

A GRU(128) and a TCN (the causal CNN backbone) are trained on MNIST-1D with
the quick-start recipe (Adam 3e-3, clipping at 1.0, batch 32). On the test
examples each model's integrated-gradients attributions (zero baseline, the
predicted class) rank the 40 steps by ``|attribution|``; the ``k`` top-ranked
steps are then deleted (set to 0, the baseline) and the accuracy measured,
against deleting ``k`` steps drawn at random (the mean over ``--random-draws``
draws). An attribution that finds what the model uses must cost more accuracy
than chance: the margin is ``accuracy(random k) − accuracy(top k)``. The same
for the steps ranked by occlusion (one step at a time).

Both trained models are kept, with the first ``NOTEBOOK_EXAMPLES`` explained
test examples, in ``attribution_mnist1d_models.npz`` for
notebooks/05_seeing_inside.py; the weights are rounded to float16 there
(350 KB instead of 700), so the notebook's accuracies are those of the
rounded models.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.attribution import parameters
from benchmarks.common import load_average, write_record
from benchmarks.run import environment, log

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {"gru": {"cell": "gru", "hidden_size": 128}, "tcn": {"cell": "tcn", "hidden_size": 64}}
METHODS = ("integrated_gradients", "occlusion")
NOTEBOOK_EXAMPLES = 200


def deleted(inputs: np.ndarray, order: np.ndarray, k: int) -> np.ndarray:
    """``inputs [N, T, D]`` with each example's first ``k`` steps of ``order [N, T]`` set to zero."""
    mask = np.ones(inputs.shape[:2], bool)
    np.put_along_axis(mask, order[:, :k], False, axis=1)
    return np.where(mask[..., None], inputs, 0.0).astype(inputs.dtype)


def accuracy(model: Any, inputs: np.ndarray, labels: np.ndarray) -> float:
    from recurrax import train

    logits = np.asarray(train.predict(model, inputs, batch_size=500))
    return float(np.mean(logits.argmax(-1) == labels))


def run(epochs: int, num_samples: int, num_explained: int, ks: list[int], draws: int, seed: int) -> dict[str, Any]:
    from flax import nnx

    from recurrax import models, tasks, train
    from recurrax.interpret import explain

    data = tasks.mnist1d(num_samples=num_samples)
    inputs = np.asarray(data.test.inputs[:num_explained], np.float32)
    labels = np.asarray(data.test.targets[:num_explained])
    T = inputs.shape[1]
    rng = np.random.default_rng(seed)
    random_orders = [np.argsort(rng.random((len(inputs), T)), axis=1) for _ in range(draws)]
    rows, trained, maps, saved = [], {}, {}, {}
    for name, options in MODELS.items():
        model = models.model_for_task(data.info, rngs=nnx.Rngs(seed), **options)
        start = time.perf_counter()
        train.fit(
            model,
            train.build_optimizer("adam", 3e-3, clip_norm=1.0),
            data.train,
            loss=data.info.loss,
            epochs=epochs,
            batch_size=32,
            progress=False,
        )
        model.eval()
        saved.update({f"{name}/{k}": v.astype(np.float16) for k, v in parameters(model).items()})
        full = accuracy(model, inputs, labels)
        trained[name] = {"test_accuracy": full, "train_seconds": time.perf_counter() - start}
        log(f"[attribution_mnist1d] {name}: accuracy {full:.3f} on {len(inputs)} test examples")
        at_random = {
            k: float(np.mean([accuracy(model, deleted(inputs, o, k), labels) for o in random_orders])) for k in ks
        }
        for method in METHODS:
            start = time.perf_counter()
            attributions = explain(model, inputs, method=method)
            seconds = time.perf_counter() - start
            maps[(name, method)] = attributions
            order = np.argsort(-np.abs(attributions).sum(-1), axis=1)  # most attributed step first
            for k in ks:
                top = accuracy(model, deleted(inputs, order, k), labels)
                rows.append(
                    {
                        "model": name,
                        "method": method,
                        "k": k,
                        "accuracy": full,
                        "accuracy_top_k_deleted": top,
                        "accuracy_random_k_deleted": at_random[k],
                        "margin": at_random[k] - top,
                        "explain_seconds": seconds,
                    }
                )
                log(f"    {method} k={k}: top-k deleted {top:.3f}, random k deleted {at_random[k]:.3f}")
    saved["inputs"], saved["labels"] = inputs[:NOTEBOOK_EXAMPLES], labels[:NOTEBOOK_EXAMPLES]
    return {"models": trained, "rows": rows, "maps": maps, "inputs": inputs, "saved": saved}


def render(report: dict) -> str:
    cfg, machine = report["config"], report["environment"].get("machine", {})
    trained = ", ".join(
        f"{name} test accuracy {m['test_accuracy']:.3f} ({m['train_seconds']:.0f} s)"
        for name, m in report["models"].items()
    )
    lines = [
        "# Deletion test on MNIST-1D: do the attributed steps matter more than random ones?",
        "",
        f"GRU(128) and TCN(64) trained {cfg['epochs']} epochs on MNIST-1D ({cfg['num_samples']} examples; "
        f"{trained}). On {cfg['num_explained']} test examples the k steps (of 40) with the largest "
        f"|attribution| are set to 0, against k random steps (mean of {cfg['random_draws']} draws). "
        "Margin = accuracy with random k deleted − accuracy with the top k deleted (higher: the attribution "
        f"found steps the model needs). {machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} cores, "
        f"load average {report['load_average_before']} before the run.",
        "",
        "| model | method | k | accuracy | top k deleted | random k deleted | margin |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['k']} | {r['accuracy']:.3f} | {r['accuracy_top_k_deleted']:.3f} "
            f"| {r['accuracy_random_k_deleted']:.3f} | {r['margin']:+.3f} |"
        )
    lines += ["", "Attribution maps of the first test examples: `attribution_mnist1d.png`."]
    return "\n".join(lines) + "\n"


def plot_maps(maps: dict, inputs: np.ndarray, path: Path, examples: int = 3) -> None:
    """Integrated-gradients maps of the GRU and the TCN side by side for the first ``examples`` examples."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.2 * examples), layout="constrained")
    axes = fig.subplots(examples, 2, squeeze=False)
    for column, name in enumerate(MODELS):
        attributions = maps[(name, "integrated_gradients")][..., 0]
        for row in range(examples):
            ax = axes[row, column]
            bound = float(np.abs(attributions[row]).max()) or 1.0
            colours = [(0.8, 0.2, 0.2) if a > 0 else (0.2, 0.3, 0.8) for a in attributions[row]]
            ax.bar(range(len(attributions[row])), np.abs(attributions[row]) / bound, color=colours, alpha=0.5)
            ax.plot(inputs[row, :, 0] / (np.abs(inputs[row, :, 0]).max() or 1.0), color="black", lw=1.2)
            ax.set_title(f"{name}, test example {row}")
    fig.suptitle("|integrated gradients| per step (red +, blue −) over the input (black)")
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--num-explained", type=int, default=500)
    parser.add_argument("--ks", default="4,8,12")
    parser.add_argument("--random-draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.num_samples, args.num_explained, args.random_draws = 1, 200, 8, 1
    config = {k: getattr(args, k) for k in ("epochs", "num_samples", "num_explained", "random_draws", "seed")}
    ks = [int(k) for k in args.ks.split(",")]
    load = load_average()
    result = run(args.epochs, args.num_samples, args.num_explained, ks, args.random_draws, args.seed)
    maps, inputs, saved = result.pop("maps"), result.pop("inputs"), result.pop("saved")
    report = {"config": {**config, "ks": ks}, **result, "load_average_before": load, "environment": environment()}
    if not args.smoke:
        write_record(RESULTS / "attribution_mnist1d", report, render)
        plot_maps(maps, inputs, RESULTS / "attribution_mnist1d.png")
        np.savez(RESULTS / "attribution_mnist1d_models.npz", **saved)
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
