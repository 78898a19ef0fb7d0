"""Every built-in task by name, so that the command line and examples can pick one with a string."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from recurrax.tasks._adding import adding_problem
from recurrax.tasks._copy import copy_task
from recurrax.tasks._dataset import Dataset
from recurrax.tasks._digits import sequential_digits
from recurrax.tasks._mnist1d import mnist1d
from recurrax.tasks._selective_copy import selective_copy
from recurrax.tasks._sentiment import sentiment


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A registered task: its builder, and which builder argument sets the sequence length."""

    name: str
    build: Callable[..., Dataset]
    length_argument: str | None  # e.g. "seq_len" or "delay"; None when the length is fixed
    summary: str


_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec("adding", adding_problem, "seq_len", "adding problem: regression, length set by seq_len"),
        TaskSpec("copy", copy_task, "delay", "copy memory task: per-step classification, delay set by seq_len"),
        TaskSpec("digits-rows", partial(sequential_digits, "rows"), None, "8x8 digits row by row: 8 steps, 10 classes"),
        TaskSpec("digits-pixels", partial(sequential_digits, "pixels"), None, "8x8 digits pixel by pixel: 64 steps"),
        TaskSpec("mnist1d", mnist1d, None, "MNIST-1D: 40 steps, 10 classes"),
        TaskSpec("selective_copy", selective_copy, "seq_len", "selective copying: per-step classes, region by seq_len"),
        TaskSpec("sentiment", sentiment, "seq_len", "synthetic reviews: binary, variable lengths"),
    )
}


def task_names() -> tuple[str, ...]:
    """Names accepted by :func:`load_task`, sorted."""
    return tuple(sorted(_TASKS))


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` registered as ``name``."""
    if name not in _TASKS:
        raise ValueError(f"task must be one of {', '.join(task_names())}; got {name!r}")
    return _TASKS[name]


def load_task(name: str, *, seq_len: int | None = None, seed: int | None = None, **options: Any) -> Dataset:
    """Builds the task registered as ``name``.

    Args:
      name: one of :func:`task_names`.
      seq_len: the sequence length, for tasks where it is free (the adding
        problem's ``T``, the copy task's delay, the longest review); an error
        for tasks whose length is fixed.
      seed: the data seed; ``None`` keeps the builder's default (0, or 42 for
        MNIST-1D, the published dataset's setting).
      **options: more keyword arguments of the task's builder (e.g. ``num_train``).

    Example:
      >>> from recurrax.tasks import load_task
      >>> load_task("adding", seq_len=20, num_train=4, num_validation=2, num_test=2).info.seq_len
      20
    """
    spec = task_spec(name)
    parameters = inspect.signature(spec.build).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        accepted = sorted(p for p in parameters if p not in ("mode", "seed", spec.length_argument))
        raise ValueError(f"task {name!r} has no option {unknown[0]!r}; its options are {accepted}")
    kwargs = dict(options)
    if seq_len is not None:
        if spec.length_argument is None:
            raise ValueError(f"task {name!r} has a fixed sequence length; seq_len must not be given (got {seq_len})")
        kwargs[spec.length_argument] = seq_len
    if seed is not None:
        kwargs["seed"] = seed
    return spec.build(**kwargs)
