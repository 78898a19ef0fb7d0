"""Sharded checkpoints restore exactly onto another number of devices: 8 → 1, 8 → 4, 8 → 8 data parallel, 1 → 8.

orbax saves each array from its shards; ``fit(..., resume=True)`` reads the
checkpoint and the Trainer places the state on its own partitioning, whatever
the saving run's was. The restored parameters and optimizer state are the
saved ones, bit for bit, on the target's devices and shardings.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from recurrax import models, train

N, B, T, D, C, H = 32, 16, 4, 3, 3, 8
STEPS = 6


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    return {"inputs": rng.normal(size=(N, T, D)).astype(np.float32), "targets": rng.integers(0, C, N).astype(np.int32)}


def _trainer(partitioning=None):
    model = models.SequenceClassifier(D, C, cell="lstm", hidden_size=H, dense_size=H, rngs=nnx.Rngs(0))
    optimizer = train.build_optimizer("adam", 1e-2, clip_norm=0.2)
    return train.Trainer(model, optimizer, loss="softmax_cross_entropy", partitioning=partitioning)


def _fit(trainer, data, directory, *, resume=False):
    trainer.fit(data, steps=STEPS, batch_size=B, progress=False, checkpoint=directory, resume=resume)


def _assert_restored(target, saved, devices: int):
    assert target.step == STEPS
    state = (target.params, target.opt_state)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    shardings = jax.tree.leaves(target.partitioning.state_shardings(state)) if target.partitioning else None
    for i, leaf in enumerate(jax.tree.leaves(state)):
        assert len(leaf.sharding.device_set) == devices
        if shardings is not None:
            assert leaf.sharding.is_equivalent_to(shardings[i], leaf.ndim)


@pytest.mark.slow  # five trainers' compiles: the full leg only
def test_a_checkpoint_restores_exactly_onto_other_device_counts(data, tmp_path):
    eight = Mesh(np.array(jax.devices()), ("data",))
    four = Mesh(np.array(jax.devices()[:4]), ("data",))
    source = _trainer(train.Partitioning(eight, shard_params=True))
    _fit(source, data, tmp_path / "eight")
    saved = jax.device_get((source.params, source.opt_state))
    assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(source.params))
    for partitioning, devices in (
        (None, 1),
        (train.Partitioning(four, shard_params=True), 4),
        (train.Partitioning(eight), 8),
    ):
        target = _trainer(partitioning)
        _fit(target, data, tmp_path / "eight", resume=True)
        _assert_restored(target, saved, devices)

    one = _trainer()  # 1 → 8: a one-device run's checkpoint into an FSDP trainer on 8
    _fit(one, data, tmp_path / "one")
    target = _trainer(train.Partitioning(eight, shard_params=True))
    _fit(target, data, tmp_path / "one", resume=True)
    _assert_restored(target, jax.device_get((one.params, one.opt_state)), 8)
