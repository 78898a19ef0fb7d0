"""Composition of scans: stacked layers and bidirectional layers, as pure functions.

Each layer is one call of :func:`recurrax.scan`, so every layer keeps its
hoisted input projection, ``lengths``, ``unroll`` and ``remat``. The Flax
modules :class:`recurrax.nn.StackedRNN` and :class:`recurrax.nn.Bidirectional`
use the same helpers between and around their layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from recurrax._cell import Cell
from recurrax._ops import dropout as inverted_dropout
from recurrax._options import ScanOptions, accepts_scan_options
from recurrax._params import check_params
from recurrax._scan import scan
from recurrax._types import Array, Carry, Params
from recurrax._validation import check_mask_like, check_rate, check_sequence

MergeMode = Literal["concat", "sum", "mean", "mul"] | None
MERGE_MODES: tuple[MergeMode, ...] = ("concat", "sum", "mean", "mul", None)


# ------------------------------------------------------------------ helpers
def check_merge(merge: Any) -> None:
    """Raises unless ``merge`` is one of :data:`MERGE_MODES`."""
    if merge not in MERGE_MODES:
        raise ValueError(f"merge must be one of {MERGE_MODES}, got {merge!r}")


def merged_features(merge: MergeMode, forward_features: int, backward_features: int) -> int | None:
    """Features of the merged output (``None`` when ``merge`` is None: a pair is returned)."""
    check_merge(merge)
    if merge is None:
        return None
    if merge == "concat":
        return forward_features + backward_features
    if forward_features != backward_features:
        raise ValueError(
            f"merge={merge!r} needs both directions to output the same number of features, got "
            f"{forward_features} (forward) and {backward_features} (backward); use merge='concat'"
        )
    return forward_features


def merge_directions(forward_ys: Array, backward_ys: Array, merge: MergeMode) -> Array | tuple[Array, Array]:
    """Combines the two directions' outputs ``[..., F]`` along their feature axis."""
    check_merge(merge)
    if merge is None:
        return forward_ys, backward_ys
    if merge == "concat":
        return jnp.concatenate([forward_ys, backward_ys], axis=-1)
    if merge == "sum":
        return forward_ys + backward_ys
    if merge == "mean":
        return (forward_ys + backward_ys) / 2
    return forward_ys * backward_ys


def connect_layers(
    outputs: Array,
    inputs: Array,
    *,
    layer_index: int,
    num_layers: int,
    residual: bool,
    dropout_fn: Callable[[Array], Array] | None,
) -> Array:
    """What the next layer receives: ``outputs`` (+ ``inputs`` if residual), then dropout.

    The residual connection skips the first layer (whose input usually has a
    different width); dropout is applied between layers, not after the last.
    """
    if residual and layer_index > 0:
        outputs = outputs + inputs
    if dropout_fn is not None and layer_index < num_layers - 1:
        outputs = dropout_fn(outputs)
    return outputs


def check_residual_widths(in_features: Sequence[int], out_features: Sequence[int | None]) -> None:
    """Residual connections need each layer after the first to keep its width."""
    for i in range(1, len(in_features)):
        if in_features[i] != out_features[i]:
            raise ValueError(
                f"residual=True adds each layer's input to its output, but layer {i} maps "
                f"{in_features[i]} features to {out_features[i]}; use equal widths after the first layer "
                "or residual=False"
            )


def _layer_carry(cell: Cell, given: Carry | None, batch_shape: tuple[int, ...], key: Array | None) -> Carry | None:
    """The given carry, or a regularised cell's initial carry with its randomness drawn from ``key``."""
    if given is not None or not cell.stochastic:
        return given
    return cell.random_initial_carry(batch_shape, key)


def _as_pair(value: Any, name: str) -> tuple[Any, Any]:
    if value is None:
        return None, None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be None or a pair (forward, backward), got {type(value).__name__}")
    return value[0], value[1]


def _needs_key(cells: Sequence[Cell], carries: Sequence[Carry | None], deterministic: bool) -> list[int]:
    if deterministic:
        return []
    return [i for i, (c, given) in enumerate(zip(cells, carries, strict=True)) if c.stochastic and given is None]


def _batch_shape(xs: Array, time_major: bool) -> tuple[int, ...]:
    return tuple(xs.shape[1:-1] if time_major else xs.shape[:-2])


# ------------------------------------------------------------------ stacking
@accepts_scan_options
def stacked_scan(
    cells: Sequence[Cell],
    params: Sequence[Params],
    xs: Array,
    *,
    initial_carry: Sequence[Carry | None] | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    dropout: float = 0.0,
    residual: bool = False,
    deterministic: bool = False,
    key: Array | None = None,
    options: ScanOptions | None = None,
    **scan_options: Any,
) -> tuple[Array, tuple[Carry, ...]]:
    """Runs layers of cells one after the other, each over the whole sequence; equal to::

        x = xs
        for i, (cell, p) in enumerate(zip(cells, params)):
            y, final_carry[i] = scan(cell, p, x, initial_carry=initial_carry[i], lengths=lengths, ...)
            if residual and i > 0:
                y = y + x                        # every layer after the first
            x = dropout(y) if i < len(cells) - 1 else y
        return x, final_carry

    Shapes: ``xs[*B, T, D]`` (``[T, *B, D]`` time-major) → ``ys[*B, T, O_last]``
    and one final carry per layer. Padding outputs (past ``lengths``) stay zero.

    Args:
      cells: one cell per layer; layer ``i + 1`` takes layer ``i``'s ``output_size`` features.
      params: one parameter pytree per layer (``cells[i].init(key, input_size)``).
      xs: the input sequence.
      initial_carry: ``None`` or one carry (or ``None``) per layer.
      lengths, resets: as in :func:`recurrax.scan`, for every layer.
      dropout: probability of dropping each output element between layers.
      residual: add each layer's input to its output (all layers after the first;
        they must keep the width).
      deterministic: evaluation mode: no dropout between layers, and every
        regularised cell (:func:`~recurrax.cells.recurrent_dropout`,
        :func:`~recurrax.cells.zoneout`) in evaluation mode too.
      key: randomness for the dropout between layers and for the initial carries
        of regularised cells that ``initial_carry`` does not give; required in training
        when either is used.
      options: a :class:`~recurrax.ScanOptions` for every layer (its fields may
        be given as keywords, as in :func:`recurrax.scan`).

    Returns:
      ``(ys, final_carries)`` with one final carry per layer.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cells = [recurrax.lstm(8), recurrax.gru(8)]
      >>> params = [cells[0].init(jax.random.key(0), 3), cells[1].init(jax.random.key(1), 8)]
      >>> ys, (c0, c1) = recurrax.stacked_scan(
      ...     cells, params, jnp.ones((2, 5, 3)), dropout=0.1, residual=True, key=jax.random.key(2)
      ... )
      >>> ys.shape, c0.h.shape, c1.shape
      ((2, 5, 8), (2, 8), (2, 8))
    """
    options = ScanOptions.resolve(options, scan_options)
    cells, params = list(cells), list(params)
    if not cells:
        raise ValueError("cells must contain at least one cell")
    for i, cell in enumerate(cells):
        if not isinstance(cell, Cell):
            raise TypeError(f"cells[{i}] must be a recurrax Cell, got {type(cell).__name__}")
    if len(params) != len(cells):
        raise ValueError(f"params must have one entry per cell ({len(cells)}), got {len(params)}")
    num_layers = len(cells)
    carries = [None] * num_layers if initial_carry is None else list(initial_carry)
    if len(carries) != num_layers:
        raise ValueError(f"initial_carry must be None or have one entry per layer ({num_layers}), got {len(carries)}")
    dropout = check_rate(dropout, "dropout")
    xs = check_sequence(xs, "xs", time_major=options.time_major, features=None)
    in_features = [xs.shape[-1]] + [cell.output_size for cell in cells[:-1]]
    out_features = [cell.output_size for cell in cells]
    if residual:
        check_residual_widths(in_features, out_features)
    for i, (cell, p) in enumerate(zip(cells, params, strict=True)):
        check_params(cell, p, in_features[i], name=f"params[{i}]")
    batch_shape = _batch_shape(xs, options.time_major)

    cells = [cell.with_deterministic(deterministic) for cell in cells]
    use_dropout = dropout > 0.0 and not deterministic
    stochastic = _needs_key(cells, carries, deterministic)
    if key is None and (use_dropout or stochastic):
        why = f"dropout={dropout}" if use_dropout else f"cells[{stochastic[0]}] is a regularised cell"
        raise ValueError(f"key is required in training ({why}); pass key=... or deterministic=True")
    keys = [None] * (2 * num_layers) if key is None else list(jax.random.split(key, 2 * num_layers))

    x = xs
    finals = []
    for i, (cell, p) in enumerate(zip(cells, params, strict=True)):
        carry = _layer_carry(cell, carries[i], batch_shape, keys[2 * i])
        y, final = scan(cell, p, x, initial_carry=carry, lengths=lengths, resets=resets, options=options)
        finals.append(final)
        layer_key = keys[2 * i + 1]
        drop = (lambda a, k=layer_key: inverted_dropout(a, dropout, k)) if use_dropout else None
        x = connect_layers(y, x, layer_index=i, num_layers=num_layers, residual=residual, dropout_fn=drop)
    return x, tuple(finals)


# ------------------------------------------------------------------ bidirectional
@accepts_scan_options
def bidirectional_scan(
    forward_cell: Cell,
    forward_params: Params,
    backward_cell: Cell,
    backward_params: Params,
    xs: Array,
    *,
    merge: MergeMode = "concat",
    initial_carry: tuple[Carry | None, Carry | None] | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    deterministic: bool = False,
    key: Array | None = None,
    options: ScanOptions | None = None,
    **scan_options: Any,
) -> tuple[Array | tuple[Array, Array], tuple[Carry, Carry]]:
    """Runs one cell forwards and another backwards over ``xs`` and merges their outputs; equal to::

        ys_f, carry_f = scan(forward_cell, forward_params, xs, lengths=lengths, ...)
        ys_b, carry_b = scan(backward_cell, backward_params, xs, lengths=lengths, reverse=True, ...)
        return merge(ys_f, ys_b), (carry_f, carry_b)

    The backward direction runs each example backwards over its own valid steps
    (``t = lengths[b] - 1, ..., 0``); both outputs stay aligned with ``xs`` and
    are zero at padding, so every merge keeps padding zero. ``resets`` mark
    episode starts in ``xs``'s order: the backward direction restarts its carry
    at each episode's last step, so an episode never sees a later one.

    Shapes: ``xs[*B, T, D]`` (``[T, *B, D]`` time-major) →
    ``ys[*B, T, F]`` with ``F = O_f + O_b`` for ``"concat"``, ``O`` for
    ``"sum"``, ``"mean"`` and ``"mul"``; ``merge=None`` returns ``(ys_f, ys_b)``.

    Args:
      forward_cell, forward_params: the forward direction.
      backward_cell, backward_params: the backward direction (its own parameters).
      xs: the input sequence.
      merge: ``"concat"``, ``"sum"``, ``"mean"``, ``"mul"`` or ``None``.
      initial_carry: ``None`` or a pair ``(forward, backward)`` (either may be ``None``).
      lengths, resets: as in :func:`recurrax.scan`.
      deterministic: evaluation mode for regularised cells.
      key: randomness for the initial carries of regularised cells (training only).
      options: a :class:`~recurrax.ScanOptions` for both directions (its fields may
        be given as keywords); the backward direction runs with ``reverse=True``.

    Returns:
      ``(ys, (forward_carry, backward_carry))``.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> fwd, bwd = recurrax.gru(4), recurrax.gru(4)
      >>> pf, pb = fwd.init(jax.random.key(0), 3), bwd.init(jax.random.key(1), 3)
      >>> ys, (hf, hb) = recurrax.bidirectional_scan(fwd, pf, bwd, pb, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, bool(jnp.all(ys[1, 2:] == 0))
      ((2, 5, 8), True)
    """
    options = ScanOptions.resolve(options, scan_options)
    if options.reverse:
        raise ValueError("bidirectional_scan runs the backward direction itself; options.reverse must be False")
    for name, cell in (("forward_cell", forward_cell), ("backward_cell", backward_cell)):
        if not isinstance(cell, Cell):
            raise TypeError(f"{name} must be a recurrax Cell, got {type(cell).__name__}")
    merged_features(merge, forward_cell.output_size, backward_cell.output_size)
    time_major = options.time_major
    xs = check_sequence(xs, "xs", time_major=time_major, features=None)
    check_params(forward_cell, forward_params, xs.shape[-1], name="forward_params")
    check_params(backward_cell, backward_params, xs.shape[-1], name="backward_params")
    batch_shape = _batch_shape(xs, time_major)
    num_steps = xs.shape[0 if time_major else xs.ndim - 2]
    if resets is not None:
        resets = check_mask_like(resets, "resets", batch_shape, num_steps, time_major)
    carries = list(_as_pair(initial_carry, "initial_carry"))
    cells = [forward_cell.with_deterministic(deterministic), backward_cell.with_deterministic(deterministic)]
    stochastic = _needs_key(cells, carries, deterministic)
    if key is None and stochastic:
        name = ("forward_cell", "backward_cell")[stochastic[0]]
        raise ValueError(
            f"key is required in training ({name} is a regularised cell); pass key=... or deterministic=True"
        )
    keys = [None, None] if key is None else list(jax.random.split(key))

    ys_f, carry_f = scan(
        cells[0],
        forward_params,
        xs,
        initial_carry=_layer_carry(cells[0], carries[0], batch_shape, keys[0]),
        lengths=lengths,
        resets=resets,
        options=options,
    )
    ys_b, carry_b = scan(
        cells[1],
        backward_params,
        xs,
        initial_carry=_layer_carry(cells[1], carries[1], batch_shape, keys[1]),
        lengths=lengths,
        resets=resets,
        options=options.replace(reverse=True),
    )
    return merge_directions(ys_f, ys_b, merge), (carry_f, carry_b)
