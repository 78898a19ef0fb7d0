"""Training batches read by a grain pipeline: background prefetch, one shard per process, a resumable position.

``fit(..., input_pipeline=GrainPipeline())`` reads the batches that the
in-memory path reads, in the same order (batch ``g`` of the run is a function
of ``g`` and the seed alone: :func:`~recurrax.train._data.epoch_order` for
arrays, ``source.batch(g, B)`` for a :class:`~recurrax.train.BatchSource`),
but through grain (``grain.MapDataset`` over the batch numbers, then
``to_iter_dataset``): ``num_threads`` threads gather the next ``prefetch``
batches while the device trains, each process keeps only its block of every
global batch, and the iterator's state (``{"next_index": g}``) goes into each
checkpoint, so that a resumed run continues from the very batch it stopped at.

Why grain: it is the JAX ecosystem's input library (Google's; MaxText reads
through it), installs from PyPI on Python 3.11 and 3.12 (0.2.18), and its
iterators are checkpointable by design; PyTorch's DataLoader would bring torch
into training and has no resumable state; tf.data brings TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from recurrax.train._data import epoch_order, take

Batch = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class GrainPipeline:
    """How ``fit`` reads its training batches through grain (see the module docstring).

    Args:
      prefetch: batches read ahead of the one the step uses (grain's
        ``prefetch_buffer_size``); 0 reads each batch when it is needed.
      num_threads: grain's reader threads (each one gathers whole batches).
      process_index, process_count: this process's block of every global batch:
        rows ``[i * B / n, (i + 1) * B / n)`` of a batch of ``B``, the rows of its
        own devices on a mesh ordered by process. None: ``jax.process_index()``
        and ``jax.process_count()``. ``B`` must be a multiple of ``n``.

    Example:
      >>> import numpy as np, optax
      >>> from flax import nnx
      >>> from recurrax import train
      >>> data = {"inputs": np.ones((8, 3), np.float32), "targets": np.zeros((8, 1), np.float32)}
      >>> history = train.fit(nnx.Linear(3, 1, rngs=nnx.Rngs(0)), optax.sgd(0.1), data, steps=4, batch_size=4,
      ...                     input_pipeline=train.GrainPipeline(prefetch=2), progress=False)
      >>> len(history.steps)
      4
    """

    prefetch: int = 4
    num_threads: int = 1
    process_index: int | None = None
    process_count: int | None = None

    def __post_init__(self) -> None:
        for name in ("prefetch", "num_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        for name, low in (("process_index", 0), ("process_count", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"{name} must be an int >= {low} or None, got {value!r}")
        index, count = self.shard()
        if index >= count:
            raise ValueError(f"process_index={index} must be below process_count={count}")

    def shard(self) -> tuple[int, int]:
        """``(process_index, process_count)``, JAX's where not given."""
        index = jax.process_index() if self.process_index is None else self.process_index
        count = jax.process_count() if self.process_count is None else self.process_count
        return index, count

    def rows(self, batch_size: int, what: str) -> slice:
        """This process's rows of a global batch of ``batch_size``; ``what`` names that batch in an error."""
        index, count = self.shard()
        if batch_size % count:
            raise ValueError(
                f"{what} ({batch_size} examples) must split evenly over process_count={count} "
                "(GrainPipeline gives each process an equal block of rows)"
            )
        block = batch_size // count
        return slice(index * block, (index + 1) * block)


class ArrayBatches:
    """Batch ``g`` of a run over arrays, as the in-memory path reads it: this process's rows, ``[b, ...]``.

    Batch ``g`` is batch ``g % per_epoch`` of epoch ``g // per_epoch``, whose order
    is ``epoch_order(n, epoch, seed, shuffle)``. Safe to call from several threads.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        num_examples: int,
        batch_size: int,
        per_epoch: int,
        seed: int,
        shuffle: bool,
        pipeline: GrainPipeline,
    ):
        self.data, self.n, self.batch_size, self.per_epoch = data, num_examples, batch_size, per_epoch
        self.seed, self.shuffle = seed, shuffle
        self._rows = {size: pipeline.rows(size, f"a batch of {size}") for size in self._sizes()}
        self._lock = threading.Lock()

    def _sizes(self) -> set[int]:
        last = self.n - (self.per_epoch - 1) * self.batch_size
        return {min(self.batch_size, self.n), min(self.batch_size, last)}

    @functools.lru_cache(maxsize=2)  # noqa: B019 -- the reader's two epochs at a boundary; one instance per fit
    def _order(self, epoch: int) -> np.ndarray:
        return epoch_order(self.n, epoch, self.seed, self.shuffle)

    def __call__(self, g: int) -> Batch:
        epoch, i = divmod(g, self.per_epoch)
        with self._lock:  # lru_cache is thread-safe, but would draw one epoch's order twice at once
            order = self._order(epoch)
        index = order[i * self.batch_size : (i + 1) * self.batch_size]
        return take(self.data, index[self._rows[len(index)]])


class SourceBatches:
    """Batch ``g`` of an endless :class:`~recurrax.train.BatchSource`: this process's rows of ``read(g)``."""

    def __init__(self, read: Callable[[int], Batch], batch_size: int, pipeline: GrainPipeline):
        self.read, self.rows = read, pipeline.rows(batch_size, f"batch_size={batch_size}")

    def __call__(self, g: int) -> Batch:
        return {k: v[self.rows] for k, v in self.read(g).items()}


class PipelineReader:
    """The loop's end of the pipeline: batches ``g``, ``g + 1``, ... from a grain iterator, and its state.

    Args:
      batch: ``g -> batch`` (an :class:`ArrayBatches` or :class:`SourceBatches`).
      num_batches: how many batches the run reads at most (the dataset's length).
      pipeline: the prefetch settings.
    """

    def __init__(self, batch: Callable[[int], Batch], num_batches: int, pipeline: GrainPipeline):
        import grain

        dataset = grain.MapDataset.range(num_batches).map(batch)
        options = grain.ReadOptions(num_threads=pipeline.num_threads, prefetch_buffer_size=pipeline.prefetch)
        self.num_batches = num_batches
        self._iterator: Any = dataset.to_iter_dataset(options).__iter__()

    def next_index(self) -> int:
        """The number of the batch :meth:`read` returns next."""
        return int(self.state()["next_index"])

    def read(self, g: int) -> Batch:
        """Batch ``g``, which must be the next one (the loop reads them in order)."""
        if self.next_index() != g:
            raise RuntimeError(f"the input pipeline is at batch {self.next_index()}, the loop asked for batch {g}")
        batch: Batch = next(self._iterator)
        return batch

    def state(self) -> dict[str, Any]:
        """grain's iterator state (JSON): ``{"next_index": g}``."""
        return dict(self._iterator.get_state())

    def restore(self, state: Mapping[str, Any], expected: int, where: str) -> None:
        """Puts back a checkpoint's iterator state, which must point at batch ``expected`` (``where`` names it)."""
        self._iterator.set_state(dict(state))
        if self.next_index() != expected:
            raise ValueError(
                f"cannot resume exactly from {where}: its input pipeline state is at batch {self.next_index()}, "
                f"its loop position at batch {expected}"
            )

    def seek(self, g: int) -> None:
        """Starts at batch ``g`` (a checkpoint written without a pipeline: batch ``g`` is all there is to know)."""
        self._iterator.set_state({"next_index": int(g)})

    def close(self) -> None:
        """Stops grain's reader threads."""
        self._iterator.close()
