"""``recurrax explain DIR``: attributions of a trained run's model on examples of one split, as arrays and figures.

Rebuilds the run's task and model from ``DIR/config.json`` as ``recurrax
evaluate`` does, loads a checkpoint, explains the first ``n`` examples of a
split with :func:`recurrax.interpret.explain` and writes into ``DIR/explain/``:

* ``{method}_{split}.npz`` — ``attributions[n, T, D]``, ``inputs``, ``targets``,
  ``lengths`` (when the task has them) and ``explained_output[n]``: the output
  each row's attributions explain (:func:`~recurrax.interpret.model_output`:
  the predicted class's, or the one output; at the last valid step);
* ``{method}_{split}_{i}.png`` — :func:`~recurrax.interpret.plot_attributions`
  for the first ``plots`` examples.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recurrax import train
from recurrax._cli_run import build_or_usage_error, check_checkpoint_step
from recurrax.cli import CHECKPOINT_DIR, EXPLAIN_DIR, UsageError
from recurrax.train._checkpoint import StepSpec


def explain_run(
    run_dir: Path,
    config: Mapping[str, Any],
    *,
    method: str,
    split: str,
    n: int,
    step: StepSpec,
    plots: int,
    num_steps: int,
    window: int,
    max_evals: int | None,
) -> int:
    """Writes the attributions of checkpoint ``step`` on ``split``'s first ``n`` examples; the exit status."""
    from recurrax.interpret import explain, model_output, plot_attributions

    check_checkpoint_step(run_dir / CHECKPOINT_DIR, step, "explain")
    data, model, _ = build_or_usage_error(config, "explain")
    source = data.splits[split]
    if not hasattr(source, "inputs"):
        raise UsageError("recurrax explain", f"--split {split}: the run trained on fresh batches (no fixed split)")
    if len(source) == 0:
        raise UsageError("recurrax explain", f"--split {split}: the task's {split} split is empty")
    try:
        train.restore_model(run_dir / CHECKPOINT_DIR, model, step=step)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError("recurrax explain", f"{err}") from None
    model.eval()  # no dropout: the explained function is the deterministic model
    count = min(n, len(source))
    inputs = np.asarray(source.inputs[:count], np.float32)
    lengths = None if source.lengths is None else np.asarray(source.lengths[:count])
    options: dict[str, Any] = {"method": method, "lengths": lengths}
    if method == "integrated_gradients":
        options["num_steps"] = num_steps
    elif method == "occlusion":
        options["window"] = window
    elif method == "shap":
        options["max_evals"] = max_evals
    try:
        attributions = explain(model, inputs, **options)
    except ImportError as err:  # shap not installed
        raise UsageError("recurrax explain", f"--method shap: {err}") from None
    # The output each row explains (explain's rule: the predicted class, or the one output; the last valid step).
    explained = np.asarray(model_output(model, inputs, lengths=lengths))

    out = run_dir / EXPLAIN_DIR
    out.mkdir(exist_ok=True)
    arrays = {"attributions": attributions, "inputs": inputs, "targets": np.asarray(source.targets[:count])}
    arrays["explained_output"] = explained
    if lengths is not None:
        arrays["lengths"] = lengths
    stem = f"{method}_{split}"
    np.savez(out / f"{stem}.npz", **arrays)  # type: ignore[arg-type]
    written = [out / f"{stem}.npz"]
    for i in range(min(plots, count)):
        path = out / f"{stem}_{i}.png"
        title = f"{method}, {split} example {i}: explained output {explained[i]:.3g}"
        length = None if lengths is None else int(lengths[i])
        plot_attributions(attributions, inputs, example=i, length=length, path=path, title=title)
        written.append(path)
    share = _mass_per_step(attributions, lengths)
    print(f"{run_dir} (checkpoint {step}): {method} attributions of {count} {split} examples")
    print(f"  the 3 steps with most |attribution| hold {share:.0%} of it on average")
    for path in written:
        print(f"  wrote {path}")
    return 0


def _mass_per_step(attributions: np.ndarray, lengths: np.ndarray | None) -> float:
    """The mean share of each example's total |attribution| on its 3 heaviest steps (a one-line summary)."""
    per_step = np.abs(attributions).sum(-1)  # [n, T]
    top = -np.sort(-per_step, axis=1)[:, :3].sum(1)
    total = per_step.sum(1)
    valid = total > 0
    return float(np.mean(top[valid] / total[valid])) if valid.any() else 0.0
