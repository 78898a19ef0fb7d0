"""Data parallel and FSDP training on 8 devices equal training on one (the same Trainer without a partitioning).

Each run is 50 optimizer steps of Adam with global-norm clipping, gradient
accumulation over 2 micro-batches, the non-finite guard and dropout; the
one-device reference runs on device 0 of the same process. Float32: the
sharded runs add the batch in 8 partial sums, so they agree to round-off
(about 2e-7 relative, measured), checked at 1e-5.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

import recurrax.train._trainer as trainer_module
from recurrax import models, train

N, B, T, D, C, H = 32, 16, 4, 3, 3, 8  # 2 examples per device
STEPS = 50
# The loss and the gradient norms agree to 1e-5; Adam's update divides by sqrt(v), which magnifies round-off
# where v is small (the Transformer's update_norm differs by up to 1.7e-5 relative), so the update is held to 1e-4.
CURVES = {"loss": 1e-5, "accuracy": 1e-5, "grad_norm": 1e-5, "clipped_grad_norm": 1e-5}
CURVES_AFTER_ADAM = {"update_norm": 1e-4, "param_norm": 1e-5}


@pytest.fixture(scope="module")
def mesh():
    return Mesh(np.array(jax.devices()), ("data",))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {"inputs": rng.normal(size=(N, T, D)).astype(np.float32), "targets": rng.integers(0, C, N).astype(np.int32)}


def _model(cell):
    options = {"num_layers": 1, "num_heads": 2} if cell == "transformer" else {}
    return models.SequenceClassifier(
        D, C, cell=cell, hidden_size=H, dense_size=H, dropout=0.1, rngs=nnx.Rngs(0), **options
    )


def _trainer(cell, partitioning=None):
    tx = train.build_optimizer("adam", 1e-2, clip_norm=0.2, accumulate_steps=2, skip_nonfinite=True)
    return train.Trainer(
        _model(cell), tx, loss="softmax_cross_entropy", metrics=["accuracy"], partitioning=partitioning
    )


def _fit(trainer, data, **kwargs):
    return trainer.fit(data, steps=STEPS, batch_size=B, progress=False, log_every=STEPS, **kwargs)


def _received_shardings(monkeypatch):
    """Records the sharding of every batch array the jitted step functions receive."""
    seen = []
    for name in ("train_batch", "train_batches"):
        step = getattr(trainer_module, name)

        def spy(config, params, rest, opt_state, batch, step=step):
            seen.append({k: v.sharding for k, v in batch.items()})
            return step(config, params, rest, opt_state, batch)

        monkeypatch.setattr(trainer_module, name, spy)
    return seen


@pytest.fixture(scope="module")
def lstm_reference(data):
    trainer = _trainer("lstm")
    _fit(trainer, data)
    return trainer


def _assert_same_training(run, reference, data, *, evaluation=False):
    """The loss curve, diagnostics and parameters of ``run`` are ``reference``'s (with ``evaluation``, its
    evaluation and predictions too: compiles are the cost, so one test checks them)."""
    got, want = run.history.steps, reference.history.steps
    assert len(got) == len(want) == STEPS
    per_layer = {k: 1e-5 for k in want[0] if k.startswith("grad_norm/")}
    assert len(per_layer) >= 3
    for key, rtol in {**CURVES, **per_layer, **CURVES_AFTER_ADAM}.items():
        np.testing.assert_allclose([r[key] for r in got], [r[key] for r in want], rtol=rtol, err_msg=key)
    assert [r["clipped"] for r in got] == [r["clipped"] for r in want]
    assert 0 < sum(r["clipped"] for r in want) < STEPS  # clipping both happened and did not
    assert want[-1]["loss"] < want[0]["loss"]
    params = jax.tree_util.tree_flatten_with_path(run.params)[0]
    for (path, a), b in zip(params, jax.tree.leaves(reference.params), strict=True):
        if "'key']['bias']" in jax.tree_util.keystr(path):
            # Softmax ignores a shift of the keys, so this gradient is zero but for round-off, which
            # Adam's g / sqrt(v) scales up to full steps: it differs between any two summation orders.
            continue
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6, err_msg=str(path))
    if evaluation:  # one batch of 32, split; predictions in batches of 12, 12 (whole on each device) and 8 (split)
        for key, value in reference.evaluate(data).items():
            np.testing.assert_allclose(run.evaluate(data)[key], value, rtol=1e-5)
        np.testing.assert_allclose(run.predict(data, batch_size=12), reference.predict(data), rtol=1e-5, atol=1e-6)
    # trainer.model holds ordinary one-device arrays, the trained ones
    model_params = jax.tree.leaves(nnx.state(run.sync_model(), nnx.Param))
    assert all(leaf.sharding.device_set == {jax.devices()[0]} for leaf in model_params)
    for a, b in zip(model_params, jax.tree.leaves(run.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_data_parallel_lstm_equals_one_device(mesh, data, lstm_reference, monkeypatch):
    seen = _received_shardings(monkeypatch)
    run = _trainer("lstm", train.Partitioning(mesh))
    _fit(run, data)
    assert len(seen) == STEPS
    for shardings in seen:  # each batch split over the 8 devices along its example axis
        for sharding in shardings.values():
            assert sharding.mesh == mesh and sharding.spec == PartitionSpec("data")
    for leaf in jax.tree.leaves((run.params, run.opt_state)):
        assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8
    _assert_same_training(run, lstm_reference, data)


@pytest.mark.slow  # 9-13 CPU-s of compiles: the full leg only; data parallel runs on both
def test_fsdp_lstm_several_steps_per_call_and_a_checkpoint_round_trip(
    mesh, data, lstm_reference, tmp_path, monkeypatch
):
    seen = _received_shardings(monkeypatch)
    run = _trainer("lstm", train.Partitioning(mesh, shard_params=True))
    checkpoint = train.Checkpointer(tmp_path / "ckpt")
    _fit(run, data, steps_per_call=5, checkpoint=checkpoint)
    assert len(seen) == STEPS // 5
    assert {s.spec for shardings in seen for s in shardings.values()} == {PartitionSpec(None, "data")}
    # every state array split along its largest dimension that 8 divides, the others replicated
    split = 0
    for leaf in jax.tree.leaves((run.params, run.opt_state)):
        dims = [i for i, n in enumerate(leaf.shape) if n % 8 == 0]
        if dims:
            largest = max(dims, key=lambda i: (leaf.shape[i], -i))
            assert leaf.sharding.spec == PartitionSpec(
                *(["data" if i == largest else None for i in range(largest + 1)])
            )
            assert leaf.addressable_shards[0].data.shape[largest] == leaf.shape[largest] // 8
            split += 1
        else:
            assert leaf.sharding.is_fully_replicated
    assert split >= 10
    _assert_same_training(run, lstm_reference, data, evaluation=True)

    # The checkpoint of step 50 comes back into the same trainer, sharded as before, after a step moved it on.
    saved = jax.device_get((run.params, run.opt_state))
    run.train_step({k: v[:B] for k, v in data.items()})
    assert run.step == STEPS + 1
    _fit(run, data, steps_per_call=5, checkpoint=checkpoint, resume=True)
    assert run.step == STEPS
    for a, b in zip(jax.tree.leaves((run.params, run.opt_state)), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    shardings = run.partitioning.state_shardings((run.params, run.opt_state))
    for leaf, sharding in zip(jax.tree.leaves((run.params, run.opt_state)), jax.tree.leaves(shardings), strict=True):
        assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
    checkpoint.close()


@pytest.mark.slow  # 9-13 CPU-s of compiles: the full leg only; data parallel runs on both
def test_fsdp_transformer_backbone_equals_one_device(mesh, data):
    # FSDP only (the LSTM tests cover both): its attention kernels [8, heads, head_dim] split along the 8
    reference = _trainer("transformer")
    _fit(reference, data)
    run = _trainer("transformer", train.Partitioning(mesh, shard_params=True))
    _fit(run, data)
    kernel = run.params["backbone"]["params"]["blocks"][0]["attention"]["query"]["kernel"]
    assert kernel.sharding.spec == PartitionSpec("data")  # trailing Nones dropped
    _assert_same_training(run, reference, data)


def test_batches_that_do_not_split_over_the_devices_are_refused_by_name(mesh, data):
    trainer = _trainer("lstm", train.Partitioning(mesh))
    with pytest.raises(ValueError, match=r"batch_size=12 does not split evenly over the 8 devices of mesh axis 'data'"):
        trainer.fit(data, batch_size=12, progress=False)
    with pytest.raises(ValueError, match=r"last batch of each epoch \(4 examples.*drop_remainder=True"):
        trainer.fit({k: v[:20] for k, v in data.items()}, batch_size=8, progress=False)
    with pytest.raises(ValueError, match=r"the batch given to train_step \(6 examples\) does not split evenly"):
        trainer.train_step({k: v[:6] for k, v in data.items()})
    assert trainer.step == 0
