"""MNIST-1D (Greydanus, 2020), generated offline by the ``mnist1d`` package."""

from __future__ import annotations

import random

import numpy as np

from recurrax.tasks._dataset import (
    Dataset,
    Split,
    TaskInfo,
    check_count,
    check_fraction,
    check_seed,
    majority_accuracy,
)

#: The ``mnist1d`` generator's seed for the published dataset.
MNIST1D_DEFAULT_SEED = 42


def _generate(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError("mnist1d needs the mnist1d package: pip install 'recurrax[tasks]'") from err
    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    # make_dataset seeds the global NumPy and `random` generators; put them back so
    # that building a task does not change the caller's random numbers. We call the
    # generator directly: get_dataset would try to download the published pickle.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data: dict[str, np.ndarray] = make_dataset(args)
        return data
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def mnist1d(
    *,
    num_samples: int = 5_000,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = MNIST1D_DEFAULT_SEED,
) -> Dataset:
    """MNIST-1D: ten 1-D digit templates, padded, scaled, sheared, translated and noised, 40 steps.

    The examples come from the ``mnist1d`` package's own generator
    (``mnist1d.data.make_dataset``), run locally: nothing is downloaded and
    nothing is written to disk. The generator's own cut is kept for the test
    split (its last ``test_fraction`` of examples: 1,000 with the defaults,
    which follow the published dataset's settings), and the validation split
    is drawn from its training part by ``seed``. Always predicting the most
    frequent training class scores about 0.1 (``info.baseline``).

    Shapes: inputs ``[N, 40, 1]`` float32, targets ``[N]`` int32 in 0..9, no lengths.

    Args:
      num_samples: examples generated in total (a multiple of 10 is exact; the
        generator makes ``num_samples // 10`` per class).
      validation_fraction: share of the generator's training part used for
        validation; 0 keeps it all for training (an empty validation split), the
        paper's 4,000 train / 1,000 test split with the defaults.
      test_fraction: share of all examples in the test split.
      seed: the generator's seed (42 is the published dataset's setting); also the validation draw.

    References:
      Greydanus, "Scaling down deep learning", arXiv:2011.14439, 2020.

    Example:
      >>> from recurrax.tasks import mnist1d
      >>> data = mnist1d(num_samples=200)
      >>> data.train.inputs.shape[1:], len(data.test)
      ((40, 1), 40)
      >>> no_validation = mnist1d(num_samples=200, validation_fraction=0)  # 5,000 gives the paper's 4,000/1,000
      >>> len(no_validation.train), len(no_validation.validation), len(no_validation.test)
      (160, 0, 40)
    """
    num_samples = check_count(num_samples, "num_samples", minimum=10)
    validation_fraction = check_fraction(validation_fraction, "validation_fraction", allow_zero=True)
    test_fraction = check_fraction(test_fraction, "test_fraction")
    seed = check_seed(seed)
    raw = _generate(num_samples - num_samples % 10, seed)
    xs = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)[..., None]
    ys = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int32)
    # The generator already shuffled the examples: its own train/test cut is kept
    # (its test examples), and validation comes out of its training part.
    num_test = round(len(ys) * test_fraction)
    num_pool = len(ys) - num_test
    num_validation = round(num_pool * validation_fraction)
    if min(num_test, num_pool - num_validation) < 1 or (validation_fraction > 0 and num_validation < 1):
        raise ValueError(
            f"num_samples={num_samples} is too few for validation_fraction={validation_fraction} and "
            f"test_fraction={test_fraction}: every split needs at least one example"
        )
    order = np.random.default_rng(seed).permutation(num_pool)
    pool_validation, pool_train = np.sort(order[:num_validation]), np.sort(order[num_validation:])
    full = Split(inputs=np.ascontiguousarray(xs), targets=ys)
    train, validation = full.subset(pool_train), full.subset(pool_validation)
    test = full.subset(slice(num_pool, None))
    info = TaskInfo(
        name="mnist1d",
        kind="multiclass",
        in_features=1,
        seq_len=xs.shape[1],
        num_classes=10,
        num_outputs=10,
        per_step=False,
        baseline_metric="accuracy",
        baseline=majority_accuracy(train.targets, test.targets),
        description="MNIST-1D (Greydanus 2020), 40 steps of 1 feature",
        baseline_description="always predicting the most frequent training class",
    )
    return Dataset(train=train, validation=validation, test=test, info=info)
