"""``recurrax quantize DIR``: a run's trained model stored as int8 (or fp8) codes, and ``recurrax evaluate DIR
--quantized`` on it.

Rebuilds the run's task and model from ``DIR/config.json`` as ``recurrax
evaluate`` does, loads a checkpoint, quantizes every kernel
(:func:`recurrax.quantize.quantize`) and writes the result into
``DIR/quantized/`` (:func:`recurrax.quantize.save_quantized`:
``quantization.json`` records what was quantized how and from which
checkpoint; ``checkpoints/`` holds the codes in recurrax's checkpoint format).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recurrax import train
from recurrax._cli_run import _print_metrics, build_or_usage_error, check_checkpoint_step
from recurrax.cli import CHECKPOINT_DIR, QUANTIZED_DIR, UsageError
from recurrax.quantize import Quantization, parameter_bytes, quantize, restore_quantized, save_quantized
from recurrax.tasks import FreshBatches
from recurrax.train._checkpoint import StepSpec


def quantize_run(
    run_dir: Path,
    config: Mapping[str, Any],
    *,
    weights: str,
    weight_only: bool,
    step: StepSpec,
    calibrate: int | None = None,
) -> int:
    """Writes checkpoint ``step``'s model, quantized, into ``run_dir/quantized``; the exit status.

    ``calibrate``: static activation scales from the first ``calibrate`` training examples (None: dynamic).
    """
    check_checkpoint_step(run_dir / CHECKPOINT_DIR, step, "quantize")  # before any data or model is built
    data, model, _ = build_or_usage_error(config, "quantize")
    try:
        train.restore_model(run_dir / CHECKPOINT_DIR, model, step=step)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError("recurrax quantize", f"{err}") from None
    spec = Quantization(weights, activations=None if weight_only else weights)  # type: ignore[arg-type]
    calibration = None
    if calibrate is not None:
        if isinstance(data.train, FreshBatches):  # an endless source: its first batch, of that size
            calibration = data.train.batch(0, calibrate)
        elif calibrate > len(data.train):
            raise UsageError("recurrax quantize", f"--calibrate {calibrate}: the run's task has {len(data.train)} "
                             "training examples")  # fmt: skip
        else:
            calibration = data.train.subset(slice(0, calibrate))
        model.eval()  # calibrated on what inference sees (no dropout)
    small = quantize(model, spec, calibration_data=calibration)
    before, after = parameter_bytes(model), parameter_bytes(small)
    out = run_dir / QUANTIZED_DIR
    if out.exists():  # a new quantization replaces the last one: the folder holds one model
        shutil.rmtree(out)
    meta = {"checkpoint": step, "float_bytes": before, "bytes": after, "calibration_examples": calibrate}
    save_quantized(out, small, meta=meta)
    scales = "per step, per example" if calibrate is None else f"static scales from {calibrate} training examples"
    what = f"{weights} weights" + ("" if weight_only else f" and {weights} activations ({scales})")
    print(f"{run_dir} (checkpoint {step}): {what}")
    print(f"  parameters: {before:,} bytes in float32, {after:,} bytes quantized ({before / after:.2f}x smaller)")
    print(f"  wrote {out}; evaluate it with: recurrax evaluate {run_dir} --quantized")
    return 0


def evaluate_quantized(run_dir: Path, config: Mapping[str, Any], *, splits: list[str] | None, batch_size: int) -> int:
    """Prints the metrics of the run's quantized model (``run_dir/quantized``) on ``splits``; the exit status."""
    directory = run_dir / QUANTIZED_DIR
    if not directory.is_dir():
        raise UsageError("recurrax evaluate", f"--quantized: {run_dir} holds no quantized model; run "
                         f"`recurrax quantize {run_dir} --int8` first")  # fmt: skip
    data, model, _ = build_or_usage_error(config, "evaluate")
    try:
        small = restore_quantized(directory, model)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError("recurrax evaluate", f"--quantized: {err}") from None
    # No precision policy here: a policy casts floating parameters, and fp8 codes are floating.
    trainer = train.Trainer(small, None, loss=data.info.loss, metrics=list(data.info.metrics), diagnostics=False)
    names = splits or [name for name in ("validation", "test") if len(data.splits[name])]
    metrics = {s: trainer.evaluate(data.splits[s], batch_size=batch_size) for s in dict.fromkeys(names)}
    print(f"{run_dir} (quantized: {directory}):")
    _print_metrics(metrics, data.info)
    return 0
