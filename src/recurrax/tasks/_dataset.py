"""What every built-in task returns: three splits of arrays and a description.

A generated task built with ``infinite=True`` has an endless training source
(:class:`FreshBatches`, fresh examples in every batch) in place of the train
split; its validation and test splits stay arrays.

Shapes (``N`` examples, ``T`` steps, ``D`` input features, ``O`` outputs):
  inputs   ``[N, T, D]`` float32;
  targets  regression ``[N, O]`` float32; binary ``[N, 1]`` float32 in {0, 1}
           (the shape of the model's one logit); multiclass ``[N]`` int32 class
           ids; per-step tasks add a time axis (``[N, T, O]`` / ``[N, T]``);
  lengths  ``[N]`` int32 valid steps per example, or ``None`` (all ``T``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

TaskKind = Literal["regression", "binary", "multiclass"]
TASK_KINDS: tuple[str, ...] = ("regression", "binary", "multiclass")
BaselineMetric = Literal["mse", "accuracy", "cross_entropy"]


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """One split of a task: ``inputs[N, T, D]``, ``targets`` and optional ``lengths[N]``."""

    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, np.ndarray) or self.inputs.ndim != 3 or self.inputs.dtype != np.float32:
            raise ValueError(f"inputs must be a float32 array [N, T, D], got {_describe(self.inputs)}")
        n = self.inputs.shape[0]
        if not isinstance(self.targets, np.ndarray) or self.targets.ndim < 1 or self.targets.shape[0] != n:
            raise ValueError(f"targets must be an array with {n} rows (one per input), got {_describe(self.targets)}")
        if self.lengths is not None:
            lengths = self.lengths
            if not isinstance(lengths, np.ndarray) or lengths.shape != (n,) or lengths.dtype != np.int32:
                raise ValueError(f"lengths must be an int32 array [{n}], got {_describe(lengths)}")
            if n and (lengths.min() < 1 or lengths.max() > self.inputs.shape[1]):
                raise ValueError(
                    f"lengths must lie in [1, T={self.inputs.shape[1]}], got [{lengths.min()}, {lengths.max()}]"
                )

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def subset(self, index: Any) -> Split:
        """The examples at ``index`` (an int array, a slice or a boolean mask) as a new split."""
        return Split(
            inputs=self.inputs[index],
            targets=self.targets[index],
            lengths=None if self.lengths is None else self.lengths[index],
        )


@dataclasses.dataclass(frozen=True, init=False)
class FreshBatches:
    """An endless training source: ``batch(index, batch_size)`` draws new examples for every batch.

    The ``train`` of a generated task built with ``infinite=True`` (e.g.
    ``adding_problem(T, infinite=True)``), as the papers train: every batch
    is new data. Batch ``index`` is drawn by the same function that makes the
    task's fixed splits, from a generator seeded by ``(seed, index)`` alone::

        rng = numpy.random.default_rng(numpy.random.SeedSequence(seed, spawn_key=(0, index)))
        generate(rng, batch_size, **options)  # a Split of batch_size examples

    so a run resumed at batch ``index`` draws what an uninterrupted one would
    have. The batches are children of the stream of the fixed-set train split
    (``spawn_key=(0,)``), independent of the validation ``(1,)`` and test
    ``(2,)`` streams, which :func:`split_rngs` uses in both modes.

    It is the ``BatchSource`` of ``recurrax.train.fit``: train with
    ``fit(..., steps=N)``. It has no length and no ``.inputs`` (a clear error
    says so), and its ``repr`` names the task, its options and the seed,
    deterministically, so a checkpoint can refuse a different source.

    Attributes:
      task: the task's registry name (e.g. ``"adding"``).
      generate: ``(rng, num_examples, **options) -> Split``, the task's split function.
      options: the task's fixed arguments, as ``(name, value)`` pairs in order.
      seed: the source's seed.

    Example:
      >>> from recurrax.tasks import adding_problem
      >>> source = adding_problem(20, infinite=True, seed=3).train
      >>> source
      FreshBatches(task='adding', seq_len=20, seed=3)
      >>> source.batch(0, 4).inputs.shape
      (4, 20, 2)
    """

    task: str
    generate: Callable[..., Split]
    options: tuple[tuple[str, Any], ...]
    seed: int

    def __init__(
        self,
        task: str,
        generate: Callable[..., Split],
        options: Mapping[str, Any] | tuple[tuple[str, Any], ...] = (),
        *,
        seed: int = 0,
    ) -> None:
        pairs = tuple(options.items()) if isinstance(options, Mapping) else tuple(options)
        object.__setattr__(self, "task", task)
        object.__setattr__(self, "generate", generate)
        object.__setattr__(self, "options", pairs)
        object.__setattr__(self, "seed", check_seed(seed))

    def batch(self, index: int, batch_size: int) -> Split:
        """Batch ``index`` (0, 1, 2, ...): a :class:`Split` of ``batch_size`` fresh examples."""
        index = check_count(index, "index", minimum=0)
        batch_size = check_count(batch_size, "batch_size")
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(_TRAIN_STREAM, index)))
        return self.generate(rng, batch_size, **dict(self.options))

    def __repr__(self) -> str:
        options = "".join(f", {name}={value!r}" for name, value in self.options)
        return f"{type(self).__name__}(task={self.task!r}{options}, seed={self.seed})"

    def __len__(self) -> int:
        raise TypeError(f"{self!r} is {_ENDLESS}")

    def __bool__(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        # Only for the names of a Split, so that hasattr(source, "inputs") stays False.
        if name in _SPLIT_ATTRIBUTES:
            raise AttributeError(f"{self!r} has no .{name}: it is {_ENDLESS}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_TRAIN_STREAM = 0  # the train split's child of SeedSequence(seed); validation and test are 1 and 2
_SPLIT_ATTRIBUTES = frozenset({"inputs", "targets", "lengths", "subset"})
_ENDLESS = (
    "an endless source of training batches (infinite=True), not an array split: draw batch i with "
    ".batch(i, batch_size), or train with fit(..., steps=N)"
)


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a task is, so that models, losses and reports can be built from it.

    Attributes:
      name: the task's registry name (e.g. ``"adding"``).
      kind: ``"regression"``, ``"binary"`` or ``"multiclass"``.
      in_features: ``D``, features per step (``input_size``: its old, deprecated name).
      seq_len: ``T``, steps per example (the padded length when ``lengths`` vary).
      num_classes: classes of a multiclass task (2 for binary, ``None`` for regression).
      num_outputs: model outputs per prediction: ``O`` for regression, 1 for
        binary (one logit), ``num_classes`` for multiclass (logits).
      per_step: targets have a time axis (a prediction at every step).
      baseline_metric: the metric ``baseline`` is measured in.
      baseline: what a model with no memory of the sequence scores (the bar
        to beat), e.g. 1/6 MSE for the adding problem.
      description: one line on the task.
      baseline_description: how ``baseline`` is obtained (e.g. "always predicting 1").
    """

    name: str
    kind: TaskKind
    in_features: int
    seq_len: int
    num_classes: int | None
    num_outputs: int
    per_step: bool
    baseline_metric: BaselineMetric
    baseline: float
    description: str
    baseline_description: str

    @property
    def input_size(self) -> int:
        """Deprecated: :attr:`in_features`."""
        warnings.warn("TaskInfo.input_size is deprecated; use TaskInfo.in_features", DeprecationWarning, stacklevel=2)
        return self.in_features

    @property
    def loss(self) -> str:
        """The ``recurrax.train`` loss for this kind of task (on logits for classification)."""
        return _LOSS_BY_KIND[self.kind]

    @property
    def metrics(self) -> tuple[str, ...]:
        """The ``recurrax.train`` metrics worth reporting besides the loss."""
        return _METRICS_BY_KIND[self.kind]

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"kind must be one of {TASK_KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)


_LOSS_BY_KIND = {"regression": "mse", "binary": "binary_cross_entropy", "multiclass": "softmax_cross_entropy"}
_METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "regression": (),
    "binary": ("binary_accuracy",),
    "multiclass": ("accuracy",),
}


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A task's ``train``, ``validation`` and ``test`` splits plus its :class:`TaskInfo`.

    ``train`` is a :class:`Split`, or for a generated task built with
    ``infinite=True`` an endless :class:`FreshBatches` source (see
    :attr:`infinite`); ``validation`` and ``test`` are always :class:`Split` objects.
    """

    train: Split | FreshBatches
    validation: Split
    test: Split
    info: TaskInfo

    def __post_init__(self) -> None:
        for name in ("train", "validation", "test"):
            split = getattr(self, name)
            if isinstance(split, FreshBatches):
                if name != "train":
                    raise TypeError(f"{name} must be a Split of arrays; only train may be an endless source")
                split = split.batch(0, 1)
            if split.inputs.shape[1:] != (self.info.seq_len, self.info.in_features):
                raise ValueError(
                    f"{name}.inputs has shape {split.inputs.shape}, expected [N, {self.info.seq_len}, "
                    f"{self.info.in_features}] from the task info"
                )

    @property
    def infinite(self) -> bool:
        """Whether ``train`` is an endless :class:`FreshBatches` source rather than a :class:`Split`."""
        return isinstance(self.train, FreshBatches)

    @property
    def splits(self) -> dict[str, Split | FreshBatches]:
        """The three splits by name, in order train, validation, test."""
        return {"train": self.train, "validation": self.validation, "test": self.test}


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def check_count(value: Any, name: str, *, minimum: int = 1) -> int:
    """Checks that ``value`` is an int ``>= minimum`` (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return int(value)


def check_seed(seed: Any) -> int:
    """Checks that ``seed`` is a non-negative int."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__} {seed!r}")
    return int(seed)


def check_fraction(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float in ``(0, 1)`` (``[0, 1)`` with ``allow_zero``)."""
    low = "[0" if allow_zero else "(0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in {low}, 1), got {type(value).__name__} {value!r}")
    if not (0.0 <= value < 1.0 if allow_zero else 0.0 < value < 1.0):
        raise ValueError(f"{name} must be a number in {low}, 1), got {value!r}")
    return float(value)


def split_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators for train, validation and test.

    Each split has its own stream, so asking for more test examples does not
    change the training set.
    """
    train, validation, test = np.random.SeedSequence(check_seed(seed)).spawn(3)
    return np.random.default_rng(train), np.random.default_rng(validation), np.random.default_rng(test)


def partition(
    num_examples: int, *, validation_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffles ``range(num_examples)`` by ``seed`` and cuts it into train/validation/test indices."""
    validation_fraction = check_fraction(validation_fraction, "validation_fraction")
    test_fraction = check_fraction(test_fraction, "test_fraction")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction must be < 1, got {validation_fraction} + {test_fraction}"
        )
    order = np.random.default_rng(check_seed(seed)).permutation(num_examples)
    num_test = round(num_examples * test_fraction)
    num_validation = round(num_examples * validation_fraction)
    if min(num_test, num_validation, num_examples - num_test - num_validation) < 1:
        raise ValueError(
            f"{num_examples} examples are too few for validation_fraction={validation_fraction} and "
            f"test_fraction={test_fraction}: every split needs at least one example"
        )
    test = np.sort(order[:num_test])
    validation = np.sort(order[num_test : num_test + num_validation])
    train = np.sort(order[num_test + num_validation :])
    return train, validation, test


def majority_accuracy(train_targets: np.ndarray, test_targets: np.ndarray) -> float:
    """Accuracy on ``test_targets`` of always predicting the most frequent training class."""
    classes, counts = np.unique(np.asarray(train_targets).astype(np.int64), return_counts=True)
    majority = classes[np.argmax(counts)]
    return float(np.mean(np.asarray(test_targets).astype(np.int64) == majority))


#: Training examples of a generated task's fixed train split when ``num_train`` is not given.
DEFAULT_NUM_TRAIN = 10_000


def generated_dataset(
    generate: Callable[..., Split],
    options: Mapping[str, Any],
    info: TaskInfo,
    *,
    num_train: int | None,
    num_validation: int,
    num_test: int,
    seed: int,
    infinite: bool,
) -> Dataset:
    """A generated task's :class:`Dataset`: ``generate(rng, n, **options)`` makes every split.

    Validation and test come from their own streams of :func:`split_rngs` in
    both modes, so they are the same arrays with and without ``infinite``.
    With ``infinite=False`` the train split is ``num_train`` examples
    (default :data:`DEFAULT_NUM_TRAIN`) from the train stream; with
    ``infinite=True`` it is a :class:`FreshBatches` source and ``num_train``
    must not be given.
    """
    if not isinstance(infinite, bool):
        raise TypeError(f"infinite must be a bool, got {type(infinite).__name__} {infinite!r}")
    if infinite and num_train is not None:
        raise ValueError(
            f"num_train must not be given with infinite=True (got {num_train!r}): the training data is endless, "
            "fresh examples for every batch; train for a number of steps instead"
        )
    sizes = [
        check_count(n, name)
        for n, name in (
            (DEFAULT_NUM_TRAIN if num_train is None else num_train, "num_train"),
            (num_validation, "num_validation"),
            (num_test, "num_test"),
        )
    ]
    seed = check_seed(seed)
    train_rng, validation_rng, test_rng = split_rngs(seed)
    if infinite:
        train: Split | FreshBatches = FreshBatches(info.name, generate, options, seed=seed)
    else:
        train = generate(train_rng, sizes[0], **options)
    return Dataset(
        train=train,
        validation=generate(validation_rng, sizes[1], **options),
        test=generate(test_rng, sizes[2], **options),
        info=info,
    )
