"""Checkpoints with orbax-checkpoint: save, keep the last k and the best, restore exactly.

Layout of a checkpoint directory (all of it orbax's CheckpointManager)::

    <directory>/
      <step>/                     # one orbax step, written to a temporary directory
        model/                    #   and renamed into place when complete, so a run
        opt_state/                #   killed mid-save leaves the older steps intact
        meta/                     # JSON: step, history, loop position, shapes of every array
        metrics/                  # orbax's step metrics, only on a step that set a new best of
                                  #   ``monitor``: {"monitor", "mode", "value"}

A save can return before its files are written (``save(..., wait=False)``, what
``fit`` does by default): orbax copies the arrays off the device, then writes and
renames the step on a background thread. The next save, every read and
:meth:`Checkpointer.close` wait for it first; a process killed before the rename
leaves only orbax's temporary directory, which no listing counts and the next
manager removes, so "latest" is always the newest complete step.

The best step is orbax's (``best_fn`` over those metrics, ``BestN`` retention):
each step carries its own metric, so nothing can say a step is the best after
the step is gone (set aside as corrupt, or never finished).

Arrays are stored flat, keyed by their path in the model (``"rnn/params/input_kernel"``),
so a mismatch is reported by name. PRNG key arrays (the model's dropout RNG
state) are stored as their raw key data and rewrapped on restore.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

FORMAT = "recurrax.train.checkpoint/1"
StepSpec = int | Literal["latest", "best"]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, or made for a different model or optimizer."""


class _CorruptCheckpointError(CheckpointError):
    """A checkpoint whose files cannot be read (as opposed to one made for other shapes)."""


class Restored(NamedTuple):
    """What :meth:`Checkpointer.restore` returns."""

    step: int
    path: Path
    model_state: Any
    opt_state: Any
    meta: dict[str, Any]


class Checkpointer:
    """Saves training state every N steps and at the best validation metric, keeping the last k.

    The loop (:class:`~recurrax.train.Trainer`) decides *when* to save from
    ``every_steps`` and ``monitor``; this class does the writing, the retention
    (orbax keeps the ``keep`` latest steps and the best step of ``monitor``) and the checks on
    restore. A save is complete on return unless it was started with
    ``wait=False`` (asynchronous: see the module docstring). Which step is the best is orbax's
    ``CheckpointManager.best_step()``, from the metric recorded with each step
    that improved on the best before it.

    Args:
      directory: where the steps go (created if missing).
      every_steps: save when the step count crosses a multiple of this (None: never by count).
      keep: how many of the most recent checkpoints to keep (the best one is kept as well).
      monitor: an epoch metric (``"val_loss"``) whose best value gets its own checkpoint.
      mode: ``"min"`` or ``"max"``: which direction of ``monitor`` is better.
      on_corrupt: what ``restore(step="latest")`` (and so ``fit(resume=True)``)
        does when the latest checkpoint cannot be read: ``"raise"`` a
        :class:`CheckpointError`, or ``"fallback"``: warn, set the unreadable
        steps aside as ``<step>.corrupt`` (so the run can save those steps
        again) and use the newest intact one.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> ckpt = Checkpointer(tempfile.mkdtemp(), keep=2)
      >>> _ = ckpt.save(3, model_state={"w": jnp.ones(2)}, opt_state=(), meta={})
      >>> ckpt.restore(model_target={"w": jnp.zeros(2)}, opt_target=()).model_state["w"].tolist()
      [1.0, 1.0]
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        every_steps: int | None = None,
        keep: int = 3,
        monitor: str | None = None,
        mode: Literal["min", "max"] = "min",
        on_corrupt: Literal["raise", "fallback"] = "raise",
    ):
        if every_steps is not None and (
            isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1
        ):
            raise ValueError(f"every_steps must be a positive int or None, got {every_steps!r}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be a positive int, got {keep!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if on_corrupt not in ("raise", "fallback"):
            raise ValueError(f"on_corrupt must be 'raise' or 'fallback', got {on_corrupt!r}")
        if monitor is not None and not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name or None, got {monitor!r}")
        self.directory = Path(directory).absolute()
        self.every_steps = every_steps
        self.keep = keep
        self.monitor = monitor
        self.mode = mode
        self.on_corrupt = on_corrupt
        self._manager: Any = None

    # ------------------------------------------------------------------ queries
    def all_steps(self) -> list[int]:
        """Steps with a complete checkpoint, oldest first (half-written ones never count)."""
        if not self.directory.is_dir():
            return []
        return sorted(int(s) for s in self._get_manager().all_steps())

    def latest_step(self) -> int | None:
        """The newest complete step, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def step_path(self, step: int) -> Path:
        """The directory of one step."""
        return self.directory / str(step)

    @property
    def best_step(self) -> int | None:
        """The step with the best recorded value of ``monitor`` (under ``mode``), or None."""
        if self.monitor is None or not self.directory.is_dir():
            return None
        step = self._get_manager().best_step()
        if step is None or _score(self.monitor, self.mode)(self._get_manager().metrics(step)) == -math.inf:
            return None  # only steps recorded for another monitor or mode
        return int(step)

    @property
    def best_value(self) -> float | None:
        """``monitor``'s value at :attr:`best_step`, or None."""
        step = self.best_step
        return None if step is None else float(self._get_manager().metrics(step)["value"])

    def is_improvement(self, value: float) -> bool:
        """Whether ``value`` of ``monitor`` beats the best saved so far (NaN never does)."""
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if self.mode == "min" else value > self.best_value

    # -------------------------------------------------------------------- save
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
        """Writes one checkpoint atomically and returns its path.

        A save still in flight is finished first.

        Args:
          step: the step number (unique; saving the same step twice is an error).
          model_state: a pytree of arrays (the model's ``nnx.State``, params and the rest).
          opt_state: the optimizer state (any pytree of arrays).
          meta: JSON-serialisable data stored with it (history, loop position, ...).
          metric: the value of ``monitor`` at this step, if it was measured.
          wait: return once the checkpoint is on disk; with False, once its
            arrays are copied off the device, the files being written in the
            background (:meth:`wait_until_finished` waits for them; the path
            exists only then).
        """
        import orbax.checkpoint as ocp

        if step in self.all_steps():
            raise CheckpointError(f"{self.step_path(step)} already exists; checkpoint steps must be unique")
        model_flat, model_spec = _flatten_named(model_state)
        opt_flat, opt_spec = _flatten_indexed(opt_state)
        full_meta = {
            "format": FORMAT,
            "step": int(step),
            "model_spec": model_spec,
            "opt_spec": opt_spec,
            # A copy: the caller's lists (the epoch sums) change while a background save writes them.
            "user": copy.deepcopy(dict(meta)),
        }
        items = {"meta": ocp.args.JsonSave(full_meta)}
        if model_flat:
            items["model"] = ocp.args.StandardSave(model_flat)
        if opt_flat:
            items["opt_state"] = ocp.args.StandardSave(opt_flat)
        metrics = None
        if metric is not None and self.monitor is not None and self.is_improvement(float(metric)):
            # Only a strict improvement is recorded. orbax sorts the recorded values stably and takes
            # the last, so a tie recorded later would become the best, while EarlyStopping (and this
            # class before) keep the first: its step could then be deleted under EarlyStopping's
            # restore_best. NaN is never recorded (it would make the sort meaningless).
            metrics = {"monitor": self.monitor, "mode": self.mode, "value": float(metric)}
        self._get_manager().save(int(step), args=ocp.args.Composite(**items), force=True, metrics=metrics)
        if wait:
            self.wait_until_finished()
        return self.step_path(step)

    def wait_until_finished(self) -> None:
        """Blocks until a save started with ``wait=False`` is on disk (at once if none is in flight).

        An error of that background write is raised here (or by the next save).
        """
        if self._manager is not None:
            self._manager.wait_until_finished()

    # ----------------------------------------------------------------- restore
    def restore(
        self,
        *,
        model_target: Any,
        opt_target: Any = None,
        step: StepSpec = "latest",
    ) -> Restored:
        """Reads a checkpoint into the structure of ``model_target`` (and ``opt_target``).

        Args:
          model_target: a pytree shaped like the saved model state (the current
            model's state); shapes and dtypes must match exactly.
          opt_target: the optimizer state to restore into, or None to skip it.
          step: a step number, ``"latest"`` or ``"best"``.

        Raises:
          FileNotFoundError: no such directory or step.
          CheckpointError: the checkpoint is corrupt or was made for other shapes.
        """
        self.wait_until_finished()
        resolved = self._resolve_step(step)
        if step == "latest" and self.on_corrupt == "fallback":
            return self._restore_newest_intact(model_target, opt_target)
        try:
            return self._restore_step(resolved, model_target, opt_target)
        except _CorruptCheckpointError as err:
            if step != "latest":
                raise
            raise CheckpointError(
                f"{err}; Checkpointer(..., on_corrupt='fallback') resumes from the newest intact checkpoint "
                "instead (recurrax train --resume DIR --on-corrupt fallback)"
            ) from err

    def _restore_newest_intact(self, model_target: Any, opt_target: Any) -> Restored:
        """The newest step that reads; newer unreadable ones are set aside, with a warning naming them."""
        skipped: list[str] = []
        for step in reversed(self.all_steps()):
            try:
                restored = self._restore_step(step, model_target, opt_target)
            except _CorruptCheckpointError as err:
                skipped.append(str(err)[:300])  # orbax's messages run to pages
                continue
            if skipped:
                self._set_aside([s for s in self.all_steps() if s > step])
                warnings.warn(
                    f"resuming from step {step}, the newest intact checkpoint in {self.directory}; "
                    f"the newer ones are set aside as <step>.corrupt: {'; '.join(skipped)}",
                    stacklevel=4,
                )
            return restored
        raise CheckpointError(f"no intact checkpoint in {self.directory}: {'; '.join(skipped)}")

    def _restore_step(self, step: int, model_target: Any, opt_target: Any) -> Restored:
        """Reads one step; an unreadable one raises :class:`_CorruptCheckpointError`, other shapes CheckpointError."""
        import orbax.checkpoint as ocp

        path = self.step_path(step)
        manager = self._get_manager()
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception as err:  # whatever orbax raises, it is unreadable
            raise _CorruptCheckpointError(
                f"checkpoint {path} is corrupt or incomplete: cannot read its metadata ({err})"
            ) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"checkpoint {path} is not a recurrax checkpoint (metadata {str(meta)[:200]})")

        model_abstract, model_names = _abstract_named(model_target)
        _check_spec(path, "model", meta["model_spec"], _spec_of(model_target, model_names))
        items: dict[str, Any] = {}
        if model_abstract:
            items["model"] = ocp.args.StandardRestore(model_abstract)
        if opt_target is not None:
            opt_abstract = _abstract_indexed(opt_target)
            _check_spec(path, "optimizer state", meta["opt_spec"], _spec_of(opt_target, None))
            if opt_abstract:
                items["opt_state"] = ocp.args.StandardRestore(opt_abstract)
        _quiet_orbax_stragglers()
        try:
            restored = manager.restore(step, args=ocp.args.Composite(**items)) if items else {}
        except Exception as err:  # whatever orbax raises, it is unreadable
            raise _CorruptCheckpointError(
                f"checkpoint {path} is corrupt or incomplete: {type(err).__name__}: {err}"
            ) from err
        model_state = _unflatten_named(model_target, restored["model"] if model_abstract else {})
        opt_state = None
        if opt_target is not None:
            opt_state = _unflatten_indexed(opt_target, restored["opt_state"] if "opt_state" in items else {})
        return Restored(step, path, model_state, opt_state, meta["user"])

    def close(self) -> None:
        """Finishes a save in flight and releases orbax's resources."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Checkpointer({str(self.directory)!r}, every_steps={self.every_steps}, keep={self.keep}, "
            f"monitor={self.monitor!r}, mode={self.mode!r})"
        )

    # ----------------------------------------------------------------- helpers
    def _get_manager(self) -> Any:
        if self._manager is None:
            import orbax.checkpoint as ocp
            from orbax.checkpoint import checkpoint_managers as managers

            keep: list[Any] = [managers.LatestN(self.keep)]
            best: dict[str, Any] = {}
            if self.monitor is not None:
                score = _score(self.monitor, self.mode)
                # Higher is better for the score, whatever the mode; steps without metrics are not "best".
                keep.append(managers.BestN(get_metric_fn=score, n=1, keep_checkpoints_without_metrics=False))
                best = {"best_fn": score, "best_mode": "max"}
                _quiet_missing_metrics()
            options = ocp.CheckpointManagerOptions(
                # save(wait=True) waits at once, so a manager that can write in the background serves both.
                enable_async_checkpointing=True,
                preservation_policy=managers.AnyPreservationPolicy(keep),
                cleanup_tmp_directories=True,
                **best,
            )
            try:
                self._manager = ocp.CheckpointManager(self.directory, options=options)
            except Exception as err:  # orbax reads every step's metrics here; one unreadable file stops it
                raise CheckpointError(
                    f"cannot open the checkpoints in {self.directory}: a step's orbax metadata is unreadable "
                    f"({type(err).__name__}: {str(err)[:200]})"
                ) from err
        return self._manager

    def _set_aside(self, steps: list[int]) -> None:
        """Renames unreadable steps to ``<step>.corrupt`` (kept for inspection, no longer a step)."""
        self.close()  # orbax re-lists the steps when the manager is made again
        for step in steps:
            target, n = self.directory / f"{step}.corrupt", 1
            while target.exists():
                target, n = self.directory / f"{step}.corrupt.{n}", n + 1
            os.rename(self.step_path(step), target)

    def _resolve_step(self, step: StepSpec) -> int:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"no checkpoint directory at {self.directory}")
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
        if step == "latest":
            return steps[-1]
        if step == "best":
            if self.best_step is None or self.best_step not in steps:
                raise FileNotFoundError(
                    f"no best checkpoint in {self.directory} (monitor={self.monitor!r}); steps: {steps}"
                )
            return self.best_step
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step must be an int, 'latest' or 'best', got {step!r}")
        if int(step) not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; steps: {steps}")
        return int(step)


def _score(monitor: str, mode: str) -> Any:
    """orbax's ``best_fn``: a step's recorded metrics as a score where higher is better.

    A step recorded for another monitor or mode scores -inf, so it is never the best.
    """

    def score(metrics: Any) -> float:
        if not isinstance(metrics, Mapping) or metrics.get("monitor") != monitor or metrics.get("mode") != mode:
            return -math.inf
        value = float(metrics["value"])
        return value if mode == "max" else -value

    return score


class _MissingMetricsFilter(logging.Filter):
    """Drops orbax's warning for a save without metrics while ``best_fn`` is set.

    Saves between epochs (``every_steps``) and saves that did not improve have
    no metric by design (see :meth:`Checkpointer.save`); orbax would print
    ``WARNING:absl:Requested `tracked_metric`; did not provide metrics.`` for each.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Requested `tracked_metric`; did not provide metrics."


def _quiet_missing_metrics() -> None:
    """Installs (once) :class:`_MissingMetricsFilter` on absl's logger, which orbax logs through."""
    logger = logging.getLogger("absl")
    if not any(isinstance(f, _MissingMetricsFilter) for f in logger.filters):
        logger.addFilter(_MissingMetricsFilter())


def _quiet_orbax_stragglers() -> None:
    """Installs (once) a filter for the "Event loop is closed" reports of reads orbax abandoned when a restore failed.

    Orbax reads a checkpoint's arrays concurrently on an event loop of its own;
    when one read fails it closes that loop while the sibling reads are still
    in flight, and each of them, on finishing, reports an unraisable
    ``RuntimeError: Event loop is closed`` (two or more tracebacks on stderr
    after the real error). Those reads' results are discarded anyway, so this
    filter drops exactly that report (raised by asyncio's ``_check_closed``)
    and passes every other one on to the hook it wraps. It is installed before
    the read, as the stragglers may finish before the error reaches recurrax.
    """
    # An abandoned read can also be a coroutine never started, which Python reports as a
    # RuntimeWarning when it is collected (seen once in a CI run, inside a later pytest.warns).
    # Installed on every call: warning filters are often reset per scope (pytest, catch_warnings).
    warnings.filterwarnings(
        "ignore", message=r"coroutine 'Store\._get_array_metadatas' was never awaited", category=RuntimeWarning
    )
    previous = sys.unraisablehook
    if getattr(previous, "_recurrax_stragglers", False):
        return

    def hook(unraisable: Any) -> None:
        exc, tb = unraisable.exc_value, unraisable.exc_traceback
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if not (
            isinstance(exc, RuntimeError)
            and str(exc) == "Event loop is closed"
            and tb is not None
            and tb.tb_frame.f_code.co_name == "_check_closed"
        ):
            previous(unraisable)

    hook._recurrax_stragglers = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
    # A sibling read that failed too, after the loop closed, is a task whose exception nobody
    # retrieves: asyncio logs it ("Task exception was never retrieved", with its traceback) when the
    # task is collected. Seen on jax 0.12 / orbax 0.12 in one of two CI runs.
    logging.getLogger("asyncio").addFilter(_AbandonedOrbaxReadFilter())


class _AbandonedOrbaxReadFilter(logging.Filter):
    """Drops asyncio's report of an orbax array read whose failure nobody retrieved (see above)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith("Task exception was never retrieved")
            and "coro=<async_deserialize()" in message
            and "orbax" in message
        )


def restore_model(directory: str | os.PathLike[str], model: nnx.Module, *, step: StepSpec = "latest") -> nnx.Module:
    """Loads a checkpoint's model state into ``model`` (in place, for inference) and returns it.

    ``model`` must have the architecture that was trained (same parameter
    shapes); build it as for training, then restore. ``step="best"`` needs a
    run that checkpointed with ``monitor=``.
    """
    monitor, mode = _recorded_monitor(directory) if step == "best" else (None, "min")
    checkpointer = Checkpointer(directory, monitor=monitor, mode=mode)
    try:
        restored = checkpointer.restore(model_target=nnx.as_pure(nnx.state(model)), step=step)
    finally:
        checkpointer.close()
    nnx.update(model, restored.model_state)
    return model


def _recorded_monitor(directory: str | os.PathLike[str]) -> tuple[str | None, Literal["min", "max"]]:
    """The monitor and mode recorded with the newest step that has metrics (None, "min" if none has)."""
    with Checkpointer(directory) as checkpointer:
        if not checkpointer.directory.is_dir():
            return None, "min"
        manager = checkpointer._get_manager()
        for step in reversed(checkpointer.all_steps()):
            metrics = manager.metrics(step)
            if isinstance(metrics, Mapping) and metrics.get("mode") in ("min", "max"):
                return str(metrics["monitor"]), metrics["mode"]
    return None, "min"


# ------------------------------------------------------------ flat array trees
def _leaf_name(key_path: tuple[Any, ...]) -> str:
    parts = []
    for k in key_path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts) or "<root>"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(x: Any) -> Any:
    return jax.random.key_data(x) if _is_key(x) else x


def _dtype_name(x: Any) -> str:
    return str(x.dtype) if hasattr(x, "dtype") else str(np.asarray(x).dtype)


def _flatten_named(tree: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    flat, spec = {}, {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = _leaf_name(key_path)
        if name in flat:
            raise ValueError(f"two leaves of the model state are both named {name!r}")
        flat[name] = _storable(leaf)
        spec[name] = [list(np.shape(leaf)), _dtype_name(leaf)]
    return flat, spec


def _flatten_indexed(tree: Any) -> tuple[dict[str, Any], list[list[Any]]]:
    leaves = jax.tree.leaves(tree)
    flat = {f"{i:05d}": _storable(leaf) for i, leaf in enumerate(leaves)}
    return flat, [[list(np.shape(leaf)), _dtype_name(leaf)] for leaf in leaves]


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    data = jax.eval_shape(jax.random.key_data, x) if _is_key(x) else x
    # Onto this process's device, not the one that saved: a checkpoint written
    # on a GPU must load on a CPU-only machine and the other way round.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(np.shape(data), data.dtype, sharding=device)


def _abstract_named(tree: Any) -> tuple[dict[str, jax.ShapeDtypeStruct], list[str]]:
    pairs = jax.tree_util.tree_flatten_with_path(tree)[0]
    names = [_leaf_name(p) for p, _ in pairs]
    return {n: _abstract(leaf) for n, (_, leaf) in zip(names, pairs, strict=True)}, names


def _abstract_indexed(tree: Any) -> dict[str, jax.ShapeDtypeStruct]:
    return {f"{i:05d}": _abstract(leaf) for i, leaf in enumerate(jax.tree.leaves(tree))}


def _spec_of(tree: Any, names: list[str] | None) -> Any:
    leaves = jax.tree.leaves(tree)
    specs = [[list(np.shape(leaf)), _dtype_name(leaf)] for leaf in leaves]
    return specs if names is None else dict(zip(names, specs, strict=True))


def _restored_leaf(target: Any, value: Any) -> Any:
    # Through host memory: orbax's arrays are committed to a device, fresh ones
    # are not, and jit would compile the train step again for the difference.
    value = jnp.asarray(np.asarray(value))
    if _is_key(target):
        return jax.random.wrap_key_data(value, impl=jax.random.key_impl(target))
    return value


def _unflatten_named(target: Any, flat: Mapping[str, Any]) -> Any:
    pairs, treedef = jax.tree_util.tree_flatten_with_path(target)
    leaves = [_restored_leaf(leaf, flat[_leaf_name(p)]) for p, leaf in pairs]
    return jax.tree.unflatten(treedef, leaves)


def _unflatten_indexed(target: Any, flat: Mapping[str, Any]) -> Any:
    leaves, treedef = jax.tree.flatten(target)
    return jax.tree.unflatten(treedef, [_restored_leaf(t, flat[f"{i:05d}"]) for i, t in enumerate(leaves)])


def _check_spec(path: Path, what: str, saved: Any, current: Any) -> None:
    """Raises a CheckpointError that names every leaf whose shape or dtype differs."""
    problems: list[str] = []
    if isinstance(current, dict):
        saved = dict(saved)
        for name in current.keys() - saved.keys():
            problems.append(f"{name!r} is in the {what} but not in the checkpoint")
        for name in saved.keys() - current.keys():
            problems.append(f"{name!r} is in the checkpoint but not in the {what}")
        for name in sorted(current.keys() & saved.keys()):
            problems += _leaf_problem(repr(name), saved[name], current[name])
    else:
        if len(saved) != len(current):
            problems.append(f"the checkpoint has {len(saved)} arrays, the {what} has {len(current)}")
        else:
            for i, (s, c) in enumerate(zip(saved, current, strict=True)):
                problems += _leaf_problem(f"leaf {i}", s, c)
    if problems:
        shown = "; ".join(sorted(problems)[:8]) + ("; ..." if len(problems) > 8 else "")
        raise CheckpointError(f"checkpoint {path} does not match the {what} ({len(problems)} difference(s)): {shown}")


def _leaf_problem(label: str, saved: list[Any], current: list[Any]) -> list[str]:
    (s_shape, s_dtype), (c_shape, c_dtype) = saved, current
    out = []
    if list(s_shape) != list(c_shape):
        out.append(f"{label} has shape {tuple(s_shape)} in the checkpoint but {tuple(c_shape)} now")
    if s_dtype != c_dtype:
        out.append(f"{label} has dtype {s_dtype} in the checkpoint but {c_dtype} now")
    return out
