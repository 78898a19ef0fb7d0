"""Multi-host training on ``jax.distributed``: one process per host, one mesh over every process's devices.

After :func:`initialize_distributed`, ``jax.devices()`` lists the devices of
all processes and a jitted step over a mesh of them is one program that every
process runs on its own devices, XLA's collectives (NCCL on GPUs, the
interconnect on TPUs, gloo between CPU processes) joining the halves. The
Trainer needs three things more than on one host, all here: each process
builds only its own devices' rows of a global batch (:func:`process_local_batch`),
arrays spanning other processes come back to the host through a replicated
copy (:func:`fully_addressable`), and files are written by one process
(:func:`is_primary`), orbax's checkpoints by its own multi-process protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Array = jax.Array


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins this process to a multi-process JAX run (``jax.distributed.initialize``); call it before any JAX work.

    Every process of the run calls it with the same ``coordinator_address``
    (``host:port`` of process 0, which listens there) and ``num_processes``, and
    its own ``process_id`` in ``[0, num_processes)``. An argument left None is
    JAX's own: the coordinator from ``JAX_COORDINATOR_ADDRESS``, and all three
    from the cluster JAX detects (Slurm, Open MPI, a Cloud TPU pod slice,
    Kubernetes). ``num_processes=1`` starts nothing: the run is this process's
    devices. A second call in a process already joined does nothing. Between CPU
    processes, JAX's collectives go through gloo (``jax_cpu_collectives_implementation``,
    its default).

    Example (each of two hosts, ``process_id`` 0 and 1)::

        initialize_distributed("10.0.0.1:1234", num_processes=2, process_id=0)
        mesh = global_mesh()  # all devices of both hosts on one "data" axis
    """
    if coordinator_address is not None and (not isinstance(coordinator_address, str) or ":" not in coordinator_address):
        raise ValueError(f"coordinator_address must be 'host:port', got {coordinator_address!r}")
    for name, value, low in (("num_processes", num_processes, 1), ("process_id", process_id, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"{name} must be an int >= {low} or None, got {value!r}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(f"process_id={process_id} must be below num_processes={num_processes}")
    if num_processes == 1 or jax.distributed.is_initialized():
        return
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def global_mesh(axis: str = "data") -> Mesh:
    """Every device of every process on one mesh axis ``axis``, ordered by process (``jax.devices()``).

    Each process's devices are neighbours on the axis, so a batch split over
    it gives each process one contiguous block of rows.
    """
    return Mesh(np.array(jax.devices()), (axis,))


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0; always True in a one-process run)."""
    return jax.process_index() == 0


def process_local_batch(data: Mapping[str, Any], rows: np.ndarray, sharding: NamedSharding) -> dict[str, Array]:
    """The global batch ``take(data, rows)`` on ``sharding``, each process reading only its own devices' rows.

    Args:
      data: ``{name: [N, ...]}`` arrays (NumPy, or anything ``array[index]`` reads lazily, like a memmap).
      rows: ``[B]`` or ``[S, B]`` example indices into ``data`` (the global batch, or ``S`` stacked ones).
      sharding: the batch's sharding; it splits at most the leading ``rows.ndim`` dimensions.

    Returns:
      ``{name: [*rows.shape, ...]}``: global arrays, equal to placing the whole
      batch, built from per-device pieces (``jax.make_array_from_callback``), so
      that no process holds rows of other processes' devices.
    """
    lead = rows.ndim
    out: dict[str, Array] = {}
    for name, values in data.items():
        shape = (*rows.shape, *np.shape(values)[1:])

        def piece(index: Any, values: Any = values) -> np.ndarray:  # a device's slices of the global shape
            return np.asarray(values[rows[index[:lead]]])[(slice(None),) * lead + tuple(index[lead:])]

        out[name] = jax.make_array_from_callback(shape, sharding, piece)
    return out


def device_put_global(tree: Any, shardings: Any) -> Any:
    """``jax.device_put(tree, shardings)`` (one sharding, or a tree of them), also onto devices of other processes.

    With several processes, an array of this process (the model each process
    built, a restored checkpoint, a batch) is placed on a sharding that spans
    the others through host memory, each process giving the same values
    (``jax.make_array_from_callback``); PRNG keys go as their key data, which
    ``jax.device_put`` does not take there. One process: ``jax.device_put`` itself.
    """
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)
    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: _put(x, shardings), tree)
    return jax.tree.map(_put, tree, shardings)


def _put(x: Any, sharding: jax.sharding.Sharding) -> Any:
    if sharding.is_fully_addressable or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)  # within this process, or from one global layout to another
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def fully_addressable(tree: Any) -> Any:
    """``tree`` with every array that spans other processes' devices replaced by a replicated copy.

    A process can only read the devices it has; a replicated copy (one
    all-gather, no arithmetic, so the values are exact) has the whole array on
    each of them. Arrays this process already holds whole are returned as they are.
    """
    leaves, treedef = jax.tree.flatten(tree)
    spread = [i for i, x in enumerate(leaves) if isinstance(x, jax.Array) and not x.is_fully_addressable]
    if spread:
        gathered = _replicated([leaves[i] for i in spread])
        for i, x in zip(spread, gathered, strict=True):
            leaves[i] = x.addressable_shards[0].data
    return jax.tree.unflatten(treedef, leaves)


def _replicated(arrays: list[Array]) -> list[Array]:
    shardings = [NamedSharding(x.sharding.mesh, PartitionSpec()) for x in arrays]  # type: ignore[attr-defined]
    return list(jax.jit(lambda xs: xs, out_shardings=shardings)(arrays))
