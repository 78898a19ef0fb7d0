"""The one switch between a cell's whole-sequence implementations: ``ScanOptions.kernel``.

A cell that offers several implementations of :meth:`~recurrax.Cell.sequence`
(``LSTMCell``: its fused XLA loop, a Pallas kernel, cuDNN; ``GRUCell``: the
XLA loop and a Pallas kernel) names them with a check each, and
:func:`choose` picks one from what the caller asked, what the cell offers
and the backend. The engine never sees the choice: it asks the cell, as for
any fast path.

* ``kernel="xla"``: the cell's fused XLA loop (``cells/_fused.py``).
* ``kernel="pallas"`` / ``"cudnn"``: that implementation when the cell offers
  it and its check accepts the call, else the XLA loop (``fused=True``:
  the cell declines with the check's reason, and the engine raises).
* ``kernel="auto"``: the first kernel in :data:`AUTO` for the backend that
  accepts the call, else the XLA loop. :data:`AUTO` is empty: the Pallas and
  cuDNN paths are opt-in until a GPU run of ``benchmarks/run_gpu.sh`` shows
  where they win (``benchmarks/README.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax

from recurrax._cell import Steps
from recurrax._options import ScanOptions
from recurrax._types import Array

#: Backend → the kernels ``kernel="auto"`` tries, in order, before the XLA loop. Filled from measurements only.
AUTO: dict[str, tuple[str, ...]] = {}

#: A kernel's check: why it cannot run this call (None: it can); ``steps`` is None before the call's masks are known.
Check = Callable[[Steps | None], str | None]


def choose(options: ScanOptions, offered: Mapping[str, Check], steps: Steps | None = None) -> tuple[str, str | None]:
    """``(kernel to run, why the requested kernel cannot run this call or None)``."""
    requested = options.kernel
    if requested == "xla":
        return "xla", None
    if requested == "auto":
        for kernel in AUTO.get(jax.default_backend(), ()):
            if kernel in offered and offered[kernel](steps) is None:
                return kernel, None
        return "xla", None
    check = offered.get(requested)
    if check is None:
        return "xla", f"no {requested} kernel for this cell"
    reason = check(steps)
    return (requested, None) if reason is None else ("xla", reason)


def choose_or_raise(
    cell: object, options: ScanOptions, offered: Mapping[str, Check], steps: Steps | None = None
) -> str:
    """The kernel to run (:func:`choose`); under ``fused=True``, a requested kernel that cannot run raises.

    The error names ``cell``'s class, as the engine's refusals do.
    """
    kernel, reason = choose(options, offered, steps)
    if reason is not None and options.fused:
        name = type(cell).__name__
        raise ValueError(f"{name}: fused=True, but kernel={options.kernel!r} cannot run this call: {reason}")
    return kernel


def declined(options: ScanOptions, offered: Mapping[str, Check], steps: Steps | None = None) -> str | None:
    """Why the cell must decline the call under ``fused=True`` (its requested kernel cannot run it), else None."""
    _, reason = choose(options, offered, steps)
    if reason is None or not options.fused:
        return None
    return f"kernel={options.kernel!r}: {reason}"


def flat_batch(xs: Array, states: tuple[Array, ...], steps: Steps) -> tuple[Array, tuple[Array, ...], Steps]:
    """Time-major ``xs[T, *B, D]``, states ``[*B, H]`` and masks ``[T, *B]`` with ``*B`` flattened to one axis."""
    batch = math.prod(xs.shape[1:-1])
    valid = None if steps.valid is None else steps.valid.reshape(xs.shape[0], batch)
    resets = None if steps.resets is None else steps.resets.reshape(xs.shape[0], batch)
    flat_states = tuple(s.reshape(batch, s.shape[-1]) for s in states)
    return xs.reshape(xs.shape[0], batch, xs.shape[-1]), flat_states, Steps(valid=valid, resets=resets)


def unflatten(a: Array, batch_shape: tuple[int, ...]) -> Array:
    """``[..., B, F]`` → ``[..., *B, F]`` (the inverse of :func:`flat_batch`)."""
    return a.reshape((*a.shape[:-2], *batch_shape, a.shape[-1]))
