"""Checkpoints of a ``fit`` run: when to save, what a save holds for the trainer, and exact resume.

A checkpoint's ``meta["trainer"]`` holds the loop position (step, epoch, batch
within the epoch), the stop flag, the running epoch sums, the history, the
callbacks' states and the settings an exact resume needs unchanged (``"fit"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flax import nnx

from recurrax.train._callback_list import CallbackList
from recurrax.train._checkpoint import Checkpointer
from recurrax.train._history import History

if TYPE_CHECKING:
    from recurrax.train._trainer import Trainer


class FitCheckpoints:
    """Saves one ``fit`` call's state through ``checkpointer`` and resumes it exactly.

    ``settings`` are what must not change between a run and its resume (the
    number of examples, batch size, shuffling, seed, ...): a change is refused by name.
    With ``asynchronous``, a save returns once the state is off the device and
    the files are written while training goes on (:meth:`finish` waits for them).
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        callbacks: CallbackList,
        settings: Mapping[str, Any],
        *,
        asynchronous: bool = False,
    ):
        self.checkpointer, self.callbacks, self.settings = checkpointer, callbacks, dict(settings)
        self.asynchronous = asynchronous
        self._last_saved: int | None = None
        # The input pipeline's iterator state, saved with each checkpoint (set by the loop when it reads
        # through one), and the state a resume read back (None: the checkpoint has none).
        self.input_state: Callable[[], dict[str, Any] | None] | None = None
        self.restored_input: dict[str, Any] | None = None

    def resume(self, trainer: Trainer) -> None:
        """Puts the latest checkpoint, if there is one, back into ``trainer`` and the callbacks."""
        if self.checkpointer.latest_step() is not None:
            self._restore(trainer)
        self._last_saved = trainer.step

    def after_step(self, trainer: Trainer, step_before: int, epoch_logs: Mapping[str, float] | None) -> None:
        """Saves if the step count crossed a multiple of ``every_steps``, or if the epoch
        that just ended (``epoch_logs``, else None) reached a new best ``monitor`` value."""
        monitor = self.checkpointer.monitor
        metric = epoch_logs.get(monitor) if epoch_logs is not None and monitor is not None else None
        every = self.checkpointer.every_steps
        if (every is not None and trainer.step // every > step_before // every) or (
            metric is not None and self.checkpointer.is_improvement(float(metric))
        ):
            self._save(trainer, metric)

    def at_end(self, trainer: Trainer) -> None:
        """Saves the final state unless it is already saved (or nothing was trained)."""
        if self._last_saved != trainer.step and trainer.step not in [0, *self.checkpointer.all_steps()]:
            self._save(trainer, None)

    def _save(self, trainer: Trainer, metric: float | None) -> None:
        """One checkpoint of ``trainer`` at its current step; ``metric`` is ``monitor``'s value, if measured."""
        trainer._flush()
        meta = {"trainer": self._trainer_meta(trainer)}
        # The trainer's own arrays, sharded as trained: orbax writes each shard from the process holding it.
        state = trainer._model_state()
        self.checkpointer.save(
            trainer.step,
            model_state=state,
            opt_state=trainer.opt_state,
            meta=meta,
            metric=metric,
            wait=not self.asynchronous,
        )
        self._last_saved = trainer.step

    def finish(self) -> None:
        """Waits for a save still being written (training never ends with a checkpoint half on disk)."""
        self.checkpointer.wait_until_finished()

    def _trainer_meta(self, trainer: Trainer) -> dict[str, Any]:
        return {
            "step": trainer.step,
            "epoch": trainer.epoch,
            "position": trainer.position,
            "stop_training": trainer.stop_training,
            "epoch_totals": trainer._epoch_totals,
            "history": trainer.history.to_dict(),
            "callbacks": self.callbacks.state_dict(),
            "fit": self.settings,
            **({} if self.input_state is None else {"input_pipeline": self.input_state()}),
        }

    def _restore(self, trainer: Trainer) -> None:
        target = nnx.as_pure(nnx.state(trainer.sync_model()))
        restored = self.checkpointer.restore(model_target=target, opt_target=trainer.opt_state, step="latest")
        saved = restored.meta.get("trainer")
        if saved is None:
            raise ValueError(f"checkpoint {restored.path} holds no trainer state (it was not written by fit)")
        self._check_settings(restored.path, saved["fit"])
        trainer._set_model_state(restored.model_state)
        trainer._set_opt_state(restored.opt_state)
        trainer.step, trainer.epoch, trainer.position = saved["step"], saved["epoch"], saved["position"]
        trainer.stop_training = saved["stop_training"]
        trainer._epoch_totals = {k: list(v) for k, v in saved["epoch_totals"].items()}
        trainer.history = History.from_dict(saved["history"])
        trainer._pending = []
        self.restored_input = saved.get("input_pipeline")
        # The best step needs no restoring: orbax reads it from the metrics saved with the steps,
        # all of them at or before this one (the newest).
        self.callbacks.load_state_dict(saved["callbacks"])

    def _check_settings(self, path: Path, saved: Mapping[str, Any]) -> None:
        changed = {k: (saved.get(k), v) for k, v in self.settings.items() if saved.get(k) != v}
        if changed:
            detail = ", ".join(f"{k}: {a!r} then, {b!r} now" for k, (a, b) in changed.items())
            raise ValueError(f"cannot resume exactly from {path}: the run's settings changed ({detail})")
