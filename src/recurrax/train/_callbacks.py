"""Hooks into the fit loop: a base class, early stopping, and a plain-function hook."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import jax

if TYPE_CHECKING:
    from recurrax.train._trainer import Trainer

logger = logging.getLogger(__name__)


class Callback:
    """Base class of fit-loop hooks; override the ones you need.

    Every hook gets the :class:`~recurrax.train.Trainer`: ``trainer.step``,
    ``trainer.epoch``, ``trainer.history``, ``trainer.model`` (call
    ``trainer.sync_model()`` first to see the current weights mid-epoch), and
    ``trainer.stop_training`` (set it to True to stop after this step).
    A callback whose progress must survive a resume returns it from
    :meth:`state_dict` (JSON data) and takes it back in :meth:`load_state_dict`.
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first step (also when resuming)."""

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        """Before the first step of ``epoch`` (0-based)."""

    def on_step_end(self, trainer: Trainer, step: int, metrics: Mapping[str, jax.Array]) -> None:
        """After optimizer step ``step`` (1-based). ``metrics`` are device scalars:
        reading one (``float(metrics["loss"])``) waits for the device."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        """After ``epoch`` (0-based) and its validation; ``logs`` is the epoch's history row."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last step (also after early stopping or an exception-free stop)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable progress, saved in checkpoints."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned."""


class LambdaCallback(Callback):
    """A callback from plain functions, for quick research hooks.

    Example:
      >>> losses = []
      >>> cb = LambdaCallback(on_epoch_end=lambda trainer, epoch, logs: losses.append(logs["loss"]))
    """

    def __init__(
        self,
        *,
        on_train_begin: Callable[[Trainer], None] | None = None,
        on_epoch_begin: Callable[[Trainer, int], None] | None = None,
        on_step_end: Callable[[Trainer, int, Mapping[str, jax.Array]], None] | None = None,
        on_epoch_end: Callable[[Trainer, int, Mapping[str, float]], None] | None = None,
        on_train_end: Callable[[Trainer], None] | None = None,
    ):
        self._hooks = {
            "on_train_begin": on_train_begin,
            "on_epoch_begin": on_epoch_begin,
            "on_step_end": on_step_end,
            "on_epoch_end": on_epoch_end,
            "on_train_end": on_train_end,
        }
        for name, fn in self._hooks.items():
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {fn!r}")

    def on_train_begin(self, trainer: Trainer) -> None:
        self._call("on_train_begin", trainer)

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        self._call("on_epoch_begin", trainer, epoch)

    def on_step_end(self, trainer: Trainer, step: int, metrics: Mapping[str, jax.Array]) -> None:
        self._call("on_step_end", trainer, step, metrics)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        self._call("on_epoch_end", trainer, epoch, logs)

    def on_train_end(self, trainer: Trainer) -> None:
        self._call("on_train_end", trainer)

    def _call(self, name: str, *args: Any) -> None:
        fn = self._hooks[name]
        if fn is not None:
            fn(*args)


class EarlyStopping(Callback):
    """Stops training when an epoch metric has not improved for ``patience`` epochs.

    Args:
      monitor: the epoch metric to watch (``"val_loss"``, ``"val_accuracy"``, or a train metric).
      mode: ``"min"`` or ``"max"``.
      patience: epochs without improvement before stopping.
      min_delta: an improvement must beat the best by more than this.
      restore_best: at the end, put back the weights of the best epoch (kept in
        memory; after a resume they come from the run's best checkpoint, so the
        checkpointer must monitor the same metric).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        mode: Literal["min", "max"] = "min",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = False,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be a positive int, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, float(min_delta)
        self.restore_best = restore_best
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_step: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_state: Any = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.restore_best and self.best_epoch is not None and self._best_state is None:
            ckpt = trainer.checkpointer
            if ckpt is None or ckpt.monitor != self.monitor or ckpt.mode != self.mode:
                raise ValueError(
                    "EarlyStopping(restore_best=True) resumed without the best weights in memory; resume with a "
                    f"Checkpointer(monitor={self.monitor!r}, mode={self.mode!r}) so they can be read back"
                )

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping monitors {self.monitor!r}, but the epoch metrics are {sorted(logs)}; "
                "pass validation_data for val_* metrics"
            )
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.best_step, self.wait = value, epoch, trainer.step, 0
            if self.restore_best:
                self._best_state = trainer.training_state()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            if self.best_epoch is None:
                logger.info(
                    "early stopping after epoch %d: %s has been NaN for %d epochs", epoch + 1, self.monitor, self.wait
                )
            else:
                logger.info(
                    "early stopping after epoch %d: %s has not improved on %.6g (epoch %d) for %d epochs",
                    epoch + 1,
                    self.monitor,
                    self.best,
                    self.best_epoch + 1,
                    self.wait,
                )

    def on_train_end(self, trainer: Trainer) -> None:
        if not self.restore_best or self.best_epoch is None:
            return
        if self._best_state is not None:
            trainer.load_training_state(self._best_state, weights_only=True)
        else:
            # Resumed: the weights of the best epoch are in the checkpoint saved at its step.
            assert self.best_step is not None
            trainer.load_checkpoint_weights(self.best_step)
        logger.info("restored the weights of epoch %d (%s %.6g)", self.best_epoch + 1, self.monitor, self.best)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_step": self.best_step,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.best_step, self.wait, self.stopped_epoch = state["best_step"], state["wait"], state["stopped_epoch"]
        self._best_state = None

    def _improved(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta
