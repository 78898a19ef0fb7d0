"""Selective copying: each example checked against a per-example construction from its own positions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recurrax.tasks import FreshBatches, Split, load_task, selective_copy

SMALL = {"num_train": 6, "num_validation": 3, "num_test": 4}


def check_selective_copy_split(split, seq_len, num_tokens, num_symbols):
    """Every example of ``split`` is a selective-copy example, rebuilt by hand from where its symbols sit."""
    blank, marker = num_symbols, num_symbols + 1
    total = seq_len + num_tokens
    assert isinstance(split, Split) and split.lengths is None
    assert split.inputs.dtype == np.float32 and split.targets.dtype == np.int32
    assert split.inputs.shape[1:] == (total, num_symbols + 2) and split.targets.shape == (len(split), total)
    for x, y in zip(split.inputs, split.targets, strict=True):
        assert np.all(x.sum(-1) == 1.0) and set(np.unique(x)) == {0.0, 1.0}
        tokens = [int(t) for t in x.argmax(-1)]
        positions = [t for t in range(seq_len) if tokens[t] != blank]
        assert len(positions) == num_tokens  # distinct positions, all inside the region
        symbols = [tokens[t] for t in positions]
        assert all(0 <= s < num_symbols for s in symbols)
        expected_in = [blank] * seq_len + [marker] * num_tokens
        for t, s in zip(positions, symbols, strict=True):
            expected_in[t] = s
        assert tokens == expected_in
        # The loss sees every step, as in the copy task: blanks to predict, then the symbols in input order.
        assert [int(t) for t in y] == [blank] * seq_len + symbols


def test_layout_matches_gu_and_dao():
    data = selective_copy(9, num_tokens=4, num_symbols=5, **SMALL, seed=2)
    for split in data.splits.values():
        check_selective_copy_split(split, 9, 4, 5)
    info = data.info
    assert (info.name, info.kind, info.per_step, info.seq_len) == ("selective_copy", "multiclass", True, 13)
    assert info.in_features == info.num_classes == info.num_outputs == 7


def test_every_step_of_the_region_can_hold_a_symbol():
    # num_tokens == seq_len fills the region; with fewer, the positions are spread over all of it, not a prefix.
    full = selective_copy(3, num_tokens=3, num_symbols=4, **SMALL, seed=1)
    check_selective_copy_split(full.train, 3, 3, 4)
    many = selective_copy(6, num_tokens=2, num_symbols=3, num_train=400, num_validation=1, num_test=1).train
    occupied = many.inputs[:, :6, 3] == 0.0  # not blank
    assert occupied.sum(1).tolist() == [2] * 400
    np.testing.assert_allclose(occupied.mean(0), [2 / 6] * 6, atol=0.08)
    first = occupied.argmax(1)
    assert set(first.tolist()) == set(range(5))  # a pair can start anywhere but the last step


def test_baseline_is_the_memoryless_cross_entropy():
    seq_len, num_tokens, num_symbols = 7, 3, 6
    data = selective_copy(seq_len, num_tokens=num_tokens, num_symbols=num_symbols, **SMALL)
    targets = data.test.targets
    always_blank = np.all(targets == num_symbols, axis=0)
    per_step_ce = np.where(always_blank, 0.0, math.log(num_symbols))
    assert data.info.baseline == pytest.approx(float(per_step_ce.mean()))
    assert data.info.baseline == pytest.approx(num_tokens * math.log(num_symbols) / (seq_len + num_tokens))


def test_same_seed_same_data_other_seed_other_data():
    a = selective_copy(8, num_tokens=3, **SMALL, seed=5)
    b = selective_copy(8, num_tokens=3, **SMALL, seed=5)
    c = selective_copy(8, num_tokens=3, **SMALL, seed=6)
    more_test = selective_copy(8, num_tokens=3, num_train=6, num_validation=3, num_test=40, seed=5)
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(a.splits[name].inputs, b.splits[name].inputs)
        np.testing.assert_array_equal(a.splits[name].targets, b.splits[name].targets)
    assert not np.array_equal(a.train.inputs, c.train.inputs)
    np.testing.assert_array_equal(a.train.inputs, more_test.train.inputs)  # each split has its own stream


def test_fresh_batches_are_new_examples_drawn_from_seed_and_index_alone():
    data = selective_copy(8, num_tokens=3, num_symbols=4, infinite=True, num_validation=3, num_test=4, seed=2)
    source = data.train
    assert isinstance(source, FreshBatches) and data.infinite
    assert repr(source) == "FreshBatches(task='selective_copy', seq_len=8, num_tokens=3, num_symbols=4, seed=2)"
    for index in (0, 5):
        check_selective_copy_split(source.batch(index, 5), 8, 3, 4)
    again = selective_copy(8, num_tokens=3, num_symbols=4, infinite=True, seed=2).train
    np.testing.assert_array_equal(source.batch(3, 6).inputs, again.batch(3, 6).inputs)
    assert not np.array_equal(source.batch(0, 6).inputs, source.batch(1, 6).inputs)
    fixed = selective_copy(8, num_tokens=3, num_symbols=4, num_train=6, num_validation=3, num_test=4, seed=2)
    np.testing.assert_array_equal(data.test.targets, fixed.test.targets)  # held-out splits as without infinite


def test_loads_by_name_with_seq_len_as_the_region():
    data = load_task("selective_copy", seq_len=10, num_tokens=4, seed=3, **SMALL)
    assert data.info.seq_len == 14 and data.info.in_features == 16  # the default alphabet: 14 symbols
    check_selective_copy_split(data.test, 10, 4, 14)
    default = load_task("selective_copy", **SMALL)
    check_selective_copy_split(default.validation, 256, 16, 14)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"seq_len": 0}, ValueError, "seq_len must be an int >= 1, got 0"),
        ({"seq_len": 8.0}, TypeError, "seq_len must be an int >= 1, got float"),
        ({"seq_len": 8, "num_tokens": 0}, ValueError, "num_tokens must be an int >= 1, got 0"),
        ({"seq_len": 8, "num_tokens": True}, TypeError, "num_tokens must be an int"),
        ({"seq_len": 8, "num_tokens": 9}, ValueError, r"num_tokens must be <= seq_len=8 .*got 9"),
        ({"seq_len": 8, "num_tokens": 2, "num_symbols": 1}, ValueError, "num_symbols must be an int >= 2, got 1"),
        ({"seq_len": 8, "num_tokens": 2, "seed": -1}, TypeError, "seed must be a non-negative int"),
        ({"seq_len": 8, "num_tokens": 2, "num_test": 0}, ValueError, "num_test must be an int >= 1, got 0"),
        ({"seq_len": 8, "num_tokens": 2, "infinite": True, "num_train": 5}, ValueError, "num_train must not be"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        selective_copy(**kwargs)
