"""The ``recurrax`` command: train a ready-made model on a built-in task, resume it, evaluate it.

Usage::

    recurrax train --task digits-rows --cell lstm --hidden 64 --epochs 12 --out runs/digits
    recurrax train --resume runs/digits --epochs 20      # continue the same run exactly
    recurrax train --task adding --seq-len 100 --fresh-data --steps 2000 --eval-every 200 --out runs/adding
    recurrax evaluate runs/digits                         # metrics of the saved model
    recurrax list                                         # tasks and backbones

A run directory holds ``config.json`` (everything needed to rebuild the task,
model and optimizer), ``checkpoints/``, ``history.json`` and CSVs, plots and
``metrics.json`` (the final metrics on each split).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
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


def _step_spec(text: str) -> int | str:
    if text in ("latest", "best"):
        return text
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
    "dense": None,  # the model's default: 64 for classifiers, none for regressors
    "dropout": None,  # the model's default: 0.5 for classifiers, 0 for regressors
    "optimizer": "adam",
    "lr": 1e-3,
    "clip": None,
    "clip_value": None,
    "accumulate": 1,
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
LATER_SETTINGS = ("validation_fraction", "steps", "eval_every", "steps_per_call", "fresh_data")
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
    commands = parser.add_subparsers(dest="command", metavar="{train,evaluate,list}", parser_class=_Parser)
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
    model.add_argument("--dense", type=_non_negative_int, help="ReLU layer width, 0 for none (default 64 / none)")
    model.add_argument("--dropout", type=_rate, help="dropout after the ReLU layer (default 0.5 / 0)")
    optim = train.add_argument_group("optimization")
    optim.add_argument("--optimizer", help="any optax optimizer name (default adam)")
    optim.add_argument("--lr", type=_positive_float, help="learning rate (default 1e-3)")
    optim.add_argument("--clip", type=_positive_float, help="clip the gradient's global norm to this")
    optim.add_argument("--clip-value", type=_positive_float, help="clip each gradient element to ±this")
    optim.add_argument("--accumulate", type=_positive_int, help="average gradients over k batches per update")
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
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

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

    commands.add_parser("list", help="the tasks and backbones", description="List the tasks and backbones.")
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


def _write_json(path: Path, data: Any) -> None:
    from recurrax.train._history import write_atomic

    write_atomic(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


# --------------------------------------------------------- task, model, optim
def _build(config: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(dataset, model, optimizer)`` from a config; bad settings raise ValueError/TypeError."""
    from flax import nnx

    from recurrax.models import backbone_spec, model_for_task
    from recurrax.tasks import load_task
    from recurrax.train import build_optimizer

    # Cheap checks first, so that a typo fails before any data or weights are made; each names its flag.
    try:
        optimizer = build_optimizer(
            config["optimizer"],
            config["lr"],
            clip_norm=config["clip"],
            clip_value=config["clip_value"],
            accumulate_steps=config["accumulate"],
        )
    except (ValueError, TypeError) as err:
        raise ValueError(f"--optimizer {config['optimizer']} / --lr {config['lr']}: {err}") from None
    if isinstance(config["cell"], str):
        try:
            backbone_spec(config["cell"])
        except ValueError as err:
            raise ValueError(f"--cell {config['cell']}: {err}") from None
    options = {
        k: config[k]
        for k in ("num_train", "num_validation", "num_test", "validation_fraction")
        if config[k] is not None
    }
    if config["fresh_data"]:
        options["infinite"] = True
    _check_task_flags(config["task"], config["seq_len"], options)
    data = load_task(config["task"], seq_len=config["seq_len"], seed=config["data_seed"], **options)
    model_options: dict[str, Any] = {}
    if config["dense"] is not None:
        model_options["dense_size"] = config["dense"] or None
    if config["dropout"] is not None:
        model_options["dropout"] = config["dropout"]
    rngs = nnx.Rngs(params=config["seed"], dropout=config["seed"] + 1)
    model = model_for_task(data.info, cell=config["cell"], hidden_size=config["hidden"], rngs=rngs, **model_options)
    return data, model, optimizer


def _check_task_flags(task: str, seq_len: int | None, options: dict[str, Any]) -> None:
    """Refuses, by flag, a task name or a task option the task does not take."""
    import inspect

    from recurrax.tasks import task_spec

    try:
        spec = task_spec(task)
    except ValueError as err:
        raise ValueError(f"--task {task}: {err} (see `recurrax list`)") from None
    parameters = inspect.signature(spec.build).parameters
    for option in options:
        if option not in parameters:
            flags = sorted(flag for name, flag in TASK_OPTION_FLAGS.items() if name in parameters)
            raise ValueError(f"{TASK_OPTION_FLAGS[option]} does not apply to --task {task} (it takes {flags})")
    if seq_len is not None and spec.length_argument is None:
        raise ValueError(f"--seq-len does not apply to --task {task}: its sequence length is fixed")


def _count_parameters(model: Any) -> int:
    import jax
    from flax import nnx

    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _gradient_flow_measurable(model: Any) -> bool:
    """Whether ``train.gradient_flow`` applies: recurrent layers, all scanned step by step.

    The flow is read through carry perturbations, which only the sequential
    scan takes (a parallel linear scan has no per-step carry to perturb).
    """
    from flax import nnx

    from recurrax.nn import RNN

    layers = [m for _, m in nnx.iter_modules(model) if isinstance(m, RNN)]
    return bool(layers) and all(layer.method == "sequential" for layer in layers)


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
                f"only --epochs or --steps (and --no-progress) may be given, got {' '.join(given)}",
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
    start = time.perf_counter()
    try:
        data, model, optimizer = _build(config)
    except (ValueError, TypeError, ImportError) as err:
        raise UsageError("recurrax train", f"{err}") from None
    return _run_training(
        config,
        run_dir,
        data,
        model,
        optimizer,
        resume=args.resume is not None,
        on_corrupt=args.on_corrupt or "raise",
        progress=not args.no_progress,
        start=start,
    )


def _run_training(
    config: dict[str, Any],
    run_dir: Path,
    data: Any,
    model: Any,
    optimizer: Any,
    *,
    resume: bool,
    on_corrupt: str,
    progress: bool,
    start: float,
) -> int:
    from recurrax import train

    info = data.info
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / CONFIG_FILE, config)
    by_steps = config["steps"] is not None
    if config["fresh_data"]:
        train_size, plan = "a fresh batch per step", f"{config['steps']} steps, validating every {config['eval_every']}"
        total_steps, period = config["steps"], config["eval_every"]
    else:
        steps_per_epoch = -(-len(data.train) // config["batch_size"])
        train_size = f"{len(data.train)} train"
        if by_steps:
            total_steps, period = config["steps"], config["eval_every"]
            plan = f"{total_steps} steps ({steps_per_epoch} per epoch), validating every {period}"
        else:
            total_steps, period = config["epochs"] * steps_per_epoch, steps_per_epoch
            plan = f"{config['epochs']} epochs x {steps_per_epoch} steps"
    print(
        f"recurrax: {info.description}\n"
        f"  {train_size} / {len(data.validation)} validation / {len(data.test)} test examples, "
        f"inputs [T={info.seq_len}, D={info.in_features}]\n"
        f"  model: {type(model).__name__}, cell={config['cell']}, hidden={config['hidden']}, "
        f"{_count_parameters(model):,} parameters; {plan}",
        flush=True,
    )
    trainer = train.Trainer(model, optimizer, loss=info.loss, metrics=list(info.metrics))
    # With no validation split (--validation-fraction 0) the best checkpoint is the best training epoch.
    validation = data.validation if len(data.validation) else None
    checkpointer = train.Checkpointer(
        run_dir / CHECKPOINT_DIR,
        every_steps=config["checkpoint_every"] or period,
        keep=2,
        monitor="loss" if validation is None else "val_loss",
        on_corrupt=on_corrupt,
    )
    callbacks = []
    recorder = None
    if _gradient_flow_measurable(model):
        if validation is not None:
            flow_batch = validation.subset(slice(0, 64))
        else:
            flow_batch = data.train.batch(0, 64) if config["fresh_data"] else data.train.subset(slice(0, 64))
        batch = {"inputs": flow_batch.inputs, "targets": flow_batch.targets, "lengths": flow_batch.lengths}
        # Measured every ~1/20 of the planned run; fixed in the config so a resume measures at the same steps.
        config.setdefault("flow_every", max(1, total_steps // 20))
        _write_json(run_dir / CONFIG_FILE, config)
        recorder = train.GradientFlowRecorder(batch, every_steps=config["flow_every"])
        callbacks.append(recorder)
    try:
        length = {"steps": config["steps"], "eval_every": config["eval_every"]} if by_steps else {}
        history = trainer.fit(
            data.train,
            **(length or {"epochs": config["epochs"]}),
            steps_per_call=config["steps_per_call"],
            batch_size=config["batch_size"],
            validation_data=validation,
            seed=config["seed"],
            callbacks=callbacks,
            checkpoint=checkpointer,
            resume=resume,
            progress=progress,
            history_dir=run_dir,
        )
    except KeyboardInterrupt:
        print(
            f"\nrecurrax: interrupted; continue from the last checkpoint with: recurrax train --resume {run_dir}",
            file=sys.stderr,
        )
        return 130
    except train.CheckpointError as err:
        raise UsageError("recurrax train", f"{err}") from None
    except FloatingPointError as err:
        print(
            f"recurrax train: {err}\n  the run stays in {run_dir}: its last checkpoint is from before the "
            "non-finite loss (a new run with a lower --lr or with --clip may fare better)",
            file=sys.stderr,
        )
        return 1
    finally:
        checkpointer.close()
    train_seconds = time.perf_counter() - start

    train.plot_history(history, run_dir / "history.png")
    train.plot_gradient_norms(history, run_dir / "gradient_norms.png")
    if recorder is not None and len(recorder.steps):
        flows, steps = recorder.flows, recorder.steps
        train.plot_gradient_flow(
            {f"step {steps[0]}": flows[0], f"step {steps[-1]}": flows[-1]},
            run_dir / "gradient_flow.png",
            title=f"gradient flow ‖∂L/∂h_t‖, {config['cell']} on {info.name}",
        )
        train.plot_gradient_flow(flows, run_dir / "gradient_flow_heatmap.png", steps=steps)

    splits = {"test": data.test} if validation is None else {"validation": validation, "test": data.test}
    metrics = {name: trainer.evaluate(split) for name, split in splits.items()}
    summary = {
        "task": info.to_dict(),
        "step": trainer.step,
        "epoch": trainer.epoch,
        "train_last_epoch": {k: v for k, v in history.epochs[-1].items() if not k.startswith("val_")},
        **metrics,
        "baseline": {info.baseline_metric: info.baseline},
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
    }
    _write_json(run_dir / METRICS_FILE, summary)
    done = f"{trainer.step} steps" if by_steps else f"{trainer.epoch} epochs, {trainer.step} steps"
    print(f"final metrics after {done} ({summary['wall_seconds']:.1f} s):")
    _print_metrics(metrics, info)
    print(f"run saved in {run_dir}")
    return 0


def _print_metrics(metrics: dict[str, dict[str, float]], info: Any) -> None:
    for split, values in metrics.items():
        text = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
        print(f"  {split:<10}  {text}")
    print(f"  baseline    {info.baseline_metric} {info.baseline:.4f}  ({info.baseline_description})")


# ----------------------------------------------------------------- evaluate
def _evaluate(args: argparse.Namespace) -> int:
    from recurrax import train

    config = _read_config(args.run_dir, "evaluate")
    try:
        data, model, _ = _build(config)
    except (ValueError, TypeError, ImportError) as err:
        raise UsageError("recurrax evaluate", f"{err}") from None
    try:
        train.restore_model(args.run_dir / CHECKPOINT_DIR, model, step=args.step)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError("recurrax evaluate", f"{err}") from None
    trainer = train.Trainer(model, None, loss=data.info.loss, metrics=list(data.info.metrics), diagnostics=False)
    if args.split and "train" in args.split and config["fresh_data"]:
        raise UsageError(
            "recurrax evaluate", "--split train: the run trained on fresh batches (--fresh-data); no fixed train split"
        )
    splits = args.split or [name for name in ("validation", "test") if len(data.splits[name])]
    metrics = {s: trainer.evaluate(data.splits[s], batch_size=args.batch_size) for s in dict.fromkeys(splits)}
    print(f"{args.run_dir} (checkpoint {args.step}):")
    _print_metrics(metrics, data.info)
    return 0


def _list() -> int:
    from recurrax.models import backbone_names, backbone_spec
    from recurrax.tasks import task_names, task_spec

    print("tasks (--task):")
    for name in task_names():
        print(f"  {name:<14} {task_spec(name).summary}")
    print("backbones (--cell/--model):")
    for name in backbone_names():
        print(f"  {name:<14} {backbone_spec(name).summary}")
    return 0


# --------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``recurrax`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Mistakes in the arguments or the run directory print one line
    (``recurrax train: ...``) to stderr and return 2; no traceback.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        return _list()
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
