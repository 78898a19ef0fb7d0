"""Callback dispatch: each hook to every callback in order, and their saved states found again by key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import jax

from recurrax.train._callbacks import Callback

if TYPE_CHECKING:
    from recurrax.train._trainer import Trainer


class CallbackList:
    """The callbacks of one ``fit`` call, called in the order given."""

    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")

    def on_train_begin(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(trainer)

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(trainer, epoch)

    def on_step_end(self, trainer: Trainer, step: int, metrics: Mapping[str, jax.Array]) -> None:
        for cb in self.callbacks:
            cb.on_step_end(trainer, step, metrics)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(trainer, epoch, logs)

    def on_train_end(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.on_train_end(trainer)

    def state_dict(self) -> list[tuple[str, dict[str, Any]]]:
        """``[(key, callback.state_dict()), ...]``, keyed like ``"EarlyStopping#0"`` (JSON data)."""
        return [(key, cb.state_dict()) for key, cb in self._keyed()]

    def load_state_dict(self, states: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Gives every callback the state saved under its key; one without a saved state keeps its own."""
        saved = dict(states)
        for key, cb in self._keyed():
            if key in saved:
                cb.load_state_dict(saved[key])

    def _keyed(self) -> list[tuple[str, Callback]]:
        """Keys by class and order among callbacks of that class, so a resumed run's callbacks find their states."""
        seen: dict[str, int] = {}
        out = []
        for cb in self.callbacks:
            name = type(cb).__qualname__
            out.append((f"{name}#{seen.get(name, 0)}", cb))
            seen[name] = seen.get(name, 0) + 1
        return out
