"""Data plumbing of the trainer: datasets as dicts of arrays ``[N, ...]``, endless batch sources, epoch orders,
device batches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeGuard, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from recurrax.train._objective import Objective

Array = jax.Array
Data = Mapping[str, Any] | Any  # a dict of arrays [N, ...], or an object with .inputs/.targets/.lengths


@runtime_checkable
class BatchSource(Protocol):
    """An endless training source: ``batch(index, batch_size)`` returns batch ``index`` (0, 1, 2, ...).

    The batch must depend on ``index`` alone (and the source's own seed), so
    that a resumed run draws the batches an uninterrupted one would have. It
    is a dict of arrays ``[batch_size, ...]`` or an object with
    ``.inputs``/``.targets``/``.lengths`` (a :class:`recurrax.tasks.Split`), e.g.
    the ``train`` of ``recurrax.tasks.adding_problem(..., infinite=True)``.
    """

    def batch(self, index: int, batch_size: int) -> Any: ...


def is_source(data: Any) -> TypeGuard[BatchSource]:
    """Whether ``data`` is a :class:`BatchSource` rather than a dataset of arrays."""
    return not isinstance(data, Mapping) and not hasattr(data, "inputs") and isinstance(data, BatchSource)


def source_batch(source: BatchSource, index: int, batch_size: int, objective: Objective | None) -> dict[str, Any]:
    """Batch ``index`` of ``source`` as a dict of arrays, checked to hold ``batch_size`` examples."""
    batch = as_data(source.batch(index, batch_size), f"train_data.batch({index}, {batch_size})", objective)
    n = num_examples(batch, f"train_data.batch({index}, {batch_size})")
    if n != batch_size:
        raise ValueError(f"train_data.batch({index}, {batch_size}) returned {n} examples, expected {batch_size}")
    return batch


def stack(batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Equal-sized batches ``[B, ...]`` stacked into ``[S, B, ...]`` (the input of a multi-step call)."""
    return {k: np.stack([np.asarray(b[k]) for b in batches]) for k in batches[0]}


def as_data(data: Data, name: str, objective: Objective | None) -> dict[str, Any]:
    """``data`` as a dict of arrays (None values dropped), checked for the keys ``objective`` reads."""
    if isinstance(data, Mapping):
        out = {k: v for k, v in data.items() if v is not None}
    elif hasattr(data, "inputs"):
        out = {k: getattr(data, k) for k in ("inputs", "targets", "lengths") if getattr(data, k, None) is not None}
    else:
        raise TypeError(f"{name} must be a dict of arrays or have .inputs/.targets, got {type(data).__name__}")
    if objective is not None:
        for key in (objective.inputs_key, objective.targets_key):
            if key not in out:
                raise ValueError(f"{name} has no {key!r} array (has {sorted(out)})")
    return out


def num_examples(data: Mapping[str, Any], name: str) -> int:
    """``N``, the leading size every array of ``data`` shares."""
    sizes = {k: int(np.shape(v)[0]) for k, v in data.items() if np.ndim(v) >= 1}
    if not sizes:
        raise ValueError(f"{name} has no arrays")
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{name}'s arrays must share their leading (example) size, got {sizes}")
    n = next(iter(sizes.values()))
    if n == 0:
        raise ValueError(f"{name} has no examples")
    return n


def epoch_order(n: int, epoch: int, seed: Any, shuffle: bool) -> np.ndarray:
    """The example order of ``epoch``, ``[n]``: drawn from ``(seed, epoch)`` alone, so a resume repeats it."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


def take(data: Mapping[str, Any], index: np.ndarray) -> dict[str, Any]:
    """The examples ``index`` ``[b]`` of every array: ``[b, ...]``."""
    return {k: v[index] for k, v in data.items()}


def in_order(data: Mapping[str, Any], n: int, batch_size: int) -> Iterator[dict[str, Array]]:
    """Device batches of ``batch_size`` examples in order, the last one shorter if ``n`` is not a multiple."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    for start in range(0, n, batch_size):
        yield device_batch(take(data, np.arange(start, min(start + batch_size, n))))


def device_batch(batch: Mapping[str, Any]) -> dict[str, Array]:
    """Every array of ``batch`` as a JAX array."""
    return {k: jnp.asarray(v) for k, v in batch.items()}
