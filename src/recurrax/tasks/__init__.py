"""Built-in sequence tasks, deterministic by seed, with nothing downloaded.

Each builder returns a :class:`Dataset`: ``train``/``validation``/``test``
:class:`Split`s of NumPy arrays (inputs ``[N, T, D]`` float32, targets,
optional ``lengths[N]``) and a :class:`TaskInfo` (kind, classes, baseline).
The generated tasks (adding, copy, selective copying) also take
``infinite=True``: ``train`` is then a :class:`FreshBatches` source of fresh
examples for every batch.
"""

from recurrax.tasks._adding import ADDING_BASELINE_MSE, adding_problem
from recurrax.tasks._copy import copy_task
from recurrax.tasks._dataset import TASK_KINDS, Dataset, FreshBatches, Split, TaskInfo, TaskKind
from recurrax.tasks._digits import sequential_digits
from recurrax.tasks._mnist1d import MNIST1D_DEFAULT_SEED, mnist1d
from recurrax.tasks._registry import TaskSpec, load_task, task_names, task_spec
from recurrax.tasks._selective_copy import selective_copy
from recurrax.tasks._sentiment import sentiment

__all__ = [
    "ADDING_BASELINE_MSE",
    "MNIST1D_DEFAULT_SEED",
    "TASK_KINDS",
    "Dataset",
    "FreshBatches",
    "Split",
    "TaskInfo",
    "TaskKind",
    "TaskSpec",
    "adding_problem",
    "copy_task",
    "load_task",
    "mnist1d",
    "selective_copy",
    "sentiment",
    "sequential_digits",
    "task_names",
    "task_spec",
]
