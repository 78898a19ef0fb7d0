"""Data parallel and FSDP training on ``jax.sharding``: where the batch, the parameters and the optimizer state live.

A :class:`Partitioning` names one axis of a device mesh. The Trainer puts each
batch on it split along the example axis, and the parameters and optimizer
state either replicated on every device (data parallel) or split along one
dimension of each array (FSDP, ``shard_params=True``). The step is the same
jitted function as on one device: jit compiles it for the arrays' shardings
(pinned inside the step with ``with_sharding_constraint``) and XLA inserts the
collectives — the gradient's all-reduce, or under FSDP its reduce-scatter and
the parameters' all-gathers. Every number is computed on the global arrays, so
the loss, the metrics and the gradient norms are those of the whole batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from recurrax.train._distributed import device_put_global, fully_addressable
from recurrax.train._local_sgd import ReplicaState, replica_sharding

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Partitioning:
    """How a :class:`~recurrax.train.Trainer` spreads training over the devices of a mesh.

    Each batch is split along its example axis over the mesh axis ``axis``
    (its size must be a multiple of that axis's size). With
    ``shard_params=False`` (data parallel) the parameters and optimizer state
    are replicated on every device; with ``shard_params=True`` (FSDP) each of
    their arrays is split over the same axis along its largest dimension that
    the axis size divides (the first such one on a tie), and an array with no
    such dimension is replicated. XLA inserts the collectives; nothing is
    hand-written. Hashable: it is part of the jitted step's static configuration.

    Other mesh axes (a sequence-parallel ``"time"`` axis, say) see the batch
    and the state replicated.

    Args:
      mesh: a ``jax.sharding.Mesh`` with an axis named ``axis``.
      axis: the mesh axis the batch (and with ``shard_params`` the state) is split over.
      shard_params: split the parameters and optimizer state too (FSDP), for
        models too big to replicate on every device.

    Example:
      >>> import jax, numpy as np
      >>> from jax.sharding import Mesh
      >>> mesh = Mesh(np.array(jax.devices()), ("data",))
      >>> fsdp = Partitioning(mesh, shard_params=True)
      >>> tuple(fsdp.state_sharding((3, 8 * jax.device_count())).spec)  # split along the larger dimension
      (None, 'data')
    """

    mesh: Mesh
    _: dataclasses.KW_ONLY
    axis: str = "data"
    shard_params: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.mesh, Mesh):
            raise TypeError(
                f"Partitioning needs a jax.sharding.Mesh to split the batch{' and parameters' * self.shard_params} "
                f"over, got mesh={self.mesh!r}; e.g. Mesh(np.array(jax.devices()), ('data',))"
            )
        if not isinstance(self.axis, str) or self.axis not in self.mesh.axis_names:
            raise ValueError(
                f"Partitioning(axis={self.axis!r}): the mesh has no axis of that name (its axes: "
                f"{tuple(self.mesh.axis_names)}); name the mesh axis the batch is split over"
            )
        if not isinstance(self.shard_params, bool):
            raise TypeError(f"shard_params must be a bool, got {self.shard_params!r}")

    @property
    def size(self) -> int:
        """How many ways the batch is split: the size of the mesh axis ``axis``."""
        return int(self.mesh.shape[self.axis])

    def check_batch_size(self, n: int, what: str, hint: str = "") -> None:
        """Raises ``ValueError`` naming ``what`` (``"batch_size=12"``) unless ``n`` examples split evenly."""
        if n % self.size:
            raise ValueError(
                f"{what} does not split evenly over the {self.size} devices of mesh axis {self.axis!r} "
                f"(Partitioning): use a multiple of {self.size}{hint}"
            )

    def batch_sharding(self, *, stacked: bool = False) -> NamedSharding:
        """A batch's sharding: split along the example axis (the second one of stacked batches ``[S, B, ...]``)."""
        return NamedSharding(self.mesh, PartitionSpec(None, self.axis) if stacked else PartitionSpec(self.axis))

    def replicated(self) -> NamedSharding:
        """The sharding of an array held whole on every device of the mesh."""
        return NamedSharding(self.mesh, PartitionSpec())

    def state_sharding(self, shape: tuple[int, ...]) -> NamedSharding:
        """The sharding of a parameter or optimizer-state array of ``shape`` (from the shape alone, so
        Adam's moments are split like their parameters)."""
        if not self.shard_params:
            return self.replicated()
        size = self.size
        dims = [i for i, n in enumerate(shape) if n >= size and n % size == 0]
        if not dims:
            return self.replicated()
        largest = max(dims, key=lambda i: (shape[i], -i))
        spec: list[str | None] = [None] * len(shape)
        spec[largest] = self.axis
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def state_shardings(self, tree: Any) -> Any:
        """:meth:`state_sharding` of every array of ``tree`` (the same tree structure); local SGD's
        replica-stacked state (:class:`~recurrax.train.ReplicaState`) is split along its replica axis instead."""

        def one(x: Any) -> Any:
            if isinstance(x, ReplicaState):
                return jax.tree.map(lambda a: replica_sharding(self, tuple(np.shape(a))), x)
            return self.state_sharding(tuple(np.shape(x)))

        return jax.tree.map(one, tree, is_leaf=lambda x: isinstance(x, ReplicaState))

    # --------------------------------------------------------- the Trainer's uses
    def place_state(self, tree: Any) -> Any:
        """Parameters or optimizer state onto their shardings."""
        return device_put_global(tree, self.state_shardings(tree))

    def place_replicated(self, tree: Any) -> Any:
        """Arrays (the model's RNG state, batch statistics) whole onto every device."""
        return device_put_global(tree, self.replicated())

    def place_batch(self, batch: Mapping[str, Any], name: str, *, stacked: bool = False) -> dict[str, Array]:
        """A training batch split over the axis; a size the axis does not divide raises, naming ``name``."""
        sizes = {int(np.shape(v)[int(stacked)]) for v in batch.values() if np.ndim(v) > int(stacked)}
        for n in sizes:
            self.check_batch_size(n, f"{name} ({n} examples)")
        sharding = self.batch_sharding(stacked=stacked)
        return {k: device_put_global(v, sharding) for k, v in batch.items()}

    def place_eval_batch(self, batch: Mapping[str, Any]) -> dict[str, Array]:
        """An evaluation batch: split when the axis divides its size, else whole on every device
        (a data set's last, smaller batch), so that evaluation takes any data size."""
        sizes = {int(np.shape(v)[0]) for v in batch.values() if np.ndim(v) >= 1}
        split = all(n % self.size == 0 for n in sizes)
        sharding = self.batch_sharding() if split else self.replicated()
        return {k: device_put_global(v, sharding) for k, v in batch.items()}

    def init_state(self, init: Any, params: Any) -> Any:
        """``init(params)`` (an optimizer's state) made directly on its shardings, never whole on one device."""
        shardings = self.state_shardings(jax.eval_shape(init, params))
        return jax.jit(init, out_shardings=shardings)(params)

    def constrain_state(self, tree: Any) -> Any:
        """Inside the jitted step: pins parameters, gradients or optimizer state to their shardings."""
        return jax.lax.with_sharding_constraint(tree, self.state_shardings(tree))

    def constrain_replicated(self, tree: Any) -> Any:
        """Inside the jitted step: pins ``tree`` whole on every device."""
        return jax.lax.with_sharding_constraint(tree, self.replicated())


def on_one_device(tree: Any) -> Any:
    """Sharded or replicated arrays gathered into ordinary arrays on this process's first device
    (``jax.local_devices()[0]``, the default device); arrays spanning other processes are all-gathered first."""
    device = SingleDeviceSharding(jax.local_devices()[0])
    return jax.device_put(fully_addressable(tree), device)
