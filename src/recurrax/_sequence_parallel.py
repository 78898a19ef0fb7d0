"""Sequence parallelism: a linear cell's recurrence with its time axis split over devices.

The two-level associative scan, in JAX's own ``shard_map``: each device takes
one chunk of ``T / n`` steps, computes its coefficients and scans them locally
(the engine's own :func:`~recurrax._parallel.linear_scan`, masks and all); the
chunks' summaries (each chunk's composed element ``(A, B)``) are all-gathered
and prefix-combined, and each device composes its incoming element with its
local prefixes. The result equals ``recurrax.scan(..., method="parallel")``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from recurrax._linear_cell import LinearCell
from recurrax._options import ScanOptions
from recurrax._parallel import Combine, Scan, default_state_is_zero, episode_starts, linear_scan, valid_starts
from recurrax._scan import prepare_call
from recurrax._types import Array, Carry, Params


def sequence_parallel_scan(
    cell: LinearCell,
    params: Params,
    xs: Array,
    *,
    mesh: Mesh,
    axis_name: str,
    initial_carry: Carry | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
) -> tuple[Array, Carry]:
    """``recurrax.scan(cell, params, xs, method="parallel", ...)`` with time split over ``mesh``'s ``axis_name``.

    Device ``d`` of that axis runs steps ``[d·T/n, (d+1)·T/n)``: it computes
    their coefficients, scans them with ``jax.lax.associative_scan``, shares
    its chunk's composed element ``(A, B)`` with every device (one
    ``all_gather`` of ``n`` small ``[*B, H]`` summaries), folds those of the
    chunks before it into its incoming element and applies it to its local
    prefixes. A cell whose coefficients read earlier steps (QRNN's
    convolution, :meth:`~recurrax.LinearCell.linear_lookback`) first receives
    that many steps of the previous chunk (``ppermute``). The mesh's other
    axes, if any, hold copies.

    Shapes:
      xs: ``[*B, T, D]`` (``[T, *B, D]`` with ``time_major``); ``T`` divisible by ``n = mesh.shape[axis_name]``.
      lengths: ``[*B]`` integers in ``[1, T]``; resets: ``[*B, T]`` (``[T, *B]``) booleans.
      returns: ``ys`` ``[*B, T, O]`` (``[T, *B, O]``), sharded along time, and the final carry (leaves ``[*B, ...]``).

    Args:
      cell: a :class:`~recurrax.LinearCell` (min_gru, min_lstm, lru, qrnn or your own).
      params: the cell's parameters (``cell.init``); every device holds them all.
      xs: the input sequence, on any devices (it is resharded along time).
      mesh: a :class:`jax.sharding.Mesh`.
      axis_name: the mesh axis that time is split over.
      initial_carry, lengths, resets, reverse, time_major: as in :func:`recurrax.scan`.

    Works under ``jit`` (``cell``, ``mesh``, ``axis_name``, ``reverse`` and
    ``time_major`` static) and ``grad``. See ``docs/distributed.md``.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, recurrax
      >>> from jax.sharding import Mesh
      >>> mesh = Mesh(np.array(jax.devices()), ("seq",))
      >>> cell = recurrax.min_gru(8)
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 16 * len(jax.devices()), 3))
      >>> run = jax.jit(recurrax.sequence_parallel_scan, static_argnames=("cell", "mesh", "axis_name"))
      >>> ys, h = run(cell, params, xs, mesh=mesh, axis_name="seq")  # jit: one program, not op by op
      >>> ref, _ = recurrax.scan(cell, params, xs, method="parallel")
      >>> bool(jnp.allclose(ys, ref, atol=1e-5)), h.shape
      (True, (2, 8))
    """
    if not (isinstance(cell, LinearCell) and cell.is_linear):
        raise TypeError(
            f"cell must be a linear-recurrence cell (a LinearCell: min_gru, min_lstm, lru, qrnn), got "
            f"{type(cell).__name__}; other cells cannot split time over devices: use recurrax.scan"
        )
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis_name not in mesh.axis_names:
        raise ValueError(
            f"axis_name must name an axis of mesh, got {axis_name!r}; the mesh's axes are {mesh.axis_names}"
        )
    lookback = cell.linear_lookback()
    if lookback is None:
        raise ValueError(
            f"cell: {type(cell).__name__} overrides linear_terms but not linear_lookback, so how many earlier "
            "steps its coefficients read is unknown; implement linear_lookback to split its time axis"
        )
    options = ScanOptions(time_major=time_major, reverse=reverse, method="parallel")
    call = prepare_call(cell, params, xs, initial_carry, lengths, resets, options)
    axis = call.time_axis
    num_devices = mesh.shape[axis_name]
    num_steps = call.xs.shape[axis]
    if num_steps % num_devices:
        raise ValueError(
            f"xs: its {num_steps} time steps must split evenly over the {num_devices} devices of mesh axis "
            f"{axis_name!r}; pad xs to a multiple of {num_devices} steps and pass lengths"
        )
    chunk = num_steps // num_devices
    if lookback > chunk:
        raise ValueError(
            f"xs: each device's chunk of {chunk} steps is shorter than the {lookback} earlier steps that "
            f"{type(cell).__name__}'s coefficients read; use longer sequences or fewer devices"
        )

    starts = episode_starts(call.xs, call.steps.resets, axis)
    # Where the carry restarts, decided over the whole sequence (step 0 and
    # the resets inside each example), so that no device takes its own step 0 for one.
    masks = {"starts": starts, "at_start": valid_starts(starts, call.steps.valid, axis)}
    if call.steps.valid is not None:
        masks["valid"] = call.steps.valid
    last = None if call.lengths is None else call.lengths - 1
    zero_state = call.default_carry and default_state_is_zero(cell)  # read from values: outside shard_map
    over_time = PartitionSpec(*(None,) * axis, axis_name)

    def chunk_scan(
        xs: Array, masks: dict[str, Array], params: Params, initial_carry: Carry, last: Array | None
    ) -> tuple[Array, Carry]:
        index = jax.lax.axis_index(axis_name)
        starts, at_start = masks["starts"], masks["at_start"]
        valid = masks.get("valid")
        if lookback:
            # The steps of the previous chunk that this chunk's first coefficients read, counted
            # as padding (a = 1, b = 0: the identity) so that they add nothing to the scan.
            xs = _with_halo(xs, lookback, axis, axis_name, num_devices)
            starts = _with_halo(starts, lookback, axis, axis_name, num_devices)
            outside = jnp.zeros_like(jax.lax.slice_in_dim(at_start, 0, lookback, axis=axis))
            valid = jnp.ones_like(at_start) if valid is None else valid
            at_start = jnp.concatenate([outside, at_start], axis=axis)
            valid = jnp.concatenate([outside, valid], axis=axis)
        # Each example's end in this chunk's own step numbers; only the device that holds it
        # computes that example's final carry (QRNN's pending sums read the steps around it).
        local_last = None if last is None else last - index * chunk + lookback
        ys, final_carry, _ = linear_scan(
            cell, params, xs, initial_carry, starts, at_start, valid, local_last,
            zero_state=zero_state, time_axis=axis, scan=_across_devices(axis_name),
        )  # fmt: skip
        ys = jax.lax.slice_in_dim(ys, lookback, None, axis=axis)
        return ys, jax.tree.map(lambda leaf: leaf[None], final_carry)

    sharded = jax.shard_map(
        chunk_scan,
        mesh=mesh,
        in_specs=(over_time, over_time, PartitionSpec(), PartitionSpec(), PartitionSpec()),
        out_specs=(over_time, PartitionSpec(axis_name)),
    )
    ys, final_carries = sharded(call.xs, masks, params, call.initial_carry, last)
    # final_carries: leaves [n, *B, ...], one candidate per device; each example's is its end's device's.
    if last is None:
        final_carry = jax.tree.map(lambda leaf: leaf[-1], final_carries)
    else:
        owner = jnp.clip(last, 0, num_steps - 1) // chunk
        final_carry = jax.tree.map(lambda leaf: _select(leaf, owner), final_carries)
    return call.restore(ys), final_carry


def _across_devices(axis_name: str) -> Scan:
    """The two-level :data:`~recurrax._parallel.Scan`: local prefixes, then each chunk's incoming element."""

    def scan(combine: Combine, elements: tuple[Array, ...], axis: int) -> tuple[Array, ...]:
        local = tuple(jax.lax.associative_scan(combine, elements, axis=axis))
        summary = tuple(jax.lax.index_in_dim(e, -1, axis, keepdims=True) for e in local)
        # n summaries of [*B, H] each: one all_gather, then every device combines the few it
        # needs itself. (A ppermute ladder would take log2(n) latency-bound rounds for the same.)
        gathered = jax.lax.all_gather(summary, axis_name)
        prefixes = jax.lax.associative_scan(combine, gathered, axis=0)
        index = jax.lax.axis_index(axis_name)
        before = jnp.maximum(index - 1, 0)
        incoming = tuple(jax.lax.dynamic_index_in_dim(p, before, 0, keepdims=False) for p in prefixes)
        fixed = combine(incoming, local)
        # The first chunk has nothing before it (its step 0 is a start).
        return tuple(jnp.where(index > 0, f, e) for f, e in zip(fixed, local, strict=True))

    return scan


def _with_halo(chunk: Array, width: int, axis: int, axis_name: str, num_devices: int) -> Array:
    """``chunk`` preceded by the last ``width`` steps of the previous device's chunk (zeros on the first)."""
    tail = jax.lax.slice_in_dim(chunk, chunk.shape[axis] - width, None, axis=axis)
    halo = jax.lax.ppermute(tail, axis_name, [(d, d + 1) for d in range(num_devices - 1)])
    return jnp.concatenate([halo, chunk], axis=axis)


def _select(candidates: Array, owner: Array) -> Array:
    """``candidates[owner[b], b, ...]`` for every example ``b``: ``[n, *B, ...]`` and ``owner[*B]`` to ``[*B, ...]``."""
    index = owner.reshape((1, *owner.shape) + (1,) * (candidates.ndim - 1 - owner.ndim))
    return jnp.take_along_axis(candidates, index, axis=0)[0]
