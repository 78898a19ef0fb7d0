"""``Partitioning`` in a one-device process: its errors, and a one-device mesh trains exactly as no mesh.

The 8-device behaviour (data parallel and FSDP equal to one device) is in
tests/multidevice/test_data_parallel.py.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

from recurrax import train
from train.train_helpers import B, Regressor, leaves_equal, regression_data


@pytest.fixture
def mesh():
    return Mesh(np.array(jax.devices()[:1]), ("data",))


def test_a_mesh_without_the_axis_is_refused_by_name():
    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match=r"axis='data'.*no axis of that name.*\('batch',\)"):
        train.Partitioning(mesh)
    assert train.Partitioning(mesh, axis="batch").size == 1


def test_fsdp_or_data_parallel_without_a_mesh_is_refused():
    with pytest.raises(TypeError, match=r"needs a jax.sharding.Mesh to split the batch and parameters.*mesh=None"):
        train.Partitioning(None, shard_params=True)
    with pytest.raises(TypeError, match=r"needs a jax.sharding.Mesh to split the batch over, got mesh=None"):
        train.Partitioning(None)


def test_bad_option_types_are_refused(mesh):
    with pytest.raises(TypeError, match="shard_params must be a bool"):
        train.Partitioning(mesh, shard_params="yes")
    with pytest.raises(TypeError, match=r"partitioning must be a recurrax\.train\.Partitioning"):
        train.Trainer(Regressor(nnx.Rngs(0)), None, partitioning=mesh)


def test_fsdp_splits_each_array_along_its_largest_dimension_the_axis_divides():
    devices = np.array(jax.devices()[:1])
    fsdp = train.Partitioning(Mesh(devices, ("data",)), shard_params=True)
    assert fsdp.state_sharding((3, 8)).spec == PartitionSpec(None, "data")
    assert fsdp.state_sharding((8, 8)).spec == PartitionSpec("data", None)  # a tie: the first
    assert fsdp.state_sharding(()).spec == PartitionSpec()
    assert train.Partitioning(Mesh(devices, ("data",))).state_sharding((3, 8)).spec == PartitionSpec()


def test_a_one_device_mesh_trains_exactly_as_no_mesh(mesh):
    data = regression_data()
    tx = train.build_optimizer("adam", 1e-2, clip_norm=1.0, accumulate_steps=2)

    def run(partitioning):
        trainer = train.Trainer(Regressor(nnx.Rngs(0), dropout=0.2), tx, partitioning=partitioning)
        trainer.fit(data, epochs=2, batch_size=B, progress=False)
        trainer.train_step({k: v[:B] for k, v in data.items()})
        return trainer

    reference = run(None)
    for partitioning in (train.Partitioning(mesh), train.Partitioning(mesh, shard_params=True)):
        trainer = run(partitioning)
        assert [r["loss"] for r in trainer.history.steps] == [r["loss"] for r in reference.history.steps]
        assert [r["grad_norm"] for r in trainer.history.steps] == [r["grad_norm"] for r in reference.history.steps]
        assert leaves_equal(trainer.training_state(), reference.training_state())
        assert trainer.evaluate(data) == reference.evaluate(data)
        np.testing.assert_array_equal(trainer.predict(data, batch_size=5), reference.predict(data, batch_size=5))
        model_params = jax.tree.leaves(nnx.state(trainer.model, nnx.Param))
        assert leaves_equal(model_params, jax.tree.leaves(nnx.state(reference.model, nnx.Param)))
        assert all(leaf.sharding.device_set == {jax.devices()[0]} for leaf in model_params)
