"""Built-in tasks: each checked against an independent per-example construction."""

from __future__ import annotations

import json
import math
import pickle
import random
import socket
from collections.abc import Mapping

import numpy as np
import pytest

from recurrax import tasks
from recurrax.tasks import Split, adding_problem, copy_task, load_task, mnist1d, sentiment, sequential_digits

SMALL = {"num_train": 6, "num_validation": 3, "num_test": 4}


# ------------------------------------------------------------------- adding
def check_adding_split(split, seq_len):
    """Every example of ``split`` is an adding-problem example of length ``seq_len``, built by hand."""
    assert isinstance(split, Split)
    assert split.inputs.dtype == np.float32 and split.targets.dtype == np.float32
    assert split.inputs.shape[1:] == (seq_len, 2) and split.targets.shape == (len(split), 1)
    assert split.lengths is None
    for x, y in zip(split.inputs, split.targets, strict=True):
        marked = np.flatnonzero(x[:, 1])
        assert set(np.unique(x[:, 1])) <= {0.0, 1.0}
        assert len(marked) == 2 and marked[0] < seq_len // 2 <= marked[1]
        assert np.all((x[:, 0] >= 0) & (x[:, 0] < 1))
        assert y[0] == np.float32(float(x[marked[0], 0]) + float(x[marked[1], 0]))


def test_adding_matches_its_definition():
    data = adding_problem(9, **SMALL, seed=3)
    for split in data.splits.values():
        check_adding_split(split, 9)


def test_adding_baseline_is_the_mse_of_predicting_one():
    data = adding_problem(4, num_train=1, num_validation=1, num_test=40_000, seed=1)
    mse = float(np.mean((data.test.targets.astype(np.float64) - 1.0) ** 2))
    assert data.info.baseline == pytest.approx(1 / 6)
    assert mse == pytest.approx(data.info.baseline, abs=0.005)
    assert data.info.kind == "regression" and data.info.num_outputs == 1


def test_same_seed_same_data_and_splits_are_independent_streams():
    a = adding_problem(6, **SMALL, seed=5)
    b = adding_problem(6, **SMALL, seed=5)
    c = adding_problem(6, **SMALL, seed=6)
    more_test = adding_problem(6, num_train=6, num_validation=3, num_test=50, seed=5)
    np.testing.assert_array_equal(a.train.inputs, b.train.inputs)
    np.testing.assert_array_equal(a.test.targets, b.test.targets)
    assert not np.array_equal(a.train.inputs, c.train.inputs)
    assert not np.array_equal(a.train.inputs, a.test.inputs[:6])
    np.testing.assert_array_equal(a.train.inputs, more_test.train.inputs)


# --------------------------------------------------------------------- copy
def check_copy_split(split, delay, length, symbols):
    """Every example of ``split`` has Arjovsky's copy-task layout, built by hand."""
    blank, delimiter = symbols, symbols + 1
    total = delay + 2 * length
    assert isinstance(split, Split) and split.lengths is None
    assert split.inputs.dtype == np.float32 and split.targets.dtype == np.int32
    assert split.inputs.shape[1:] == (total, symbols + 2) and split.targets.shape == (len(split), total)
    for x, y in zip(split.inputs, split.targets, strict=True):
        assert np.all(x.sum(-1) == 1.0)
        tokens = x.argmax(-1)
        remembered = list(tokens[:length])
        assert all(0 <= s < symbols for s in remembered)
        expected_in = remembered + [blank] * (delay - 1) + [delimiter] + [blank] * length
        expected_out = [blank] * (delay + length) + remembered
        assert list(tokens) == expected_in and list(y) == expected_out


def test_copy_matches_arjovsky_layout():
    data = copy_task(4, copy_length=3, num_symbols=5, **SMALL, seed=2)
    for split in data.splits.values():
        check_copy_split(split, 4, 3, 5)


def test_copy_baseline_is_the_memoryless_cross_entropy():
    delay, length, symbols = 7, 4, 6
    data = copy_task(delay, copy_length=length, num_symbols=symbols, **SMALL)
    # The memoryless strategy: certain blank where the target is always blank, uniform over symbols elsewhere.
    targets = data.test.targets
    always_blank = np.all(targets == symbols, axis=0)
    per_step_ce = np.where(always_blank, 0.0, math.log(symbols))
    assert data.info.baseline == pytest.approx(float(per_step_ce.mean()))
    assert data.info.per_step and data.info.num_classes == symbols + 2


# ------------------------------------------------------------------- digits
# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_digits_rows_and_pixels_are_the_sklearn_images():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rows, pixels = sequential_digits("rows", seed=4), sequential_digits("pixels", seed=4)
    seen = {}
    for name in ("train", "validation", "test"):
        r, p = rows.splits[name], pixels.splits[name]
        np.testing.assert_array_equal(r.inputs.reshape(len(r), 64, 1), p.inputs)
        np.testing.assert_array_equal(r.targets, p.targets)
        for x, y in zip(r.inputs, r.targets, strict=True):
            seen.setdefault((x.tobytes(), int(y)), 0)
            seen[(x.tobytes(), int(y))] += 1
    expected = {}
    for image, label in zip(bunch.images, bunch.target, strict=True):
        key = ((image / 16.0).astype(np.float32).tobytes(), int(label))
        expected[key] = expected.get(key, 0) + 1
    assert seen == expected  # every image exactly once across the three splits
    assert (len(rows.train), len(rows.validation), len(rows.test)) == (1258, 180, 359)
    assert rows.info.seq_len == 8 and pixels.info.seq_len == 64 and rows.info.baseline < 0.2


def test_digits_seed_changes_the_split():
    a, b = sequential_digits(seed=0), sequential_digits(seed=1)
    assert not np.array_equal(a.test.targets, b.test.targets)
    np.testing.assert_array_equal(a.test.inputs, sequential_digits(seed=0).test.inputs)


# ------------------------------------------------------------------ mnist1d
def test_mnist1d_is_generated_offline_and_leaves_global_rngs_alone(monkeypatch, tmp_path):
    from mnist1d.data import get_dataset_args, make_dataset

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.chdir(tmp_path)
    np.random.seed(123)
    random.seed(123)
    want_np, want_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    data = mnist1d(num_samples=100, seed=7)
    assert (np.random.random(), random.random()) == (want_np, want_py)
    assert list(tmp_path.iterdir()) == []  # nothing cached on disk

    args = get_dataset_args()
    args.num_samples, args.seed = 100, 7
    reference = make_dataset(args)
    np.testing.assert_array_equal(data.test.inputs[..., 0], reference["x_test"].astype(np.float32))
    np.testing.assert_array_equal(data.test.targets, reference["y_test"])
    pool = np.concatenate([data.train.inputs, data.validation.inputs])[..., 0]
    assert sorted(map(bytes, pool)) == sorted(map(bytes, reference["x"].astype(np.float32)))
    assert data.info.seq_len == 40 and data.info.in_features == 1 and len(data.test) == 20


# ---------------------------------------------------------------- sentiment
def test_sentiment_labels_count_words_within_each_length():
    data = sentiment(10, min_length=3, vocab_size=9, num_sentiment_words=2, **SMALL, seed=8)
    for split in data.splits.values():
        assert split.targets.dtype == np.float32 and split.lengths.dtype == np.int32
        for x, y, n in zip(split.inputs, split.targets, split.lengths, strict=True):
            assert 3 <= n <= 10
            assert np.all(x[:n].sum(-1) == 1.0) and np.all(x[n:] == 0.0)
            words = x[:n].argmax(-1)
            positive, negative = np.sum(words < 2), np.sum((words >= 2) & (words < 4))
            assert positive != negative and y.shape == (1,) and y[0] == float(positive > negative)


def test_sentiment_classes_are_balanced():
    data = sentiment(20, num_train=2000, num_validation=1, num_test=1, seed=0)
    assert abs(float(data.train.targets.mean()) - 0.5) < 0.04
    assert data.info.kind == "binary" and data.info.num_outputs == 1


# ----------------------------------------------------------------- registry
def test_every_registered_task_loads_by_name():
    small = {
        "adding": SMALL,
        "copy": SMALL,
        "selective_copy": SMALL,
        "sentiment": SMALL,
        "mnist1d": {"num_samples": 100},
        "digits-rows": {},
        "digits-pixels": {},
    }
    assert set(tasks.task_names()) == set(small)
    for name in tasks.task_names():
        data = load_task(name, **small[name])
        assert data.info.name == name
        assert data.info.kind in tasks.TASK_KINDS
    assert load_task("copy", seq_len=3, copy_length=2, **SMALL).info.seq_len == 3 + 2 * 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: load_task("nope"), "task must be one of"),
        (lambda: load_task("mnist1d", seq_len=10), "fixed sequence length"),
        (lambda: load_task("adding", num_trian=3), "no option 'num_trian'"),
        (lambda: adding_problem(1), "seq_len must be an int >= 2"),
        (lambda: adding_problem(True), "seq_len must be an int"),
        (lambda: copy_task(5, num_symbols=1), "num_symbols must be an int >= 2"),
        (lambda: sentiment(10, min_length=11), "min_length must be <= seq_len=10"),
        (lambda: sentiment(10, vocab_size=6), "vocab_size must exceed"),
        (lambda: sentiment(10, sentiment_rate=0.0), "sentiment_rate"),
        (lambda: sequential_digits("columns"), "mode must be one of"),
        (lambda: sequential_digits(test_fraction=0.95), "validation_fraction \\+ test_fraction must be < 1"),
        (lambda: mnist1d(num_samples=10, validation_fraction=0.01), "too few"),
        (lambda: adding_problem(5, seed=-1), "seed must be a non-negative int"),
    ],
)
def test_bad_arguments_name_the_argument(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_split_checks_its_arrays():
    x = np.zeros((2, 3, 1), np.float32)
    with pytest.raises(ValueError, match="inputs must be a float32 array"):
        Split(inputs=x.astype(np.float64), targets=np.zeros(2))
    with pytest.raises(ValueError, match="targets must be an array with 2 rows"):
        Split(inputs=x, targets=np.zeros(3))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=3\]"):
        Split(inputs=x, targets=np.zeros(2), lengths=np.array([1, 4], np.int32))
    assert len(Split(inputs=x, targets=np.zeros(2)).subset(np.array([1]))) == 1


def test_loss_and_metric_names_are_known_to_train():
    from recurrax.train._losses import LOSSES, METRICS

    kinds = {}
    for name in ("adding", "copy", "sentiment"):
        info = load_task(name, **SMALL).info
        kinds[info.kind] = info
        assert info.loss in LOSSES and set(info.metrics) <= set(METRICS)
    assert {k: v.loss for k, v in kinds.items()} == {
        "regression": "mse",
        "multiclass": "softmax_cross_entropy",
        "binary": "binary_cross_entropy",
    }
    assert json.loads(json.dumps(kinds["binary"].to_dict()))["baseline_description"]


# ----------------------------------------------------- infinite (fresh batches)
NO_TRAIN = {"num_validation": 3, "num_test": 4}


def test_fresh_batches_are_adding_examples_drawn_from_seed_and_index_alone():
    source = adding_problem(9, infinite=True, **NO_TRAIN, seed=3).train
    for index in (0, 1, 7):
        check_adding_split(source.batch(index, 5), 9)
    again = adding_problem(9, infinite=True, seed=3).train  # other split sizes: the same batches
    np.testing.assert_array_equal(source.batch(4, 6).inputs, again.batch(4, 6).inputs)
    np.testing.assert_array_equal(source.batch(4, 6).targets, again.batch(np.int64(4), 6).targets)
    assert source.batch(4, 6).inputs.tobytes() == again.batch(4, 6).inputs.tobytes()
    assert not np.array_equal(source.batch(0, 6).inputs, source.batch(1, 6).inputs)
    assert not np.array_equal(
        source.batch(0, 6).inputs, adding_problem(9, infinite=True, seed=4).train.batch(0, 6).inputs
    )
    assert source == again and source != adding_problem(10, infinite=True, seed=3).train


def test_fresh_adding_batches_have_the_fixed_sets_distribution():
    big = adding_problem(4, infinite=True, seed=1).train.batch(0, 40_000)
    assert float(np.mean((big.targets.astype(np.float64) - 1.0) ** 2)) == pytest.approx(1 / 6, abs=0.005)
    # Each marker position is uniform over its half, as in the fixed split.
    marked = big.inputs[..., 1]
    np.testing.assert_allclose(marked.mean(0), [0.5, 0.5, 0.5, 0.5], atol=0.02)


def test_fresh_batches_are_copy_examples():
    data = copy_task(4, copy_length=3, num_symbols=5, infinite=True, **NO_TRAIN, seed=2)
    for index in (0, 3):
        check_copy_split(data.train.batch(index, 4), 4, 3, 5)
    for split in (data.validation, data.test):
        check_copy_split(split, 4, 3, 5)
    assert repr(data.train) == "FreshBatches(task='copy', delay=4, copy_length=3, num_symbols=5, seed=2)"


def test_validation_and_test_stay_fixed_and_independent_of_the_training_batches():
    fixed = adding_problem(6, **SMALL, seed=5)
    fresh = adding_problem(6, infinite=True, **NO_TRAIN, seed=5)
    assert fresh.infinite and not fixed.infinite
    # The same arrays as without infinite=True: their own streams in both modes.
    np.testing.assert_array_equal(fresh.validation.inputs, fixed.validation.inputs)
    np.testing.assert_array_equal(fresh.test.targets, fixed.test.targets)
    held_out = np.concatenate([fresh.validation.inputs[..., 0], fresh.test.inputs[..., 0], fixed.train.inputs[..., 0]])
    drawn = np.concatenate([fresh.train.batch(i, 8).inputs[..., 0] for i in range(20)])
    assert not set(map(bytes, held_out)) & set(map(bytes, drawn))
    assert len(set(map(bytes, drawn))) == len(drawn)  # no example drawn twice


def test_fresh_batches_are_the_trainers_batch_source():
    data = load_task("adding", seq_len=7, infinite=True, seed=2, **NO_TRAIN)
    source = data.train
    assert isinstance(source, tasks.FreshBatches) and data.splits["train"] is source
    # What the trainer tests to tell an endless source from a dataset of arrays.
    assert not isinstance(source, Mapping) and not hasattr(source, "inputs") and callable(source.batch)
    assert repr(source) == "FreshBatches(task='adding', seq_len=7, seed=2)"
    assert repr(source) == repr(pickle.loads(pickle.dumps(source)))
    assert bool(source)
    assert load_task("copy", seq_len=5, infinite=True).train.batch(0, 2).inputs.shape == (2, 5 + 2 * 10, 10)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: len(s), TypeError, r"FreshBatches\(task='adding', seq_len=5, seed=0\) is an endless source"),
        (lambda s: s.inputs, AttributeError, r"has no \.inputs: .*fit\(\.\.\., steps=N\)"),
        (lambda s: s.subset(slice(0, 2)), AttributeError, r"has no \.subset"),
        (lambda s: s.batch(-1, 4), ValueError, "index must be an int >= 0, got -1"),
        (lambda s: s.batch(1.0, 4), TypeError, "index must be an int"),
        (lambda s: s.batch(0, 0), ValueError, "batch_size must be an int >= 1, got 0"),
        (lambda s: s.batch(0, True), TypeError, "batch_size must be an int"),
        (lambda s: adding_problem(5, infinite=True, num_train=100), ValueError, "num_train must not be given"),
        (lambda s: copy_task(5, infinite=True, num_train=100), ValueError, "num_train must not be given"),
        (lambda s: adding_problem(5, infinite="yes"), TypeError, "infinite must be a bool"),
    ],
)
def test_fresh_batches_refuse_what_needs_arrays(call, error, message):
    with pytest.raises(error, match=message):
        call(adding_problem(5, infinite=True, num_validation=1, num_test=1).train)
