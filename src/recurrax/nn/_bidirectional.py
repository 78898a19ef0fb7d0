"""``Bidirectional``: a forward and a backward recurrent layer over the same sequence, merged."""

from __future__ import annotations

from typing import Any

from flax import nnx

from recurrax._compose import MergeMode, merge_directions, merged_features
from recurrax._types import Array, Carry
from recurrax.nn._rnn import RNN


class Bidirectional(nnx.Module):
    """Runs ``forward`` over ``xs`` and ``backward`` over each example reversed, then merges them.

    The module form of :func:`recurrax.bidirectional_scan`. **You build both
    layers; ``Bidirectional`` builds nothing and flips nothing.** Pass the
    backward layer already made with ``reverse=True`` (as in the example): it
    then runs each example backwards over its own valid steps,
    ``t = lengths[b] - 1, ..., 0``. A backward layer made without it is refused,
    rather than silently run forwards (Keras' ``Bidirectional`` copies the layer
    and sets ``go_backwards`` itself; here the two layers are yours, with their
    own parameters and options, so nothing is copied behind your back). Both outputs stay aligned
    with ``xs`` and are zero at padding. ``resets`` mark episode starts in
    ``xs``'s order; the backward direction restarts at each episode's last step.

    Args:
      forward: an :class:`RNN` with ``reverse=False``.
      backward: an :class:`RNN` with ``reverse=True`` (its own parameters).
      merge: ``"concat"`` (features ``O_f + O_b``), ``"sum"``, ``"mean"``,
        ``"mul"`` (features ``O``), or ``None`` to return ``(ys_f, ys_b)``.
      return_carry: also return ``(forward_carry, backward_carry)``.

    Call: ``layer(xs, *, initial_carry=None, lengths=None, resets=None)``, with
    ``initial_carry`` ``None`` or a pair ``(forward, backward)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> rngs = nnx.Rngs(0)
      >>> layer = nn.Bidirectional(nn.GRU(3, 4, rngs=rngs), nn.GRU(3, 4, rngs=rngs, reverse=True))
      >>> layer(jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2])).shape
      (2, 5, 8)
    """

    def __init__(self, forward: RNN, backward: RNN, *, merge: MergeMode = "concat", return_carry: bool = False):
        for name, layer in (("forward", forward), ("backward", backward)):
            if not isinstance(layer, RNN):
                raise TypeError(f"{name} must be a recurrax.nn.RNN layer, got {type(layer).__name__}")
        if forward.reverse:
            raise ValueError("forward must be built with reverse=False")
        if not backward.reverse:
            raise ValueError(
                "backward must be built with reverse=True (e.g. nn.LSTM(d, h, rngs=rngs, reverse=True)), "
                "so that it runs each example backwards over its valid steps"
            )
        if forward.time_major != backward.time_major:
            raise ValueError(
                f"both directions need the same time_major, got {forward.time_major} (forward) and "
                f"{backward.time_major} (backward)"
            )
        if forward.in_features != backward.in_features:
            raise ValueError(
                f"both directions must take the same input features, got {forward.in_features} (forward) and "
                f"{backward.in_features} (backward)"
            )
        self.out_features = merged_features(merge, forward.out_features, backward.out_features)
        self.forward = forward
        self.backward = backward
        self.merge = merge
        self.return_carry = bool(return_carry)
        self.in_features = forward.in_features
        self.time_major = forward.time_major

    def __call__(
        self,
        xs: Array,
        *,
        initial_carry: tuple[Carry | None, Carry | None] | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
    ) -> Any:
        """Merged outputs ``[*B, T, F]`` (a pair with ``merge=None``); with ``return_carry`` also both final carries."""
        ys, carries = self.run(xs, initial_carry=initial_carry, lengths=lengths, resets=resets)
        return (ys, carries) if self.return_carry else ys

    def run(
        self,
        xs: Array,
        *,
        initial_carry: tuple[Carry | None, Carry | None] | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
    ) -> tuple[Any, tuple[Carry, Carry]]:
        """Like calling the layer, but always returns ``(ys, (forward_carry, backward_carry))``."""
        if initial_carry is None:
            initial_carry = (None, None)
        elif not isinstance(initial_carry, (tuple, list)) or len(initial_carry) != 2:
            raise ValueError(
                "Bidirectional initial_carry must be None or a pair (forward, backward), "
                f"got {type(initial_carry).__name__}"
            )
        ys_f, carry_f = self.forward.run(xs, initial_carry=initial_carry[0], lengths=lengths, resets=resets)
        ys_b, carry_b = self.backward.run(xs, initial_carry=initial_carry[1], lengths=lengths, resets=resets)
        return merge_directions(ys_f, ys_b, self.merge), (carry_f, carry_b)
