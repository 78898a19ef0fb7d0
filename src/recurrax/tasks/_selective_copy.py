"""The selective copying task of Gu & Dao (2023): recall tokens scattered among noise, in order."""

from __future__ import annotations

import numpy as np

from recurrax.tasks._copy import one_hot_split, recall_info
from recurrax.tasks._dataset import Dataset, Split, check_count, generated_dataset


def _selective_copy_split(
    rng: np.random.Generator, num_examples: int, seq_len: int, num_tokens: int, num_symbols: int
) -> Split:
    blank, marker = num_symbols, num_symbols + 1
    total = seq_len + num_tokens
    symbols = rng.integers(0, num_symbols, size=(num_examples, num_tokens))
    # num_tokens distinct positions per example, uniform over the region: the first columns of a random
    # permutation (argsort of uniform keys), sorted so that the symbols keep their order.
    positions = np.sort(np.argsort(rng.random((num_examples, seq_len)), axis=1)[:, :num_tokens], axis=1)
    tokens = np.full((num_examples, total), blank, np.int32)
    np.put_along_axis(tokens, positions, symbols, axis=1)
    tokens[:, seq_len:] = marker
    targets = np.full((num_examples, total), blank, np.int32)
    targets[:, seq_len:] = symbols
    return one_hot_split(tokens, targets, num_symbols)


def selective_copy(
    seq_len: int = 256,
    *,
    num_tokens: int = 16,
    num_symbols: int = 14,
    num_train: int | None = None,
    num_validation: int = 1_000,
    num_test: int = 1_000,
    seed: int = 0,
    infinite: bool = False,
) -> Dataset:
    """Selective copying: recall ``num_tokens`` symbols scattered at random steps among noise, in order.

    With ``K = num_symbols`` data symbols ``0..K-1``, a blank (noise) ``K`` and a
    marker ``K+1``, each input has ``T = seq_len + M`` tokens, ``M = num_tokens``:
    the first ``seq_len`` steps hold the symbols ``s_1 … s_M`` at ``M`` distinct
    positions ``p_1 < … < p_M`` drawn uniformly per example, blanks elsewhere;
    then ``M`` markers ask for the symbols back::

        step       0 …  p_1  …  p_M  … seq_len-1   seq_len … T-1
        inputs     blank s_1 blank s_M blank        marker × M
        targets    blank × seq_len                  s_1 … s_M

    Unlike the copy task (:func:`~recurrax.tasks.copy_task`), where the symbols
    always sit at steps ``0..L-1``, when a symbol arrives and how many came
    before it vary per example, and only the content tells: a single
    minGRU/minLSTM layer, whose gates see only ``x_t``, writes the ``i``-th
    symbol exactly as it writes the first, and Feng et al. (2024) find it fails
    where three layers succeed. This is the layout of Gu & Dao's synthetic (the S4/Mamba repositories'
    ``torch_copying_data(..., variable=True)``: noise, tokens at sorted random
    positions, one marker per symbol to recall). Gu & Dao train at
    ``seq_len = 4096``, ``M = 16`` and a vocabulary of 16 (``K = 14`` with the
    blank and the marker); the default ``seq_len`` is shorter so that the
    default splits stay small (the length is free: ``load_task``'s ``seq_len``).

    Inputs are one-hot; the targets are a class id at every step
    (``info.per_step``), as in the copy task, so the loss counts the blanks too.
    A model with no memory predicts blanks and then guesses uniformly, scoring a
    mean per-step cross-entropy of ``M·log(K) / T`` (``info.baseline``) and a
    recall accuracy of ``1/K`` on the last ``M`` steps.

    Shapes: inputs ``[N, T, K + 2]`` float32, targets ``[N, T]`` int32, no lengths.

    With ``infinite=True`` ``train`` is an endless
    :class:`~recurrax.tasks.FreshBatches` source: ``train.batch(i, B)`` draws
    ``B`` new examples from ``(seed, i)`` alone (train it with
    ``fit(..., steps=N)``). Validation and test stay fixed arrays, the same as
    without ``infinite``.

    Args:
      seq_len: steps of the region the symbols are scattered in, >= ``num_tokens``.
      num_tokens: ``M``, symbols to recall, >= 1.
      num_symbols: ``K`` >= 2, the alphabet of the recalled symbols.
      num_train: training examples (default 10,000); must not be given with
        ``infinite=True``.
      num_validation, num_test: examples per split.
      seed: the same seed gives the same arrays; each split has its own stream.
      infinite: fresh training examples for every batch instead of a fixed set.

    References:
      Gu & Dao, "Mamba: Linear-time sequence modeling with selective state
      spaces", 2023 (section 3.1, appendix E.1). Arjovsky, Shah & Bengio,
      "Unitary evolution recurrent neural networks", ICML 2016 (the copy task it
      varies). Feng et al., "Were RNNs all we needed?", 2024 (Table 1: minGRU
      and minLSTM on this task, one to three layers).

    Example:
      >>> from recurrax.tasks import selective_copy
      >>> data = selective_copy(12, num_tokens=3, num_symbols=4, num_train=4, num_validation=2, num_test=2)
      >>> data.train.inputs.shape, data.train.targets.shape
      ((4, 15, 6), (4, 15))
      >>> selective_copy(12, num_tokens=3, infinite=True, seed=1).train
      FreshBatches(task='selective_copy', seq_len=12, num_tokens=3, num_symbols=14, seed=1)
    """
    seq_len = check_count(seq_len, "seq_len")
    num_tokens = check_count(num_tokens, "num_tokens")
    num_symbols = check_count(num_symbols, "num_symbols", minimum=2)
    if num_tokens > seq_len:
        raise ValueError(f"num_tokens must be <= seq_len={seq_len} (one step per scattered symbol), got {num_tokens}")
    total = seq_len + num_tokens
    info = recall_info(
        "selective_copy",
        num_symbols=num_symbols,
        recalled=num_tokens,
        total=total,
        description=(
            f"selective copying, {seq_len} steps: recall {num_tokens} of {num_symbols} symbols "
            "scattered among blanks, in order"
        ),
        baseline_description="the memoryless strategy, M·log(K)/T",
    )
    return generated_dataset(
        _selective_copy_split,
        {"seq_len": seq_len, "num_tokens": num_tokens, "num_symbols": num_symbols},
        info,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
        seed=seed,
        infinite=infinite,
    )
