"""``recording``: every recurrent layer's named internals per step (gates, cell state, coefficients)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from recurrax._types import Array

Records = dict[str, Array]

_ACTIVE: contextvars.ContextVar[list[Records] | None] = contextvars.ContextVar("recurrax_recording", default=None)


def active_recording() -> list[Records] | None:
    """The list of the innermost active :func:`recording`, if any."""
    return _ACTIVE.get()


@contextlib.contextmanager
def recording() -> Iterator[list[Records]]:
    """Records the named internals of every ``recurrax.nn`` recurrent layer call inside it.

    Yields a list. Each recurrent layer call inside the ``with`` block (in call
    order; each direction of a :class:`Bidirectional` and each layer of a stack
    is one call) appends what :func:`recurrax.scan` returns with
    ``record=True``: a dict from the cell's names (``"i"``, ``"f"``, ``"g"``,
    ``"o"``, ``"c"`` for an LSTM; each cell's docstring lists its own) to arrays
    ``[*B, T, ...]`` (``[T, *B, ...]`` time-major), zero past ``lengths``. A
    cell that names nothing appends ``{}``.

    Inside the block the layers run the step loop (not a fused or parallel
    path), with the same outputs; outside it nothing changes. Use it inside
    the function you jit or differentiate (the list then holds that trace's
    values), or eagerly. Attention modules take ``return_weights=True`` for
    their attention weights instead.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> model = nn.LSTM(3, 4, rngs=nnx.Rngs(0))
      >>> with nn.recording() as records:
      ...     ys = model(jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> sorted(records[0]), records[0]["f"].shape, float(records[0]["f"][1, 2:].max())
      (['c', 'f', 'g', 'i', 'o'], (2, 5, 4), 0.0)
    """
    records: list[Records] = []
    token = _ACTIVE.set(records)
    try:
        yield records
    finally:
        _ACTIVE.reset(token)
