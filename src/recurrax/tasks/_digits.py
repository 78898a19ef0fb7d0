"""Sequential digits: scikit-learn's bundled 8×8 handwritten digits read as a sequence."""

from __future__ import annotations

from typing import Literal

import numpy as np

from recurrax._validation import check_choice
from recurrax.tasks._dataset import Dataset, Split, TaskInfo, majority_accuracy, partition

_MODES = ("rows", "pixels")
_MAX_INTENSITY = 16.0  # the bundled images hold integers 0..16


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "sequential_digits needs scikit-learn (its digits ship with it, nothing is downloaded): "
            "pip install 'recurrax[tasks]'"
        ) from err
    bunch = load_digits()
    return np.asarray(bunch.images, np.float32), np.asarray(bunch.target, np.int32)


def sequential_digits(
    mode: Literal["rows", "pixels"] = "rows",
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """The 1,797 8×8 digits of scikit-learn (UCI optdigits test set), one row or one pixel per step.

    ``mode="rows"`` reads each image top to bottom, 8 steps of 8 pixels;
    ``mode="pixels"`` reads it in raster order, 64 steps of 1 pixel (a small
    cousin of pixel-by-pixel MNIST, Le et al. 2015). Intensities are scaled
    to [0, 1]. The examples are shuffled by ``seed`` and cut into splits.
    ``info.baseline`` is the test accuracy of always predicting the most
    frequent training class (about 0.1).

    Shapes: inputs ``[N, 8, 8]`` or ``[N, 64, 1]`` float32, targets ``[N]``
    int32 in 0..9, no lengths.

    Args:
      mode: ``"rows"`` or ``"pixels"``.
      validation_fraction, test_fraction: shares of the 1,797 examples.
      seed: the shuffle before splitting.

    References:
      Alpaydin & Kaynak, "Optical recognition of handwritten digits", UCI
      Machine Learning Repository, 1998 (the data scikit-learn bundles).

    Example:
      >>> from recurrax.tasks import sequential_digits
      >>> data = sequential_digits("pixels")
      >>> data.train.inputs.shape[1:], data.info.num_classes
      ((64, 1), 10)
    """
    check_choice(mode, "mode", _MODES)
    images, labels = _load_digits()
    images = images / np.float32(_MAX_INTENSITY)
    inputs = images if mode == "rows" else images.reshape(len(images), 64, 1)
    full = Split(inputs=np.ascontiguousarray(inputs), targets=labels)
    train_idx, validation_idx, test_idx = partition(
        len(full), validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed
    )
    train, validation, test = full.subset(train_idx), full.subset(validation_idx), full.subset(test_idx)
    info = TaskInfo(
        name=f"digits-{mode}",
        kind="multiclass",
        in_features=inputs.shape[2],
        seq_len=inputs.shape[1],
        num_classes=10,
        num_outputs=10,
        per_step=False,
        baseline_metric="accuracy",
        baseline=majority_accuracy(train.targets, test.targets),
        description=f"scikit-learn 8x8 digits, one {mode[:-1]} per step",
        baseline_description="always predicting the most frequent training class",
    )
    return Dataset(train=train, validation=validation, test=test, info=info)
