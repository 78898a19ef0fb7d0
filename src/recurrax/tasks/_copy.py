"""The copy (delayed-recall) memory task of Arjovsky, Shah & Bengio (2016)."""

from __future__ import annotations

import math

import numpy as np

from recurrax.tasks._dataset import Dataset, Split, TaskInfo, check_count, generated_dataset


def _copy_split(rng: np.random.Generator, num_examples: int, delay: int, copy_length: int, num_symbols: int) -> Split:
    blank, delimiter = num_symbols, num_symbols + 1
    total = delay + 2 * copy_length
    symbols = rng.integers(0, num_symbols, size=(num_examples, copy_length))
    tokens = np.full((num_examples, total), blank, np.int32)
    tokens[:, :copy_length] = symbols
    tokens[:, copy_length + delay - 1] = delimiter
    targets = np.full((num_examples, total), blank, np.int32)
    targets[:, -copy_length:] = symbols
    return one_hot_split(tokens, targets, num_symbols)


def one_hot_split(tokens: np.ndarray, targets: np.ndarray, num_symbols: int) -> Split:
    """A recall task's split: ``tokens[N, T]`` (``K`` symbols, a blank, a cue) one-hot, ``targets[N, T]`` class ids."""
    return Split(inputs=np.eye(num_symbols + 2, dtype=np.float32)[tokens], targets=targets)


def recall_info(
    name: str, *, num_symbols: int, recalled: int, total: int, description: str, baseline_description: str
) -> TaskInfo:
    """A recall task's :class:`TaskInfo`: ``K + 2`` classes per step, the memoryless baseline ``M·log(K)/T``."""
    return TaskInfo(
        name=name,
        kind="multiclass",
        in_features=num_symbols + 2,
        seq_len=total,
        num_classes=num_symbols + 2,
        num_outputs=num_symbols + 2,
        per_step=True,
        baseline_metric="cross_entropy",
        baseline=recalled * math.log(num_symbols) / total,
        description=description,
        baseline_description=baseline_description,
    )


def copy_task(
    delay: int = 100,
    *,
    copy_length: int = 10,
    num_symbols: int = 8,
    num_train: int | None = None,
    num_validation: int = 1_000,
    num_test: int = 1_000,
    seed: int = 0,
    infinite: bool = False,
) -> Dataset:
    """The copy memory task: remember ``copy_length`` symbols for ``delay`` steps, then replay them.

    With ``K = num_symbols`` data symbols ``0..K-1``, a blank ``K`` and a
    delimiter ``K+1``, each input has ``T = delay + 2 * copy_length`` tokens::

        s_1 … s_L   blank × (delay - 1)   delimiter   blank × L      (inputs)
        blank × (delay + L)                            s_1 … s_L      (targets)

    as in Arjovsky et al. (2016) with ``L = 10``, ``K = 8``. Inputs are one-hot;
    the targets are a class id at every step (``info.per_step``). A model with
    no memory predicts blanks and then guesses uniformly, scoring a mean
    per-step cross-entropy of ``L·log(K) / T`` (``info.baseline``).

    Shapes: inputs ``[N, T, K + 2]`` float32, targets ``[N, T]`` int32, no lengths.

    With ``infinite=True``, as Arjovsky et al. train, ``train`` is an endless
    :class:`~recurrax.tasks.FreshBatches` source: ``train.batch(i, B)`` draws
    ``B`` new examples from ``(seed, i)`` alone (train it with
    ``fit(..., steps=N)``). Validation and test stay fixed arrays, the same as
    without ``infinite``.

    Args:
      delay: steps between the end of the symbols and the delimiter's step plus
        one (Arjovsky's ``T``), >= 1.
      copy_length: ``L``, symbols to remember.
      num_symbols: ``K`` >= 2, the alphabet of the remembered symbols.
      num_train: training examples (default 10,000); must not be given with
        ``infinite=True``.
      num_validation, num_test: examples per split.
      seed: the same seed gives the same arrays; each split has its own stream.
      infinite: fresh training examples for every batch instead of a fixed set.

    References:
      Arjovsky, Shah & Bengio, "Unitary evolution recurrent neural networks",
      ICML 2016 (section 4.1). Hochreiter & Schmidhuber, "Long short-term
      memory", Neural Computation 1997 (the original long-delay experiments).

    Example:
      >>> from recurrax.tasks import copy_task
      >>> data = copy_task(5, copy_length=3, num_train=4, num_validation=2, num_test=2)
      >>> data.train.inputs.shape, data.train.targets.shape
      ((4, 11, 10), (4, 11))
      >>> copy_task(5, copy_length=3, infinite=True, seed=1).train
      FreshBatches(task='copy', delay=5, copy_length=3, num_symbols=8, seed=1)
    """
    delay = check_count(delay, "delay")
    copy_length = check_count(copy_length, "copy_length")
    num_symbols = check_count(num_symbols, "num_symbols", minimum=2)
    total = delay + 2 * copy_length
    info = recall_info(
        "copy",
        num_symbols=num_symbols,
        recalled=copy_length,
        total=total,
        description=f"copy task, delay {delay}: replay {copy_length} of {num_symbols} symbols after the delimiter",
        baseline_description="the memoryless strategy, L·log(K)/T",
    )
    return generated_dataset(
        _copy_split,
        {"delay": delay, "copy_length": copy_length, "num_symbols": num_symbols},
        info,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        seed=seed,
        infinite=infinite,
    )
