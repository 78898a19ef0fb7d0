"""``StackedRNN``: recurrent layers one after the other, with dropout and residual connections between them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flax import nnx

from recurrax._compose import check_residual_widths, connect_layers
from recurrax._types import Array, Carry
from recurrax._validation import check_rate
from recurrax.nn._bidirectional import Bidirectional
from recurrax.nn._rnn import RNN


class StackedRNN(nnx.Module):
    """Layers run one after the other, each over the whole sequence (the module form of :func:`recurrax.stacked_scan`).

    Between layers the outputs go through ``nnx.Dropout(dropout)`` (drawn from
    the ``"dropout"`` rng stream, off after ``model.eval()``); with ``residual``
    every layer after the first adds its input to its output::

        x = xs
        for i, layer in enumerate(layers):
            y = layer(x) + (x if residual and i > 0 else 0)
            x = dropout(y) if i < len(layers) - 1 else y

    Args:
      layers: :class:`RNN` or :class:`Bidirectional` layers (not ``merge=None``);
        layer ``i + 1`` takes layer ``i``'s ``out_features``. Their own
        ``return_carry`` is ignored inside the stack.
      dropout: probability of dropping each output element between layers.
      residual: residual connections around every layer after the first (they
        must keep the width).
      rngs: needed when ``dropout > 0``.
      return_carry: also return the tuple of every layer's final carry.

    Call: ``stack(xs, *, initial_carry=None, lengths=None, resets=None)``, with
    ``initial_carry`` ``None`` or one entry (or ``None``) per layer.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> rngs = nnx.Rngs(0)
      >>> stack = nn.StackedRNN(
      ...     [nn.LSTM(3, 8, rngs=rngs), nn.LSTM(8, 8, rngs=rngs)], dropout=0.2, residual=True, rngs=rngs
      ... )
      >>> stack(jnp.ones((2, 5, 3))).shape
      (2, 5, 8)
    """

    def __init__(
        self,
        layers: Sequence[RNN | Bidirectional],
        *,
        dropout: float = 0.0,
        residual: bool = False,
        rngs: nnx.Rngs | None = None,
        return_carry: bool = False,
    ):
        layers = list(layers)
        if not layers:
            raise ValueError("layers must contain at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, (RNN, Bidirectional)):
                raise TypeError(f"layers[{i}] must be a recurrax.nn RNN or Bidirectional, got {type(layer).__name__}")
            if layer.out_features is None:
                raise ValueError(f"layers[{i}] is a Bidirectional with merge=None; stacking needs a merged output")
        for i in range(1, len(layers)):
            if layers[i].in_features != layers[i - 1].out_features:
                raise ValueError(
                    f"layers[{i}] takes {layers[i].in_features} features, but layers[{i - 1}] outputs "
                    f"{layers[i - 1].out_features}"
                )
            if layers[i].time_major != layers[0].time_major:
                raise ValueError(f"all layers need the same time_major; layers[{i}] differs from layers[0]")
        if residual:
            check_residual_widths([layer.in_features for layer in layers], [layer.out_features for layer in layers])
        rate = check_rate(dropout, "dropout")
        if rate > 0.0 and rngs is None:
            raise ValueError("rngs is required when dropout > 0 (its 'dropout' stream draws the masks)")
        self.layers = nnx.List(layers)
        self.dropout = nnx.Dropout(rate, rngs=rngs) if rate > 0.0 else nnx.data(None)
        self.residual = bool(residual)
        self.return_carry = bool(return_carry)
        self.in_features = layers[0].in_features
        self.out_features = layers[-1].out_features
        self.time_major = layers[0].time_major

    def __call__(
        self,
        xs: Array,
        *,
        initial_carry: Sequence[Carry | None] | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
    ) -> Any:
        """Outputs of the last layer ``[*B, T, O]``, and every layer's final carry with ``return_carry``."""
        ys, carries = self.run(xs, initial_carry=initial_carry, lengths=lengths, resets=resets)
        return (ys, carries) if self.return_carry else ys

    def run(
        self,
        xs: Array,
        *,
        initial_carry: Sequence[Carry | None] | None = None,
        lengths: Array | None = None,
        resets: Array | None = None,
    ) -> tuple[Array, tuple[Carry, ...]]:
        """Like calling the stack, but always returns ``(ys, final_carries)``."""
        num_layers = len(self.layers)
        carries = [None] * num_layers if initial_carry is None else list(initial_carry)
        if len(carries) != num_layers:
            raise ValueError(
                f"StackedRNN initial_carry must be None or have one entry per layer ({num_layers}), got {len(carries)}"
            )
        x = xs
        finals = []
        for i, layer in enumerate(self.layers):
            y, final = layer.run(x, initial_carry=carries[i], lengths=lengths, resets=resets)
            finals.append(final)
            x = connect_layers(
                y, x, layer_index=i, num_layers=num_layers, residual=self.residual, dropout_fn=self.dropout
            )
        return x, tuple(finals)
