"""A synthetic binary sequence-classification task: do positive words outnumber negative ones?"""

from __future__ import annotations

import numpy as np

from recurrax.tasks._dataset import Dataset, Split, TaskInfo, check_count, majority_accuracy, split_rngs


def _sentiment_split(
    rng: np.random.Generator,
    num_examples: int,
    seq_len: int,
    min_length: int,
    vocab_size: int,
    num_sentiment_words: int,
    sentiment_rate: float,
) -> Split:
    k = num_sentiment_words
    tokens_parts, lengths_parts, labels_parts = [], [], []
    collected = 0
    # Rejection sampling: draw batches and keep the reviews without a tie, so the
    # label is never ambiguous and both classes are equally likely by symmetry.
    while collected < num_examples:
        n = num_examples - collected
        lengths = rng.integers(min_length, seq_len + 1, size=n)
        is_sentiment = rng.random((n, seq_len)) < sentiment_rate
        sentiment_word = rng.integers(0, 2 * k, size=(n, seq_len))
        neutral_word = rng.integers(2 * k, vocab_size, size=(n, seq_len))
        tokens = np.where(is_sentiment, sentiment_word, neutral_word)
        valid = np.arange(seq_len)[None, :] < lengths[:, None]
        positive = np.sum(valid & (tokens < k), axis=1)
        negative = np.sum(valid & (tokens >= k) & (tokens < 2 * k), axis=1)
        keep = positive != negative
        tokens_parts.append(np.where(valid, tokens, -1)[keep])
        lengths_parts.append(lengths[keep])
        labels_parts.append((positive > negative)[keep])
        collected += int(keep.sum())
    tokens = np.concatenate(tokens_parts)[:num_examples]
    lengths = np.concatenate(lengths_parts)[:num_examples].astype(np.int32)
    labels = np.concatenate(labels_parts)[:num_examples].astype(np.float32)[:, None]
    # One-hot words; padding (token -1) becomes an all-zero vector.
    inputs = (tokens[..., None] == np.arange(vocab_size)).astype(np.float32)
    return Split(inputs=inputs, targets=labels, lengths=lengths)


def sentiment(
    seq_len: int = 50,
    *,
    min_length: int | None = None,
    vocab_size: int = 20,
    num_sentiment_words: int = 3,
    sentiment_rate: float = 0.3,
    num_train: int = 5_000,
    num_validation: int = 500,
    num_test: int = 1_000,
    seed: int = 0,
) -> Dataset:
    """Binary classification of variable-length synthetic "reviews": more positive than negative words?

    A vocabulary of ``V = vocab_size`` words holds ``k = num_sentiment_words``
    positive words (ids ``0..k-1``), ``k`` negative ones (``k..2k-1``) and
    neutral ones. Each review has a length drawn uniformly from
    ``[min_length, T]``; each word is a sentiment word with probability
    ``sentiment_rate`` (positive or negative with equal odds), otherwise a
    neutral word. The label is 1 when positive words outnumber negative ones;
    ties are redrawn, so the classes are balanced. The model must count over
    the whole review and stop at its length, as the classic IMDB-sentiment
    LSTM does (``info.baseline``: majority-class accuracy, about 0.5).

    Shapes: inputs ``[N, T, V]`` float32 (one-hot words, zero vectors after
    the end), targets ``[N, 1]`` float32 in {0, 1} (the shape of the one
    logit a binary model returns), lengths ``[N]`` int32.

    Args:
      seq_len: ``T``, the longest review (the padded length).
      min_length: the shortest review (default ``T // 2``).
      vocab_size: ``V`` > ``2 * num_sentiment_words``.
      num_sentiment_words: ``k``, positive words (and as many negative ones).
      sentiment_rate: probability in (0, 1] that a word carries sentiment.
      num_train, num_validation, num_test: examples per split.
      seed: the same seed gives the same arrays; each split has its own stream.

    Example:
      >>> from recurrax.tasks import sentiment
      >>> data = sentiment(12, num_train=6, num_validation=2, num_test=2)
      >>> data.train.inputs.shape, data.train.targets.shape, data.train.lengths.shape
      ((6, 12, 20), (6, 1), (6,))
    """
    seq_len = check_count(seq_len, "seq_len")
    min_length = max(1, seq_len // 2) if min_length is None else check_count(min_length, "min_length")
    if min_length > seq_len:
        raise ValueError(f"min_length must be <= seq_len={seq_len}, got {min_length}")
    num_sentiment_words = check_count(num_sentiment_words, "num_sentiment_words")
    vocab_size = check_count(vocab_size, "vocab_size")
    if vocab_size <= 2 * num_sentiment_words:
        raise ValueError(
            f"vocab_size must exceed 2 * num_sentiment_words = {2 * num_sentiment_words} (room for neutral "
            f"words), got {vocab_size}"
        )
    if (
        isinstance(sentiment_rate, bool)
        or not isinstance(sentiment_rate, (int, float))
        or not (0.0 < sentiment_rate <= 1.0)
    ):
        raise ValueError(f"sentiment_rate must be a number in (0, 1], got {sentiment_rate!r}")
    sizes = [
        check_count(n, name)
        for n, name in ((num_train, "num_train"), (num_validation, "num_validation"), (num_test, "num_test"))
    ]
    train, validation, test = (
        _sentiment_split(rng, n, seq_len, min_length, vocab_size, num_sentiment_words, float(sentiment_rate))
        for rng, n in zip(split_rngs(seed), sizes, strict=True)
    )
    info = TaskInfo(
        name="sentiment",
        kind="binary",
        in_features=vocab_size,
        seq_len=seq_len,
        num_classes=2,
        num_outputs=1,
        per_step=False,
        baseline_metric="accuracy",
        baseline=majority_accuracy(train.targets, test.targets),
        description=f"synthetic reviews of {min_length}-{seq_len} words: more positive than negative words?",
        baseline_description="always predicting the most frequent training class",
    )
    return Dataset(train=train, validation=validation, test=test, info=info)
