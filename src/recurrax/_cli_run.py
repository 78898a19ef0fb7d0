"""The jax side of the ``recurrax`` command: the task, model and optimizer of a config, training with its
console lines and Ctrl-C handling, evaluation, the listing.

:mod:`recurrax.cli` parses and checks the arguments without importing jax (so
``--help`` and argument errors answer at once), then calls in here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Literal, ParamSpec

import jax
from flax import nnx

from recurrax import nn, tasks, train
from recurrax.cells import registered_cells
from recurrax.cli import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    METRICS_FILE,
    QAT_PRECISIONS,
    TASK_OPTION_FLAGS,
    TENSORBOARD_DIR,
    UsageError,
)
from recurrax.models import backbone_names, backbone_spec, model_for_task
from recurrax.tasks import task_names, task_spec
from recurrax.train._checkpoint import Restored, StepSpec
from recurrax.train._history import write_atomic

P = ParamSpec("P")


def _write_json(path: Path, data: Any) -> None:
    if jax.process_index() == 0:  # one process writes a run's files, however many train it
        write_atomic(path, json.dumps(data, indent=2, allow_nan=True) + "\n")


# --------------------------------------------------------- task, model, optim
def build(config: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``(dataset, model, optimizer)`` from a config; bad settings raise ValueError/TypeError naming the flag."""
    # Cheap checks first, so that a typo fails before any data or weights are made.
    try:
        optimizer = train.build_optimizer(
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
    data = tasks.load_task(config["task"], seq_len=config["seq_len"], seed=config["data_seed"], **options)
    model_options: dict[str, Any] = {}
    if config.get("depth") is not None:  # configs written before --depth have none
        model_options["depth"] = config["depth"]
    if config["dense"] is not None:
        model_options["dense_size"] = config["dense"] or None
    if config["dropout"] is not None:
        model_options["dropout"] = config["dropout"]
    rngs = nnx.Rngs(params=config["seed"], dropout=config["seed"] + 1)
    model = model_for_task(data.info, cell=config["cell"], hidden_size=config["hidden"], rngs=rngs, **model_options)
    precision = config.get("precision") or "float32"  # configs made before --precision have none
    if precision in QAT_PRECISIONS:  # every kernel fake-quantized; float32 weights, compute and carries
        from recurrax.quantize import quantization_aware_model

        quantization_aware_model(model, QAT_PRECISIONS[precision])
    nn.apply_precision(model, dtype_policy(config))
    return data, model, optimizer


def dtype_policy(config: Mapping[str, Any]) -> str:
    """The run's dtype policy: its --precision, float32 for quantization-aware training (int8-qat)."""
    precision = config.get("precision") or "float32"
    return "float32" if precision in QAT_PRECISIONS else str(precision)


def build_or_usage_error(config: Mapping[str, Any], command: str) -> tuple[Any, Any, Any]:
    try:
        return build(config)
    except (ValueError, TypeError, ImportError) as err:
        raise UsageError(f"recurrax {command}", f"{err}") from None


def _check_task_flags(task: str, seq_len: int | None, options: Mapping[str, Any]) -> None:
    """Refuses, by flag, a task name or a task option the task does not take."""
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
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _gradient_flow_measurable(model: Any) -> bool:
    """Whether ``train.gradient_flow`` applies: recurrent layers, all scanned step by step.

    The flow is read through carry perturbations, which only the sequential
    scan takes (a parallel linear scan has no per-step carry to perturb).
    """
    from recurrax.nn import RNN

    layers = [m for _, m in nnx.iter_modules(model) if isinstance(m, RNN)]
    return bool(layers) and all(layer.method == "sequential" for layer in layers)


# ------------------------------------------------------------------ Ctrl-C
class _Interrupts:
    """Ctrl-C during a run: a KeyboardInterrupt at once, except inside :meth:`held` sections, which finish first.

    A KeyboardInterrupt raised inside orbax's save leaves its writer threads
    running into a closed event loop: some 45 lines of tracebacks after the
    resume hint, although the steps on disk stay consistent. A save takes a
    fraction of a second, so the command lets it finish and stops right after.
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """This object handles SIGINT inside the block (only the main thread can install a handler)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A Ctrl-C inside the block takes effect when it ends (as a KeyboardInterrupt)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            interrupted = self._pending and not self._depth
            if interrupted:
                self._pending = False  # an exception leaving the block stops the run anyway
        if interrupted:
            raise KeyboardInterrupt


class _Checkpointer(train.Checkpointer):
    """A :class:`~recurrax.train.Checkpointer` whose writes, reads and close finish before a Ctrl-C acts."""

    def __init__(self, directory: Path, interrupts: _Interrupts, **options: Any):
        super().__init__(directory, **options)
        self._interrupts = interrupts

    def save(
        self,
        step: int,
        *,
        model_state: Any,
        opt_state: Any,
        meta: Mapping[str, Any],
        metric: float | None = None,
        wait: bool = True,
    ) -> Path:
        with self._interrupts.held():
            return super().save(step, model_state=model_state, opt_state=opt_state, meta=meta, metric=metric, wait=wait)

    def wait_until_finished(self) -> None:
        with self._interrupts.held():
            super().wait_until_finished()

    def restore(self, *, model_target: Any, opt_target: Any = None, step: StepSpec = "latest") -> Restored:
        with self._interrupts.held():
            return super().restore(model_target=model_target, opt_target=opt_target, step=step)

    def close(self) -> None:
        with self._interrupts.held():
            super().close()


# --------------------------------------------------------- console lines
class _RunLog(train.Callback):
    """The command's lines during training: where a resumed run starts, and with ``--no-progress``
    one line per epoch (per evaluation with ``--steps``), as Keras' ``verbose=2``."""

    def __init__(self, *, by_steps: bool, total: int, batches_per_epoch: int, resume: str | None, lines: bool):
        self.by_steps, self.total, self.batches_per_epoch = by_steps, total, batches_per_epoch
        self.resume, self.lines = resume, lines
        self._since = time.perf_counter()

    def on_train_begin(self, trainer: train.Trainer) -> None:
        if self.resume is not None:
            print(f"recurrax: {self._resumed_at(trainer)}", flush=True)
        self._since = time.perf_counter()

    def _resumed_at(self, trainer: train.Trainer) -> str:
        goal = f"training to {'step' if self.by_steps else 'epoch'} {self.total}"
        if trainer.step == 0:
            return f"no checkpoint in {self.resume} yet; {goal}, from step 0"
        if self.by_steps:
            where = ""
        elif trainer.position == 0:
            where = f" (end of epoch {trainer.epoch})"
        else:
            where = f" (epoch {trainer.epoch + 1}, batch {trainer.position} of {self.batches_per_epoch})"
        return f"resumed from the checkpoint of step {trainer.step}{where}; {goal}"

    def on_epoch_end(self, trainer: train.Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        if not self.lines:
            return
        now = time.perf_counter()
        seconds, self._since = now - self._since, now
        where = f"step {int(logs['step'])}/{self.total}" if self.by_steps else f"epoch {epoch + 1}/{self.total}"
        # Keras' order: the loss, the metrics, then the validation ones.
        names = [k for k in logs if k not in ("epoch", "step")]
        names.sort(key=lambda k: (k.startswith("val_"), k.removeprefix("val_") != "loss"))
        values = " - ".join(f"{k} {logs[k]:.4g}" for k in names)
        print(f"{where} - {seconds:.1f}s - {values}", flush=True)


# -------------------------------------------------------------------- train
def _joins_the_threads_it_starts(run: Callable[P, int]) -> Callable[P, int]:
    """``run``, returning only once the non-daemon threads started during it have ended (10 s each at most).

    orbax finishes some work on threads of its own (its start-up clean-up of
    unfinished writes ends an asyncio loop after reporting done); one still
    running when the interpreter exits (a Ctrl-C early in a run) printed an
    absl traceback after the resume hint.
    """

    @functools.wraps(run)
    def joined(*args: P.args, **kwargs: P.kwargs) -> int:
        before = set(threading.enumerate())
        try:
            return run(*args, **kwargs)
        finally:
            for thread in set(threading.enumerate()) - before:
                if not thread.daemon:
                    thread.join(timeout=10)

    return joined


@_joins_the_threads_it_starts
def run_training(
    config: dict[str, Any],
    run_dir: Path,
    *,
    resume: bool,
    on_corrupt: Literal["raise", "fallback"],
    progress: bool,
    start: float,
    async_checkpoints: bool = True,
    tensorboard: bool = False,
    distributed: Mapping[str, Any] | None = None,
    fsdp: bool = False,
) -> int:
    """Builds and trains the run ``config`` in ``run_dir``; prints and writes its results; the exit status.

    ``distributed`` (``initialize_distributed``'s arguments) joins a multi-process
    run first and trains data parallel over all its devices (``fsdp``: with the
    parameters and optimizer state split over them too); process 0 alone
    prints and writes files (orbax coordinates the checkpoints' writes).
    """
    partitioning = None
    if distributed is not None:
        try:  # before any array exists: JAX's devices become those of every process here
            train.initialize_distributed(**distributed)
        except (ValueError, RuntimeError) as err:
            raise UsageError("recurrax train", f"--distributed: {err}") from None
        partitioning = train.Partitioning(train.global_mesh(), shard_params=fsdp)
    run = functools.partial(
        _train_run,
        config,
        run_dir,
        resume=resume,
        on_corrupt=on_corrupt,
        progress=progress,
        start=start,
        async_checkpoints=async_checkpoints,
    )
    if jax.process_index() == 0:
        return run(tensorboard=tensorboard, partitioning=partitioning)
    with contextlib.redirect_stdout(io.StringIO()):  # the other processes train in silence
        return run(tensorboard=False, partitioning=partitioning)


def _check_split(partitioning: train.Partitioning, config: Mapping[str, Any], num_train: int | None) -> None:
    """Refuses, naming --batch-size, batches that do not split evenly over the run's devices."""
    n, size = config["batch_size"], partitioning.size
    last = 0 if num_train is None else num_train % n
    for count, what in ((n, "--batch-size"), (last, f"the last batch of an epoch ({num_train} train examples)")):
        if count % size:
            raise UsageError(
                "recurrax train",
                f"--distributed: {what} ({count} examples) does not split over the {size} devices of the run; "
                f"use a --batch-size that is a multiple of {size}"
                + ("" if count == n else " and divides the number of training examples"),
            )


def _train_run(
    config: dict[str, Any],
    run_dir: Path,
    *,
    resume: bool,
    on_corrupt: Literal["raise", "fallback"],
    progress: bool,
    start: float,
    async_checkpoints: bool,
    tensorboard: bool,
    partitioning: train.Partitioning | None,
) -> int:
    """:func:`run_training` in one process: over ``partitioning``'s devices, if any."""
    if partitioning is not None:
        _check_split(partitioning, config, None)  # the batch size, before any data or model is made
    data, model, optimizer = build_or_usage_error(config, "train")
    if partitioning is not None and not config["fresh_data"]:
        _check_split(partitioning, config, len(data.train))  # and the last batch of an epoch
    info = data.info
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / CONFIG_FILE, config)
    by_steps = config["steps"] is not None
    steps_per_epoch = 0
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
    trainer = train.Trainer(
        model,
        optimizer,
        loss=info.loss,
        metrics=list(info.metrics),
        precision=dtype_policy(config),
        partitioning=partitioning,
    )
    # With no validation split (--validation-fraction 0) the best checkpoint is the best training epoch.
    validation = data.validation if len(data.validation) else None
    interrupts = _Interrupts()
    checkpointer = _Checkpointer(
        run_dir / CHECKPOINT_DIR,
        interrupts,
        every_steps=config["checkpoint_every"] or period,
        keep=2,
        monitor="loss" if validation is None else "val_loss",
        on_corrupt=on_corrupt,
    )
    callbacks: list[train.Callback] = [
        _RunLog(
            by_steps=by_steps,
            total=config["steps"] if by_steps else config["epochs"],
            batches_per_epoch=steps_per_epoch,
            resume=str(run_dir / CHECKPOINT_DIR) if resume else None,
            lines=not progress,
        )
    ]
    if tensorboard:  # process 0's alone, in a multi-process run
        # Resuming purges the events an interrupted run wrote past its checkpoint: one curve per metric.
        callbacks.append(train.TensorBoardWriter(run_dir / TENSORBOARD_DIR))
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
    length = {"steps": config["steps"], "eval_every": config["eval_every"]} if by_steps else {}
    try:
        with interrupts.installed():
            try:
                history = trainer.fit(
                    data.train,
                    **(length or {"epochs": config["epochs"]}),
                    steps_per_call=config["steps_per_call"],
                    batch_size=config["batch_size"],
                    validation_data=validation,
                    seed=config["seed"],
                    callbacks=callbacks,
                    checkpoint=checkpointer,
                    async_checkpointing=async_checkpoints,
                    resume=resume,
                    progress=progress,
                    history_dir=run_dir,
                )
            finally:
                checkpointer.close()
    except KeyboardInterrupt:
        saved = checkpointer.latest_step()
        checkpointer.close()
        last = "no checkpoint yet" if saved is None else f"the last checkpoint is step {saved}"
        print(
            f"\nrecurrax: interrupted at step {trainer.step}; {last}\n"
            f"  continue with: recurrax train --resume {run_dir}",
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
    train_seconds = time.perf_counter() - start

    if jax.process_index() == 0:
        train.plot_history(history, run_dir / "history.png")
        train.plot_gradient_norms(history, run_dir / "gradient_norms.png")
    if recorder is not None and len(recorder.steps) and jax.process_index() == 0:
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


def _print_metrics(metrics: Mapping[str, Mapping[str, float]], info: Any) -> None:
    for split, values in metrics.items():
        text = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
        print(f"  {split:<10}  {text}")
    print(f"  baseline    {info.baseline_metric} {info.baseline:.4f}  ({info.baseline_description})")


# ----------------------------------------------------------------- evaluate
def evaluate(
    run_dir: Path, config: Mapping[str, Any], *, splits: list[str] | None, step: StepSpec, batch_size: int
) -> int:
    """Prints the metrics of a run's checkpoint ``step`` on ``splits``; the exit status."""
    check_checkpoint_step(run_dir / CHECKPOINT_DIR, step, "evaluate")  # before any data or model is built
    data, model, _ = build_or_usage_error(config, "evaluate")
    try:
        train.restore_model(run_dir / CHECKPOINT_DIR, model, step=step)
    except (FileNotFoundError, ValueError) as err:
        raise UsageError("recurrax evaluate", f"{err}") from None
    trainer = train.Trainer(
        model,
        None,
        loss=data.info.loss,
        metrics=list(data.info.metrics),
        diagnostics=False,
        precision=dtype_policy(config),
    )
    names = splits or [name for name in ("validation", "test") if len(data.splits[name])]
    metrics = {s: trainer.evaluate(data.splits[s], batch_size=batch_size) for s in dict.fromkeys(names)}
    print(f"{run_dir} (checkpoint {step}):")
    _print_metrics(metrics, data.info)
    return 0


def check_checkpoint_step(directory: Path, step: StepSpec, command: str) -> None:
    """Refuses, naming ``--step``, a run with no checkpoint or a step number it does not hold."""
    try:
        checkpointer = train.Checkpointer(directory)
        try:
            steps = checkpointer.all_steps()
        finally:
            checkpointer.close()
    except train.CheckpointError as err:
        raise UsageError(f"recurrax {command}", f"{err}") from None
    if not steps:
        raise UsageError(f"recurrax {command}", f"--step {step}: {directory} holds no complete checkpoint")
    if isinstance(step, int) and step not in steps:
        raise UsageError(f"recurrax {command}", f"--step {step}: no checkpoint for step {step}; steps: {steps}")


def list_names() -> int:
    """Prints the tasks and backbones; the exit status."""
    print("tasks (--task):")
    for name in task_names():
        print(f"  {name:<14} {task_spec(name).summary}")
    print("backbones (--cell/--model):")
    # A cell's backbone also answers to the cell's factory name and aliases (`mingru` for `min_gru`).
    spellings = {e.backbone: (e.name, *e.aliases) for e in registered_cells() if e.backbone is not None}
    for name in backbone_names():
        also = [n for n in spellings.get(name, ()) if n != name]
        print(f"  {name:<14} {backbone_spec(name).summary}" + (f" (also: {', '.join(also)})" if also else ""))
    return 0
