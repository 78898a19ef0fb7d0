"""The adding problem (Hochreiter & Schmidhuber, 1997): add two marked numbers of a long sequence."""

from __future__ import annotations

import numpy as np

from recurrax.tasks._dataset import Dataset, Split, TaskInfo, check_count, generated_dataset

#: MSE of always predicting 1 = Var(u1 + u2) for u1, u2 ~ U(0, 1) = 2/12.
ADDING_BASELINE_MSE = 1.0 / 6.0


def _adding_split(rng: np.random.Generator, num_examples: int, seq_len: int) -> Split:
    values = rng.uniform(0.0, 1.0, size=(num_examples, seq_len)).astype(np.float32)
    half = seq_len // 2
    first = rng.integers(0, half, size=num_examples)
    second = rng.integers(half, seq_len, size=num_examples)
    markers = np.zeros((num_examples, seq_len), np.float32)
    rows = np.arange(num_examples)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    # The sum in float64 then cast, so the target is the float32 nearest to the exact sum.
    target = values[rows, first].astype(np.float64) + values[rows, second].astype(np.float64)
    return Split(
        inputs=np.stack([values, markers], axis=-1),
        targets=target.astype(np.float32)[:, None],
    )


def adding_problem(
    seq_len: int = 100,
    *,
    num_train: int | None = None,
    num_validation: int = 1_000,
    num_test: int = 1_000,
    seed: int = 0,
    infinite: bool = False,
) -> Dataset:
    """The adding problem: ``T`` steps of two features, predict the sum of the two marked values.

    Each step carries ``[value, marker]`` with ``value ~ U(0, 1)``. Exactly two
    markers are 1: one in the first half (``t < T // 2``), one in the second
    half. The target is the sum of the two marked values. This is the form of
    Hochreiter & Schmidhuber's (1997) experiment 4 used by Le et al. (2015) and
    Arjovsky et al. (2016). Predicting the mean, 1, scores MSE 1/6 ≈ 0.167
    (``info.baseline``); a model has learned the task well below 0.01.

    Shapes: inputs ``[N, T, 2]`` float32, targets ``[N, 1]`` float32, no lengths.

    With ``infinite=True``, as the papers train, ``train`` is an endless
    :class:`~recurrax.tasks.FreshBatches` source: ``train.batch(i, B)`` draws
    ``B`` new examples from ``(seed, i)`` alone (train it with
    ``fit(..., steps=N)``). Validation and test stay fixed arrays, the same as
    without ``infinite``.

    Args:
      seq_len: ``T`` >= 2; the distance the model must carry the first value.
      num_train: training examples (default 10,000); must not be given with
        ``infinite=True``.
      num_validation, num_test: examples per split.
      seed: the same seed gives the same arrays; each split has its own stream.
      infinite: fresh training examples for every batch instead of a fixed set.

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997.
      Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of
      rectified linear units", arXiv:1504.00941, 2015.

    Example:
      >>> from recurrax.tasks import adding_problem
      >>> data = adding_problem(50, num_train=8, num_validation=4, num_test=4)
      >>> data.train.inputs.shape, data.train.targets.shape, round(data.info.baseline, 3)
      ((8, 50, 2), (8, 1), 0.167)
      >>> fresh = adding_problem(50, infinite=True, num_validation=4, num_test=4)
      >>> fresh.train.batch(0, 16).inputs.shape, len(fresh.validation)
      ((16, 50, 2), 4)
    """
    seq_len = check_count(seq_len, "seq_len", minimum=2)
    info = TaskInfo(
        name="adding",
        kind="regression",
        in_features=2,
        seq_len=seq_len,
        num_classes=None,
        num_outputs=1,
        per_step=False,
        baseline_metric="mse",
        baseline=ADDING_BASELINE_MSE,
        description=f"adding problem, T={seq_len}: the sum of the two marked values",
        baseline_description="always predicting 1",
    )
    return generated_dataset(
        _adding_split,
        {"seq_len": seq_len},
        info,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        seed=seed,
        infinite=infinite,
    )
