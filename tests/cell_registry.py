"""One registry of every public cell; it drives the cross-cutting tests.

The explicit cases below cover variants and numpy references; every cell in
``recurrax.cells``' registry that has no case here gets a default one (its
factory with ``hidden_size`` only), so a new cell needs no line in this file.
``test_registry_covers_every_public_cell`` fails when a public cell class is
missing, so a new cell cannot skip jit/grad/dtype/lengths testing.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import numpy_reference as ref
import recurrax
import recurrax.cells

# Shapes shared by every cross-cutting test, so XLA compiles are reused.
BATCH, STEPS, FEATURES, HIDDEN, PROJ = 3, 6, 3, 5, 3


@dataclasses.dataclass(frozen=True)
class CellCase:
    name: str
    make: Callable[..., recurrax.Cell]  # make(**dtype_kwargs) -> cell
    reference_step: Callable[..., Any] | None = None  # numpy step(params, carry, x)
    linear: bool = False


CELL_CASES: list[CellCase] = [
    CellCase(
        "simple_rnn_tanh",
        lambda **kw: recurrax.simple_rnn(HIDDEN, **kw),
        partial(ref.simple_rnn_step, activation="tanh"),
    ),
    CellCase(
        "simple_rnn_relu",
        lambda **kw: recurrax.simple_rnn(HIDDEN, activation="relu", **kw),
        partial(ref.simple_rnn_step, activation="relu"),
    ),
    CellCase("lstm", lambda **kw: recurrax.lstm(HIDDEN, **kw), ref.lstm_step),
    CellCase(
        "lstm_peephole",
        lambda **kw: recurrax.lstm(HIDDEN, peephole=True, **kw),
        partial(ref.lstm_step, peephole=True),
    ),
    CellCase(
        "lstm_layer_norm",
        lambda **kw: recurrax.lstm(HIDDEN, layer_norm=True, **kw),
        partial(ref.lstm_step, layer_norm=True),
    ),
    CellCase(
        "lstm_proj",
        lambda **kw: recurrax.lstm(HIDDEN, proj_size=PROJ, **kw),
        partial(ref.lstm_step, proj=True),
    ),
    CellCase("gru", lambda **kw: recurrax.gru(HIDDEN, **kw), partial(ref.gru_step, reset_after=True)),
    CellCase(
        "gru_reset_before",
        lambda **kw: recurrax.gru(HIDDEN, reset_after=False, **kw),
        partial(ref.gru_step, reset_after=False),
    ),
    CellCase("min_gru", lambda **kw: recurrax.cells.min_gru(HIDDEN, **kw), linear=True),
    CellCase("min_gru_log_space", lambda **kw: recurrax.cells.min_gru(HIDDEN, log_space=True, **kw), linear=True),
    CellCase("min_lstm", lambda **kw: recurrax.cells.min_lstm(HIDDEN, **kw), linear=True),
    CellCase("lru", lambda **kw: recurrax.cells.lru(HIDDEN, r_min=0.4, r_max=0.9, skip=False, **kw), linear=True),
    CellCase(
        "causal_conv1d",
        lambda **kw: recurrax.conv.causal_conv1d(HIDDEN, 3, in_features=FEATURES, dilation=2, **kw),
    ),
    CellCase("conv_lstm_1d", lambda **kw: recurrax.cells.conv_lstm(2, spatial_shape=(FEATURES,), **kw)),
    # Deterministic regularised cells (their stochastic modes: tests/test_regularization.py).
    CellCase(
        "lstm_recurrent_dropout_eval",
        lambda **kw: recurrax.cells.recurrent_dropout(recurrax.lstm(HIDDEN, **kw), 0.3, deterministic=True),
    ),
    CellCase(
        "gru_zoneout_eval",
        lambda **kw: recurrax.cells.zoneout(recurrax.gru(HIDDEN, **kw), 0.2, deterministic=True),
    ),
]


def _registered_defaults(explicit: list[CellCase]) -> list[CellCase]:
    """A default case for every registered cell that the explicit cases do not build."""
    covered = {type(case.make()) for case in explicit}
    return [
        CellCase(entry.name, lambda entry=entry, **kw: entry.factory(HIDDEN, **kw), linear=entry.cell_type.is_linear)
        for entry in recurrax.cells.registered_cells()
        if entry.cell_type not in covered
    ]


CELL_CASES += _registered_defaults(CELL_CASES)


def randomized_params(
    cell: recurrax.Cell, key: jax.Array, in_features: int = FEATURES, *, values_from: recurrax.Cell | None = None
) -> Any:
    """Initial params plus noise on every leaf: zero biases would hide a missing bias.

    ``values_from``: the float32 twin of ``cell`` (``case.make()``), whose float32 ``init``
    supplies the values, cast to ``cell``'s dtypes: one set of initialiser compiles serves
    every dtype (eagerly, each initialiser compiles per shape, dtype and x64 mode). The
    noise is numpy's, seeded by ``key``: jax's would compile a program per leaf shape.
    """
    dtypes = jax.eval_shape(functools.partial(cell.init, in_features=in_features), key)
    if values_from is None:
        params = cell.init(key, in_features)
    else:
        with jax.enable_x64(False):
            params = values_from.init(key, in_features)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))

    def noisy(leaf: jax.Array, want: jax.ShapeDtypeStruct) -> jax.Array:
        value = np.asarray(leaf)
        if jnp.issubdtype(want.dtype, jnp.floating):
            value = value.astype(np.float32) + rng.uniform(-0.3, 0.3, value.shape).astype(np.float32)
        assert value.shape == want.shape
        return jnp.asarray(value.astype(want.dtype))

    return jax.tree.map(noisy, params, dtypes)


def carry_to_numpy(carry: Any) -> Any:
    """recurrax carries (NamedTuples) as plain tuples/arrays for the numpy references."""
    if isinstance(carry, tuple):
        return tuple(carry)
    return carry
