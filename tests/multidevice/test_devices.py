"""The subprocess sees 8 CPU devices, and a sharded computation equals the one-device one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def test_eight_devices_and_a_sharded_reduction_equals_the_local_one():
    assert jax.device_count() == 8
    mesh = Mesh(np.array(jax.devices()), ("data",))
    xs = np.arange(32, dtype=np.float32).reshape(16, 2)
    sharded = jax.device_put(xs, NamedSharding(mesh, PartitionSpec("data")))
    assert len(sharded.addressable_shards) == 8
    total = jax.jit(lambda x: jnp.sum(x**2, axis=0))(sharded)
    np.testing.assert_array_equal(np.asarray(total), np.sum(xs**2, axis=0))
