"""The ready-made model that fits a task's description."""

from __future__ import annotations

from typing import Any

from flax import nnx

from recurrax._cell import Cell
from recurrax.nn._sequence_models import SequenceClassifier, SequenceModel, SequenceRegressor
from recurrax.tasks import TaskInfo


def model_for_task(
    info: TaskInfo,
    *,
    cell: str | Cell = "lstm",
    hidden_size: int = 128,
    rngs: nnx.Rngs,
    **options: Any,
) -> SequenceModel:
    """A :class:`SequenceClassifier` (binary, multiclass) or :class:`SequenceRegressor` for ``info``.

    The input and output sizes come from the task; a per-step task gets
    ``readout="sequence"``. ``options`` go to the model (``dense_size``,
    ``dropout``, ``readout``, backbone options).

    Example:
      >>> from flax import nnx
      >>> from recurrax.models import model_for_task
      >>> from recurrax.tasks import adding_problem
      >>> data = adding_problem(20, num_train=4, num_validation=2, num_test=2)
      >>> type(model_for_task(data.info, hidden_size=8, rngs=nnx.Rngs(0))).__name__
      'SequenceRegressor'
    """
    if not isinstance(info, TaskInfo):
        raise TypeError(f"info must be a recurrax.tasks.TaskInfo, got {type(info).__name__}")
    options.setdefault("readout", "sequence" if info.per_step else "last")
    model_type = SequenceRegressor if info.kind == "regression" else SequenceClassifier
    return model_type(info.in_features, info.num_outputs, cell=cell, hidden_size=hidden_size, rngs=rngs, **options)
