"""The ``recurrax`` command: train a ready-made model on a built-in task, resume it, evaluate it.

Usage::

    recurrax train --task digits-rows --cell lstm --hidden 64 --epochs 12 --out runs/digits
    recurrax train --resume runs/digits --epochs 20      # continue the same run exactly
    recurrax train --task adding --seq-len 100 --fresh-data --steps 2000 --eval-every 200 --out runs/adding
    recurrax evaluate runs/digits                         # metrics of the saved model
    recurrax quantize runs/digits --int8                  # the model as int8 codes, in runs/digits/quantized
    recurrax evaluate runs/digits --quantized             # metrics of the quantized model
    recurrax list                                         # tasks and backbones
    recurrax doctor                                       # versions, devices, extras: for a bug report

This module parses and checks the arguments without importing jax, so
``--help`` and every argument error answer at once; the work is done in
:mod:`recurrax._cli_run`. A new option is a parser line in :func:`_build_parser`
(and, for a run setting that ``--resume`` restores, an entry in
:data:`TRAIN_DEFAULTS`), read where ``_cli_run.run_training`` builds the run.

A run directory holds ``config.json`` (everything needed to rebuild the task,
model and optimizer), ``checkpoints/``, ``history.json`` and CSVs, plots and
``metrics.json`` (the final metrics on each split).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

from recurrax._precision import PRECISIONS  # jax-free: the names --precision offers

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
EXPLAIN_DIR = "explain"
QUANTIZED_DIR = "quantized"
# --precision values that are not dtype policies: quantization-aware training (float32 weights and compute).
QAT_PRECISIONS = {"int8-qat": "int8"}
# `recurrax explain --method`: the short spelling the command line uses, and explain()'s name for it.
EXPLAIN_METHODS = {
    "ig": "integrated_gradients",
    "integrated_gradients": "integrated_gradients",
    "gradient_x_input": "gradient_x_input",
    "occlusion": "occlusion",
    "shap": "shap",
}
TENSORBOARD_DIR = "tensorboard"
CONFIG_FORMAT = "recurrax.cli.run/1"


class UsageError(Exception):
    """A mistake in the command's arguments or run directory: reported as one line, exit status 2."""

    def __init__(self, prog: str, message: str):
        super().__init__(f"{prog}: error: {message}")


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (no usage dump) and go through :class:`UsageError`."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, f"{message} (see {self.prog} --help)")


# ------------------------------------------------------------------- arguments
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1), got {text}")
    return value


def _step_spec(text: str) -> int | Literal["latest", "best"]:
    if text == "latest":
        return "latest"
    if text == "best":
        return "best"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'latest', 'best' or a step number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a step number >= 0, got {value}")
    return value


# Training options and their defaults. The parser's defaults are None, so that
# `--resume DIR` can tell which options were given (only --epochs may be).
TRAIN_DEFAULTS: dict[str, Any] = {
    "task": None,
    "seq_len": None,
    "num_train": None,
    "num_validation": None,
    "num_test": None,
    "data_seed": None,
    "validation_fraction": None,  # the task's own
    "cell": "lstm",
    "hidden": 128,
    "depth": None,  # the backbone's default: one layer or block (2 Transformer layers, 5 TCN levels)
    "dense": None,  # the model's default: 64 for classifiers, none for regressors
    "dropout": None,  # the model's default: 0.5 for classifiers, 0 for regressors
    "optimizer": "adam",
    "lr": 1e-3,
    "clip": None,
    "clip_value": None,
    "accumulate": 1,
    "precision": "float32",
    "epochs": 10,  # unless --steps is given
    "steps": None,
    "eval_every": None,  # with --steps: a tenth of the steps
    "steps_per_call": 1,
    "fresh_data": False,
    "batch_size": 32,
    "seed": 0,
    "checkpoint_every": None,  # one epoch's steps, or --eval-every
}
RESUMABLE = ("epochs", "steps")
# Settings added after the first config format: a run written before them resumes with their default.
LATER_SETTINGS = (
    "validation_fraction",
    "steps",
    "eval_every",
    "steps_per_call",
    "fresh_data",
    "depth",
    "precision",
)
# The flag that sets each option of a task's builder.
TASK_OPTION_FLAGS = {
    "num_train": "--num-train",
    "num_validation": "--num-validation",
    "num_test": "--num-test",
    "validation_fraction": "--validation-fraction",
    "infinite": "--fresh-data",
}


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="recurrax",
        description="Train ready-made recurrent models on built-in tasks (recurrax.tasks, recurrax.models).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="{train,evaluate,list,doctor}", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train a model on a task; --resume DIR continues a run",
        description="Train a ready-made model on a built-in task, end to end. Writes DIR/config.json, "
        "checkpoints/, history.json and CSVs, history.png, gradient_norms.png, gradient_flow*.png and "
        "metrics.json, and prints the final metrics.",
    )
    data = train.add_argument_group("task")
    data.add_argument("--task", help="the task: see `recurrax list` (e.g. adding, digits-rows, mnist1d)")
    data.add_argument(
        "--seq-len", type=_positive_int, help="sequence length T (adding), delay (copy), longest review (sentiment)"
    )
    data.add_argument("--num-train", type=_positive_int, help="training examples (generated tasks)")
    data.add_argument("--num-validation", type=_positive_int, help="validation examples (generated tasks)")
    data.add_argument("--num-test", type=_positive_int, help="test examples (generated tasks)")
    data.add_argument("--data-seed", type=_non_negative_int, help="the task's seed (default: the task's own)")
    data.add_argument(
        "--validation-fraction",
        type=_fraction,
        help="share of the training pool held out for validation (mnist1d, digits-*); mnist1d takes 0: "
        "no validation, the published 4000/1000 split",
    )
    data.add_argument(
        "--fresh-data",
        action="store_const",
        const=True,
        help="generated tasks (adding, copy): a fresh training batch every step, as the papers train "
        "(needs --steps; validation and test stay fixed)",
    )
    model = train.add_argument_group("model")
    model.add_argument(
        "--cell", "--model", dest="cell", help="backbone: lstm (default), gru, rnn, ... (see `recurrax list`)"
    )
    model.add_argument("--hidden", type=_positive_int, help="backbone width (default 128)")
    model.add_argument(
        "--depth",
        type=_positive_int,
        help="backbone depth: stacked layers; residual blocks for min_gru/min_lstm/lru; Transformer layers; "
        "TCN levels (default 1 / 2 / 5)",
    )
    model.add_argument("--dense", type=_non_negative_int, help="ReLU layer width, 0 for none (default 64 / none)")
    model.add_argument("--dropout", type=_rate, help="dropout after the ReLU layer (default 0.5 / 0)")
    optim = train.add_argument_group("optimization")
    optim.add_argument("--optimizer", help="any optax optimizer name (default adam)")
    optim.add_argument("--lr", type=_positive_float, help="learning rate (default 1e-3)")
    optim.add_argument("--clip", type=_positive_float, help="clip the gradient's global norm to this")
    optim.add_argument("--clip-value", type=_positive_float, help="clip each gradient element to ±this")
    optim.add_argument("--accumulate", type=_positive_int, help="average gradients over k batches per update")
    optim.add_argument(
        "--precision",
        choices=(*PRECISIONS, *QAT_PRECISIONS),
        help="mixed precision: float32 (default); bf16: bfloat16 compute, float32 weights, carries and loss; "
        "fp16: float16 compute with dynamic loss scaling; int8-qat: quantization-aware training (float32 "
        "weights, every kernel int8-quantized in the forward pass; then `recurrax quantize DIR --int8`)",
    )
    optim.add_argument("--epochs", type=_positive_int, help="total epochs (default 10; with --resume: extend)")
    optim.add_argument(
        "--steps", type=_positive_int, help="instead of --epochs: total optimizer steps (with --resume: extend)"
    )
    optim.add_argument(
        "--eval-every", type=_positive_int, help="with --steps: validate every K steps (default: a tenth of --steps)"
    )
    optim.add_argument(
        "--steps-per-call",
        type=_positive_int,
        help="optimizer steps per device call (a lax.scan over batches; same result; default 1)",
    )
    optim.add_argument("--batch-size", type=_positive_int, help="examples per step (default 32)")
    optim.add_argument("--seed", type=_non_negative_int, help="initialisation, dropout and shuffling seed (default 0)")
    run = train.add_argument_group("run")
    run.add_argument("--out", type=Path, help="the run directory (required unless --resume)")
    run.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR exactly where it stopped")
    run.add_argument("--checkpoint-every", type=_positive_int, help="checkpoint every N steps (default: every epoch)")
    run.add_argument(
        "--on-corrupt",
        choices=("raise", "fallback"),
        help="with --resume, when the latest checkpoint is unreadable: stop (raise, the default) or resume from "
        "the newest intact one (fallback)",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar: one line per epoch (per evaluation with --steps), for logs and batch jobs",
    )
    run.add_argument(
        "--sync-checkpoints",
        action="store_true",
        help="wait at each checkpoint until it is on disk (default: it is written in the background while "
        "training goes on; a run killed meanwhile resumes from the checkpoint before)",
    )
    run.add_argument(
        "--tensorboard",
        action="store_true",
        help=f"also write the metrics as TensorBoard events to DIR/{TENSORBOARD_DIR} "
        '(pip install "recurrax[tensorboard]"; view with tensorboard --logdir DIR)',
    )
    multi = train.add_argument_group(
        "several processes (docs/distributed.md)",
        "Data parallel training over every device of every process, one command per host or process, "
        "all with the same flags but --process-id. Flags left out are JAX's own: JAX_COORDINATOR_ADDRESS, and "
        "the cluster it detects (Slurm, Open MPI, a Cloud TPU pod slice, Kubernetes).",
    )
    multi.add_argument(
        "--distributed",
        action="store_true",
        help="join a jax.distributed run and split each batch over all its devices (--batch-size must be a "
        "multiple of their number); process 0 writes the files",
    )
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address, where it listens")
    multi.add_argument("--num-processes", type=_positive_int, help="how many processes the run has (1: this one)")
    multi.add_argument("--process-id", type=_non_negative_int, help="this process's number, from 0")
    multi.add_argument(
        "--fsdp",
        action="store_true",
        help="also split the parameters and optimizer state over the devices (FSDP), for models too big to "
        "replicate; the numbers are data parallel's up to float32 round-off (give it again with --resume)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="metrics of a trained run's model",
        description="Rebuild a run's task and model from DIR/config.json, load a checkpoint and print its metrics.",
    )
    evaluate.add_argument("run_dir", type=Path, metavar="DIR", help="a directory made by `recurrax train`")
    evaluate.add_argument(
        "--split", choices=("train", "validation", "test"), action="append", help="split(s) (default: validation, test)"
    )
    evaluate.add_argument(
        "--step", type=_step_spec, default="latest", help="'latest' (default), 'best' (lowest val_loss) or a step"
    )
    evaluate.add_argument("--batch-size", type=_positive_int, default=256, help="examples per batch (default 256)")
    evaluate.add_argument(
        "--quantized", action="store_true", help=f"the model `recurrax quantize` wrote into DIR/{QUANTIZED_DIR}"
    )

    explain = commands.add_parser(
        "explain",
        help="attributions of a trained run's model, as arrays and figures",
        description="Rebuild a run's task and model from DIR/config.json, load a checkpoint and attribute its "
        "outputs on the first N examples of a split to every input step and feature (recurrax.interpret.explain). "
        f"Writes DIR/{EXPLAIN_DIR}/METHOD_SPLIT.npz (attributions, inputs, targets, outputs, lengths) and one "
        "figure per plotted example (METHOD_SPLIT_I.png).",
    )
    explain.add_argument("run_dir", type=Path, metavar="DIR", help="a directory made by `recurrax train`")
    explain.add_argument(
        "--method",
        choices=tuple(EXPLAIN_METHODS),
        default="ig",
        help="ig = integrated_gradients (default), gradient_x_input, occlusion, shap (needs recurrax[interpret])",
    )
    explain.add_argument("--split", choices=("train", "validation", "test"), default="test", help="(default: test)")
    explain.add_argument("--n", type=_positive_int, default=16, help="examples to explain (default 16)")
    explain.add_argument(
        "--step", type=_step_spec, default="latest", help="'latest' (default), 'best' (lowest val_loss) or a step"
    )
    explain.add_argument("--plots", type=int, default=4, help="figures for the first PLOTS examples (default 4)")
    explain.add_argument("--num-steps", type=_positive_int, default=64, help="integrated gradients' intervals")
    explain.add_argument("--window", type=_positive_int, default=1, help="occlusion's window in steps")
    explain.add_argument("--max-evals", type=_positive_int, help="SHAP's model evaluations per example")

    quant = commands.add_parser(
        "quantize",
        help="a trained run's model stored as int8 or fp8 codes",
        description="Rebuild a run's task and model from DIR/config.json, load a checkpoint and quantize every "
        "kernel (recurrax.quantize.quantize: per-output-channel scales). Writes DIR/"
        f"{QUANTIZED_DIR}/ (quantization.json and the codes as a checkpoint); `recurrax evaluate DIR --quantized` "
        "prints its metrics.",
    )
    quant.add_argument("run_dir", type=Path, metavar="DIR", help="a directory made by `recurrax train`")
    fmt = quant.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--int8", dest="weights", action="store_const", const="int8", help="int8 codes")
    fmt.add_argument("--fp8", dest="weights", action="store_const", const="fp8", help="float8 (e4m3) codes")
    quant.add_argument(
        "--weight-only",
        action="store_true",
        help="quantize the weights only (default: also each matmul's inputs, per step and example)",
    )
    quant.add_argument(
        "--calibrate",
        type=_positive_int,
        metavar="N",
        help="static activation scales: one per quantized activation, the absmax over the first N training "
        "examples (default: dynamic, per step and example)",
    )
    quant.add_argument(
        "--step", type=_step_spec, default="latest", help="'latest' (default), 'best' (lowest val_loss) or a step"
    )

    commands.add_parser("list", help="the tasks and backbones", description="List the tasks and backbones.")

    doctor = commands.add_parser(
        "doctor",
        help="versions, backend, devices and usable extras, for a bug report",
        description="Print what a bug report needs: the versions of Python, recurrax and its dependencies, "
        "the optional packages, jax's backend and devices, JAX/XLA environment variables and which extras "
        "of recurrax are usable. The same as `python -m recurrax.info`.",
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object instead of text")
    return parser


def _version() -> str:
    from recurrax import __version__

    return __version__


# ----------------------------------------------------------------- the config
def _config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.out is None:
        raise UsageError("recurrax train", "--out DIR is required (or --resume DIR to continue a run)")
    if args.task is None:
        raise UsageError("recurrax train", "--task is required (see `recurrax list`)")
    settings = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in TRAIN_DEFAULTS.items()}
    _check_length_flags(args)
    if args.steps is not None:
        settings["epochs"] = None
        settings["eval_every"] = args.eval_every or max(1, args.steps // 10)
    _check_new_run_dir(args.out)
    if (args.out / CONFIG_FILE).exists():
        raise UsageError(
            "recurrax train",
            f"{args.out} already holds a run; continue it with --resume {args.out} or pick a new --out",
        )
    return {"format": CONFIG_FORMAT, "recurrax_version": _version(), **settings}


def _check_length_flags(args: argparse.Namespace) -> None:
    """--epochs or --steps, and the flags that go with --steps only."""
    if args.epochs is not None and args.steps is not None:
        raise UsageError("recurrax train", "give --epochs or --steps, not both")
    if args.steps is None:
        for flag, value in (("--eval-every", args.eval_every), ("--fresh-data", args.fresh_data)):
            if value is not None:
                raise UsageError("recurrax train", f"{flag} goes with --steps N (training by steps, not epochs)")


def _check_new_run_dir(out: Path) -> None:
    """Refuses an ``--out`` that cannot become a run directory, before any data or model is built."""
    if out.exists() and not out.is_dir():
        raise UsageError("recurrax train", f"--out {out} is an existing file, not a directory; pick a directory")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError("recurrax train", f"--out {out} cannot be created: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError("recurrax train", f"--out {out} cannot be created: {ancestor} is not writable")


def _read_config(run_dir: Path, command: str) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise UsageError(f"recurrax {command}", f"{run_dir} is not a directory")
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"recurrax {command}", f"{run_dir} has no {CONFIG_FILE}; is it a `recurrax train` run?"
        ) from None
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"recurrax {command}", f"cannot read {path}: {err}") from None
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise UsageError(f"recurrax {command}", f"{path} is not a recurrax run config (format {CONFIG_FORMAT})")
    for name in LATER_SETTINGS:
        config.setdefault(name, TRAIN_DEFAULTS[name])
    missing = sorted(set(TRAIN_DEFAULTS) - set(config))
    if missing:
        raise UsageError(f"recurrax {command}", f"{path} lacks the settings {missing}")
    return config


# -------------------------------------------------------------------- train
def _train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        given = [
            "--" + k.replace("_", "-") for k in TRAIN_DEFAULTS if getattr(args, k) is not None and k not in RESUMABLE
        ]
        if args.out is not None:
            given.insert(0, "--out")
        if not os.access(args.resume, os.W_OK | os.X_OK) and args.resume.is_dir():
            raise UsageError("recurrax train", f"--resume {args.resume} is not writable")
        if given:
            raise UsageError(
                "recurrax train",
                f"--resume takes the run's settings from {args.resume / CONFIG_FILE}; "
                "only --epochs or --steps (and --no-progress, --sync-checkpoints, --tensorboard, --distributed and "
                f"its flags) may be given, got {' '.join(given)}",
            )
        config = _read_config(args.resume, "train")
        by_steps = config["steps"] is not None
        for name, value in (("epochs", args.epochs), ("steps", args.steps)):
            if value is None:
                continue
            if by_steps != (name == "steps"):
                other = "steps" if by_steps else "epochs"
                raise UsageError("recurrax train", f"--{name}: the run trains by {other}; extend it with --{other}")
            if value < config[name]:
                raise UsageError(
                    "recurrax train",
                    f"--{name} {value} is fewer than the run's {config[name]}; it can only be extended",
                )
            config[name] = value
        run_dir = args.resume
    else:
        if args.on_corrupt is not None:
            raise UsageError("recurrax train", "--on-corrupt applies to --resume DIR only")
        config = _config_from_args(args)
        run_dir = args.out
    if args.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise UsageError(
            "recurrax train", '--tensorboard needs the tensorboard package: pip install "recurrax[tensorboard]"'
        )
    distributed = _distributed_flags(args)
    from recurrax import _cli_run

    start = time.perf_counter()  # after jax's import, which the wall time never counted
    return _cli_run.run_training(
        config,
        run_dir,
        resume=args.resume is not None,
        on_corrupt=args.on_corrupt or "raise",
        progress=not args.no_progress,
        async_checkpoints=not args.sync_checkpoints,
        tensorboard=args.tensorboard,
        distributed=distributed,
        fsdp=args.fsdp,
        start=start,
    )


def _distributed_flags(args: argparse.Namespace) -> dict[str, Any] | None:
    """``jax.distributed.initialize``'s arguments from --distributed and its flags (None: one process, one device)."""
    flags = {"coordinator": args.coordinator, "num_processes": args.num_processes, "process_id": args.process_id}
    if not args.distributed:
        given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None] + ["--fsdp"] * args.fsdp
        if given:
            raise UsageError("recurrax train", f"{' '.join(given)} go(es) with --distributed")
        return None
    if args.coordinator is not None and ":" not in args.coordinator:
        raise UsageError("recurrax train", f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if args.num_processes is not None and args.process_id is not None and args.process_id >= args.num_processes:
        raise UsageError(
            "recurrax train",
            f"--process-id {args.process_id} must be below --num-processes {args.num_processes} (ids count from 0)",
        )
    return {"coordinator_address": args.coordinator, "num_processes": args.num_processes, "process_id": args.process_id}


# ----------------------------------------------------------------- evaluate
def _evaluate(args: argparse.Namespace) -> int:
    config = _read_config(args.run_dir, "evaluate")
    if args.quantized:
        if args.step != "latest":
            raise UsageError("recurrax evaluate", "--step: the quantized model is one; it records its checkpoint")
        from recurrax import _cli_quantize

        return _cli_quantize.evaluate_quantized(args.run_dir, config, splits=args.split, batch_size=args.batch_size)
    if args.split and "train" in args.split and config["fresh_data"]:
        raise UsageError(
            "recurrax evaluate", "--split train: the run trained on fresh batches (--fresh-data); no fixed train split"
        )
    from recurrax import _cli_run

    return _cli_run.evaluate(args.run_dir, config, splits=args.split, step=args.step, batch_size=args.batch_size)


# ------------------------------------------------------------------ explain
def _explain(args: argparse.Namespace) -> int:
    config = _read_config(args.run_dir, "explain")
    if args.plots < 0:
        raise UsageError("recurrax explain", f"--plots must be 0 or more, got {args.plots}")
    from recurrax import _cli_explain

    return _cli_explain.explain_run(
        args.run_dir,
        config,
        method=EXPLAIN_METHODS[args.method],
        split=args.split,
        n=args.n,
        step=args.step,
        plots=args.plots,
        num_steps=args.num_steps,
        window=args.window,
        max_evals=args.max_evals,
    )


# ----------------------------------------------------------------- quantize
def _quantize(args: argparse.Namespace) -> int:
    config = _read_config(args.run_dir, "quantize")
    from recurrax import _cli_quantize

    if args.calibrate is not None and args.weight_only:
        raise UsageError("recurrax quantize", "--calibrate: static activation scales quantize the activations; "
                         "drop --weight-only")  # fmt: skip
    return _cli_quantize.quantize_run(
        args.run_dir, config, weights=args.weights, weight_only=args.weight_only, step=args.step,
        calibrate=args.calibrate,
    )  # fmt: skip


# --------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``recurrax`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Mistakes in the arguments or the run directory print one line
    (``recurrax train: ...``) to stderr and return 2; no traceback. A Ctrl-C
    returns 130 (a training run prints how to resume it).
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "explain":
            return _explain(args)
        if args.command == "quantize":
            return _quantize(args)
        if args.command == "doctor":
            from recurrax import info

            return info.print_report(as_json=args.json)
        from recurrax import _cli_run

        return _cli_run.list_names()
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a Ctrl-C while training has its own message (and resume hint) in _cli_run
        print("\nrecurrax: interrupted", file=sys.stderr)
        return 130
