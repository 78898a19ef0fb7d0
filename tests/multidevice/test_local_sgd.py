"""Local SGD / DiLoCo (recurrax.train.local_sgd) on 8 devices, one replica per device.

References: with one inner step per round and an outer SGD of learning rate 1
it is data parallel training (SGD with momentum inside, which is linear in the
gradient); its outer update is a numpy computation written out by hand; a run
stopped mid-round and resumed from its checkpoint equals the uninterrupted run.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

from recurrax import models, train
from recurrax.train._step import train_batch

N, B, T, D, C, H = 32, 16, 4, 3, 3, 4  # 2 examples per replica
STEPS = 6
INNER = optax.sgd(0.05, momentum=0.9)
# One object each: every trainer with it shares the compiled step.
EVERY_STEP = train.local_sgd(INNER, replicas=8, sync_every=1)
EVERY_FOURTH = train.diloco(optax.adamw(1e-2), replicas=8, sync_every=4)


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()), ("data",))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    return {"inputs": rng.normal(size=(N, T, D)).astype(np.float32), "targets": rng.integers(0, C, N).astype(np.int32)}


def _trainer(tx, partitioning, diagnostics=True):
    model = models.SequenceClassifier(D, C, cell="lstm", hidden_size=H, dense_size=H, dropout=0.0, rngs=nnx.Rngs(0))
    return train.Trainer(model, tx, loss="softmax_cross_entropy", diagnostics=diagnostics, partitioning=partitioning)


def _fit(trainer, data, steps=STEPS, **kwargs):
    return trainer.fit(data, steps=steps, batch_size=B, progress=False, log_every=1, eval_every=2, **kwargs)


@pytest.mark.slow  # two 8-device training programs compiled: the full leg only
def test_one_step_rounds_with_outer_sgd_1_are_data_parallel(mesh, data):
    part = train.Partitioning(mesh)
    local = _trainer(EVERY_STEP, part, diagnostics=False)  # the diagnostics' compile is the other test's
    _fit(local, data)
    plain = _trainer(INNER, part, diagnostics=False)
    _fit(plain, data)
    np.testing.assert_allclose(
        [r["loss"] for r in local.history.steps], [r["loss"] for r in plain.history.steps], rtol=1e-5
    )
    assert plain.history.steps[-1]["loss"] < plain.history.steps[0]["loss"]
    for a, b in zip(jax.tree.leaves(local.params), jax.tree.leaves(plain.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    state = local.opt_state
    assert int(state.rounds) == STEPS and int(state.step) == 0
    for leaf in jax.tree.leaves(state.replicas):  # one replica on each device: [8, ...] split along its first axis
        assert leaf.sharding.spec == PartitionSpec("data") and leaf.addressable_shards[0].data.shape[0] == 1
    for leaf in jax.tree.leaves((local.params, state.outer)):
        assert leaf.sharding.is_fully_replicated


def test_the_outer_update_is_the_hand_written_one():
    # 2 replicas, 2 inner SGD steps, DiLoCo's Nesterov outer step, in numpy.
    tx = train.diloco(optax.sgd(0.1), replicas=2, sync_every=2, outer_learning_rate=0.7, outer_momentum=0.9)
    x = np.array([1.0, -2.0, 0.5], np.float32)
    grads = np.array([[[0.3, 0.1, -0.2], [-0.4, 0.2, 0.6]], [[0.5, -0.3, 0.1], [0.2, 0.2, -0.1]]], np.float32)

    @jax.jit
    def run(x, grads):
        state, params, out = tx.init(x), x, []
        for round_ in range(2):
            for g in grads:
                updates, state = tx.update(g if round_ == 0 else 2 * g, state, params)
                params = optax.apply_updates(params, updates)
                out.append((params, state.replicas.params, state.step))
        return out

    out = run(jnp.asarray(x), jnp.asarray(grads))
    theta, momentum, want = np.stack([x, x]), np.zeros(3, np.float32), x
    for round_ in range(2):
        for i, g in enumerate(grads):
            theta = theta - 0.1 * (g if round_ == 0 else 2 * g)
            params, replicas, step = out[2 * round_ + i]
            if i == 0:  # mid-round: the global parameters wait, the replicas move apart
                np.testing.assert_allclose(np.asarray(params), want, rtol=1e-6)
                np.testing.assert_allclose(np.asarray(replicas), theta, rtol=1e-6)
                assert int(step) == 1
        delta = want - theta.mean(axis=0)
        momentum = 0.9 * momentum + delta
        want = want - 0.7 * (delta + 0.9 * momentum)  # Nesterov
        theta = np.stack([want, want])
        params, replicas, step = out[2 * round_ + 1]
        np.testing.assert_allclose(np.asarray(params), want, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(replicas), theta, rtol=1e-6)
        assert int(step) == 0


@pytest.mark.slow  # a compile and three orbax round trips: the full leg only
def test_a_run_resumed_mid_round_equals_the_uninterrupted_one(mesh, data, tmp_path):
    part = train.Partitioning(mesh)
    whole = _trainer(EVERY_FOURTH, part)
    _fit(whole, data, steps=10)
    first = _trainer(EVERY_FOURTH, part)
    _fit(first, data, steps=6, checkpoint=train.Checkpointer(tmp_path / "ckpt"))
    assert int(first.opt_state.step) == 2 and int(first.opt_state.rounds) == 1  # stopped mid-round
    resumed = _trainer(EVERY_FOURTH, part)
    _fit(resumed, data, steps=10, checkpoint=train.Checkpointer(tmp_path / "ckpt"), resume=True)
    assert resumed.step == 10 and int(resumed.opt_state.rounds) == 2
    assert [r["loss"] for r in resumed.history.steps] == [r["loss"] for r in whole.history.steps]
    for a, b in zip(jax.tree.leaves(resumed.training_state()), jax.tree.leaves(whole.training_state()), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for leaf in jax.tree.leaves(resumed.opt_state.replicas):
        assert leaf.sharding.spec == PartitionSpec("data")

    # The parameters' all-reduce sits in the synchronising branch of the cond; every step all-reduces
    # scalars only (the loss's total and count, the replicas' gradient norms).
    batch = resumed._device_batch({k: v[:B] for k, v in data.items()}, "batch")
    hlo = train_batch.lower(resumed._config, *resumed.training_state(), batch).compile().as_text()
    reduces = re.findall(r"\s%all-reduce\S* = (\(.*?\)|\S+) all-reduce\(.*?op_name=\"([^\"]*)\"", hlo)
    every_step = [dims for types, name in reduces if "/cond/" not in name for dims in re.findall(r"\[(.*?)\]", types)]
    assert every_step and set(every_step) == {""}, reduces  # scalars only: the loss sums and the diagnostics
    synchronised = sum(types.count("f32[") for types, name in reduces if "/cond/" in name)
    assert synchronised >= len(jax.tree.leaves(resumed.params)), reduces


def test_settings_local_sgd_cannot_run_are_refused_by_name(mesh):
    with pytest.raises(ValueError, match="sync_every must be a positive int, got sync_every=0"):
        train.local_sgd(INNER, replicas=8, sync_every=0)
    with pytest.raises(ValueError, match="tbptt"):
        train.Trainer(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), EVERY_STEP, tbptt=2)
    three = train.local_sgd(INNER, replicas=3, sync_every=2).init({"w": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="replicas=3 does not split over the 8 devices of mesh axis 'data'"):
        train.Partitioning(mesh).state_shardings(three)
