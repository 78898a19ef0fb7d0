"""``carry_probe``: read and perturb every recurrent layer's carries, for gradient flow through time."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from recurrax._types import Carry, tree_flatten


@dataclasses.dataclass
class _Probe:
    perturbations: Sequence[Carry] | None
    carries: list[Carry]

    def next_perturbation(self, expected: Any, layer: str) -> Carry | None:
        """The perturbation for the layer call about to run; ``expected`` gives its shapes."""
        if self.perturbations is None:
            return None
        index = len(self.carries)
        if index >= len(self.perturbations):
            raise ValueError(
                f"carry_probe got {len(self.perturbations)} perturbations, but recurrent layer call #{index} "
                f"({layer}) needs one more (one per layer call, each direction of a Bidirectional counts)"
            )
        perturbation = self.perturbations[index]
        _check_like(perturbation, expected, f"carry_probe perturbations[{index}] ({layer})")
        return perturbation


_ACTIVE: contextvars.ContextVar[_Probe | None] = contextvars.ContextVar("recurrax_carry_probe", default=None)


def _check_like(value: Carry, expected: Any, name: str) -> None:
    got_leaves, got_tree = tree_flatten(value)
    want_leaves, want_tree = tree_flatten(expected)
    if got_tree != want_tree:
        raise ValueError(f"{name} has structure {got_tree}, expected {want_tree} (the layer's stacked carries)")
    for i, (got, want) in enumerate(zip(got_leaves, want_leaves, strict=True)):
        if tuple(np.shape(got)) != tuple(want.shape):
            raise ValueError(f"{name} leaf {i} has shape {tuple(np.shape(got))}, expected {tuple(want.shape)}")


def active_probe() -> _Probe | None:
    """The innermost active :func:`carry_probe`, if any."""
    return _ACTIVE.get()


@contextlib.contextmanager
def carry_probe(perturbations: Sequence[Carry] | None = None) -> Iterator[list[Carry]]:
    """Records (and optionally perturbs) the carries of every ``recurrax.nn`` layer call inside it.

    Yields a list. Each recurrent layer call inside the ``with`` block (in call
    order; each direction of a :class:`Bidirectional` is one call) appends its
    stacked carries: a pytree like the layer's carry with a time axis, leaves
    ``[*B, T, ...]`` (``[T, *B, ...]`` time-major), the carry after every step
    as :func:`recurrax.scan` returns it with ``return_carries=True``.

    With ``perturbations`` (one pytree per layer call, shaped like its stacked
    carries), layer call ``i`` passes ``perturbations[i]`` to
    :func:`recurrax.scan`'s ``carry_perturbation``: entry ``t`` is added to the
    carry that step ``t`` receives. With zeros the model is unchanged, and the
    gradient of the loss with respect to them is ``∂L/∂h_t`` for every layer and
    step — gradient flow through time. Use it inside the function you
    differentiate or jit (the list then holds that trace's values).

    A regularised layer (recurrent dropout, zoneout) reports and takes only its
    cell's own carry, not the randomness that its carry also holds.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> model = nn.LSTM(3, 4, rngs=nnx.Rngs(0))
      >>> xs = jnp.ones((2, 5, 3))
      >>> with nn.carry_probe() as carries:
      ...     _ = model(xs)
      >>> zeros = jax.tree.map(jnp.zeros_like, carries)
      >>> def loss(perturbations):
      ...     with nn.carry_probe(perturbations):
      ...         return jnp.sum(model(xs)[:, -1])
      >>> grads = jax.grad(loss)(zeros)
      >>> grads[0].h.shape  # ∂L/∂h entering each step: [B, T, H]
      (2, 5, 4)
    """
    if perturbations is not None and not isinstance(perturbations, (list, tuple)):
        raise TypeError(
            f"perturbations must be None or a list (one pytree per layer call), got {type(perturbations).__name__}"
        )
    probe = _Probe(perturbations=perturbations, carries=[])
    token = _ACTIVE.set(probe)
    try:
        yield probe.carries
    finally:
        _ACTIVE.reset(token)
    if perturbations is not None and len(probe.carries) != len(perturbations):
        raise ValueError(
            f"carry_probe got {len(perturbations)} perturbations, but {len(probe.carries)} recurrent layer calls ran"
        )
