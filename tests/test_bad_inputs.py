"""Every public entry point refuses wrong input with an error that names the argument.

One table: each row is a call a user could type, the error type it must
raise (``ValueError`` or ``TypeError``) and a pattern that the message must
contain, naming the argument. Adding a case is one line. A second part is
generated from the cell registry: every registered cell's declared fields get a
value of the wrong type (or a non-finite float), so a new cell is covered
without a line here. No row matches JAX's own messages: an error that escapes
from inside jax fails its row.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import recurrax
import recurrax.attention as attention
import recurrax.conv as conv
import recurrax.train as train
from cell_registry import CELL_CASES
from recurrax import nn
from recurrax._validation import _field_rule

KEY = jax.random.key(0)
CELL = recurrax.lstm(4)
PARAMS = CELL.init(KEY, 3)
XS = jnp.ones((2, 5, 3))
GRU_PARAMS = recurrax.gru(4).init(KEY, 3)
DATA = {"inputs": np.ones((4, 5, 3), np.float32), "targets": np.ones((4, 1), np.float32)}


def _rngs() -> nnx.Rngs:
    return nnx.Rngs(0)


def _linear_model() -> nnx.Module:
    return nnx.Linear(3, 1, rngs=_rngs())


def _without(tree: dict, key: str) -> dict:
    return {k: v for k, v in tree.items() if k != key}


class Case(NamedTuple):
    name: str
    call: Callable[[], Any]
    error: type[Exception]
    names: str  # a regex the message must match: the argument's name (and what was expected)


CASES = [
    # ---------------------------------------------------------------- cells
    Case("cell hidden 0", lambda: recurrax.lstm(0), ValueError, "hidden_size"),
    Case("cell hidden float", lambda: recurrax.gru(2.5), TypeError, "hidden_size"),
    Case("cell hidden bool", lambda: recurrax.simple_rnn(True), TypeError, "hidden_size"),
    Case("gru reset_after str", lambda: recurrax.gru(8, reset_after="yes"), TypeError, "reset_after must be a bool"),
    Case("lstm forget_bias nan", lambda: recurrax.lstm(8, forget_bias=float("nan")), ValueError, "forget_bias"),
    Case("lstm forget_bias str", lambda: recurrax.lstm(8, forget_bias="1"), TypeError, "forget_bias"),
    Case("lstm proj_size negative", lambda: recurrax.lstm(8, proj_size=-1), ValueError, "proj_size"),
    Case("lstm peephole int", lambda: recurrax.lstm(8, peephole=1), TypeError, "peephole must be a bool"),
    Case("lstm dtype int", lambda: recurrax.lstm(8, dtype=jnp.int32), TypeError, "dtype"),
    Case("lstm kernel_init str", lambda: recurrax.lstm(8, kernel_init="glorot"), TypeError, "kernel_init"),
    Case("simple_rnn activation", lambda: recurrax.simple_rnn(8, activation="gelu"), ValueError, "activation"),
    Case("lru r_min > r_max", lambda: recurrax.lru(8, r_min=0.9, r_max=0.5), ValueError, "r_min"),
    Case("qrnn pooling", lambda: recurrax.qrnn(8, pooling="max"), ValueError, "pooling"),
    Case("qrnn window 0", lambda: recurrax.qrnn(8, window=0), ValueError, "window"),
    Case("conv_lstm spatial list", lambda: recurrax.conv_lstm(2, spatial_shape=[3]), TypeError, "spatial_shape"),
    Case("recurrent_dropout rate 1", lambda: recurrax.recurrent_dropout(CELL, 1.0), ValueError, "rate"),
    Case("recurrent_dropout str cell", lambda: recurrax.recurrent_dropout("lstm", 0.1), TypeError, "Cell"),
    Case("zoneout rate -0.1", lambda: recurrax.zoneout(CELL, -0.1), ValueError, "rate"),
    # ----------------------------------------------------------------- init
    Case("init in_features 0", lambda: CELL.init(KEY, 0), ValueError, "in_features"),
    Case("init in_features -1", lambda: recurrax.gru(4).init(KEY, -1), ValueError, "in_features"),
    Case("init in_features 3.5", lambda: CELL.init(KEY, 3.5), TypeError, "in_features"),
    Case("init in_features str", lambda: CELL.init(KEY, "3"), TypeError, "in_features"),
    Case("init in_features bool", lambda: recurrax.min_gru(4).init(KEY, True), TypeError, "in_features"),
    Case("init key int", lambda: CELL.init(0, 3), TypeError, "key"),
    Case("init key float array", lambda: CELL.init(jnp.zeros(2), 3), TypeError, "key"),
    # ----------------------------------------------------------------- scan
    Case("scan params None", lambda: recurrax.scan(CELL, None, XS), TypeError, "params"),
    Case("scan another cell's params", lambda: recurrax.scan(CELL, GRU_PARAMS, XS), ValueError, "params"),
    Case("scan params missing key", lambda: recurrax.scan(CELL, _without(PARAMS, "bias"), XS), ValueError, "bias"),
    Case(
        "scan params wrong leaf shape",
        lambda: recurrax.scan(CELL, {**PARAMS, "bias": jnp.zeros(3)}, XS),
        ValueError,
        r"params\['bias'\]",
    ),
    Case("scan xs wrong width", lambda: recurrax.scan(CELL, PARAMS, jnp.ones((2, 5, 4))), ValueError, "input_kernel"),
    Case("scan xs int", lambda: recurrax.scan(CELL, PARAMS, jnp.ones((2, 5, 3), jnp.int32)), TypeError, "xs"),
    Case("scan xs 1-d", lambda: recurrax.scan(CELL, PARAMS, jnp.ones(3)), ValueError, "xs"),
    Case("scan cell str", lambda: recurrax.scan("lstm", PARAMS, XS), TypeError, "cell"),
    Case(
        "scan lengths float",
        lambda: recurrax.scan(CELL, PARAMS, XS, lengths=jnp.array([1.0, 2.0])),
        TypeError,
        "lengths",
    ),
    Case(
        "scan lengths shape",
        lambda: recurrax.scan(CELL, PARAMS, XS, lengths=jnp.array([1, 2, 3])),
        ValueError,
        "lengths",
    ),
    Case("scan lengths 0", lambda: recurrax.scan(CELL, PARAMS, XS, lengths=jnp.array([0, 2])), ValueError, "lengths"),
    Case("scan lengths > T", lambda: recurrax.scan(CELL, PARAMS, XS, lengths=jnp.array([6, 2])), ValueError, "lengths"),
    Case(
        "scan resets int",
        lambda: recurrax.scan(CELL, PARAMS, XS, resets=jnp.zeros((2, 5), jnp.int32)),
        TypeError,
        "resets",
    ),
    Case("scan unroll 0", lambda: recurrax.scan(CELL, PARAMS, XS, unroll=0), ValueError, "unroll"),
    Case("scan method", lambda: recurrax.scan(CELL, PARAMS, XS, method="bogus"), ValueError, "method"),
    Case(
        "scan parallel non-linear", lambda: recurrax.scan(CELL, PARAMS, XS, method="parallel"), ValueError, "parallel"
    ),
    Case("scan unknown option", lambda: recurrax.scan(CELL, PARAMS, XS, bogus=1), TypeError, "bogus"),
    Case(
        "scan initial_carry batch",
        lambda: recurrax.scan(CELL, PARAMS, XS, initial_carry=CELL.initial_carry((3,))),
        ValueError,
        "initial_carry",
    ),
    Case("stacked_scan params count", lambda: recurrax.stacked_scan([CELL, CELL], [PARAMS], XS), ValueError, "params"),
    Case("ScanOptions remat str", lambda: recurrax.ScanOptions(remat="yes"), TypeError, "remat"),
    # ------------------------------------------------------------------- nn
    Case("nn.LSTM in_features 0", lambda: nn.LSTM(0, 4, rngs=_rngs()), ValueError, "in_features"),
    Case("nn.LSTM rngs int", lambda: nn.LSTM(3, 4, rngs=0), TypeError, "rngs"),
    Case("nn.LSTM dropout 1.5", lambda: nn.LSTM(3, 4, recurrent_dropout=1.5, rngs=_rngs()), ValueError, "rate"),
    Case("nn.GRU reset_after str", lambda: nn.GRU(3, 4, reset_after="no", rngs=_rngs()), TypeError, "reset_after"),
    Case("nn.RNN cell str", lambda: nn.RNN("lstm", 3, rngs=_rngs()), TypeError, "cell"),
    Case("nn layer wrong width", lambda: nn.LSTM(3, 4, rngs=_rngs())(jnp.ones((2, 5, 4))), ValueError, "xs"),
    Case("nn.StackedRNN empty", lambda: nn.StackedRNN([], rngs=_rngs()), ValueError, "layers"),
    Case(
        "nn.Bidirectional forward reversed",
        lambda: nn.Bidirectional(nn.GRU(3, 4, reverse=True, rngs=_rngs()), nn.GRU(3, 4, reverse=True, rngs=_rngs())),
        ValueError,
        "forward",
    ),
    Case(
        "nn.Bidirectional backward not reversed",
        lambda: nn.Bidirectional(nn.GRU(3, 4, rngs=_rngs()), nn.GRU(3, 4, rngs=_rngs())),
        ValueError,
        "backward must be built with reverse=True",
    ),
    # --------------------------------------------------------------- blocks
    Case("attention heads", lambda: nn.MultiHeadAttention(8, num_heads=3, rngs=_rngs()), ValueError, "num_heads"),
    Case(
        "transformer layers 0",
        lambda: nn.TransformerEncoder(8, num_layers=0, num_heads=2, rngs=_rngs()),
        ValueError,
        "num_layers",
    ),
    Case("conv kernel_size 0", lambda: nn.Conv1D(3, 4, kernel_size=0, rngs=_rngs()), ValueError, "kernel_size"),
    Case("tcn kernel_size -1", lambda: nn.TCN(3, [4], kernel_size=-1, rngs=_rngs()), ValueError, "kernel_size"),
    Case("conv padding", lambda: conv.conv1d(4, 3, padding="full"), ValueError, "padding"),
    Case(
        "attention mask shape",
        lambda: attention.dot_product_attention(
            jnp.ones((2, 5, 8)), jnp.ones((2, 5, 8)), jnp.ones((2, 5, 8)), mask=jnp.ones((3, 3), bool)
        ),
        ValueError,
        "mask",
    ),
    # --------------------------------------------------------------- models
    Case(
        "classifier num_outputs 0",
        lambda: recurrax.models.SequenceClassifier(3, 0, rngs=_rngs()),
        ValueError,
        "num_outputs",
    ),
    Case(
        "classifier cell",
        lambda: recurrax.models.SequenceClassifier(3, 1, cell="bogus", rngs=_rngs()),
        ValueError,
        "cell",
    ),
    Case(
        "classifier readout",
        lambda: recurrax.models.SequenceClassifier(3, 1, readout="max", rngs=_rngs()),
        ValueError,
        "readout",
    ),
    Case("load_task name", lambda: recurrax.tasks.load_task("bogus"), ValueError, "task"),
    Case("load_task seq_len 0", lambda: recurrax.tasks.load_task("adding", seq_len=0), ValueError, "seq_len"),
    # ------------------------------------------------------------ optimizer
    Case("optimizer lr str", lambda: train.build_optimizer("adam", "fast"), TypeError, "learning_rate"),
    Case("optimizer lr negative", lambda: train.build_optimizer("adam", -1e-3), ValueError, "learning_rate"),
    Case("optimizer lr zero", lambda: train.build_optimizer("adam", 0.0), ValueError, "learning_rate"),
    Case("optimizer lr nan", lambda: train.build_optimizer("sgd", float("nan")), ValueError, "learning_rate"),
    Case("optimizer lr bool", lambda: train.build_optimizer("sgd", True), TypeError, "learning_rate"),
    Case(
        "optimizer schedule negative",
        lambda: train.build_optimizer("adam", optax.linear_schedule(1e-3, -1e-3, 100)),
        ValueError,
        "learning_rate schedule",
    ),
    Case("optimizer name", lambda: train.build_optimizer("adamm", 1e-3), ValueError, "optimizer"),
    Case("optimizer clip_norm 0", lambda: train.build_optimizer("adam", 1e-3, clip_norm=0), ValueError, "clip_norm"),
    Case(
        "optimizer accumulate 0",
        lambda: train.build_optimizer("adam", 1e-3, accumulate_steps=0),
        ValueError,
        "accumulate_steps",
    ),
    # ----------------------------------------------------- losses and fit
    Case(
        "softmax_cross_entropy label shape",
        lambda: train.softmax_cross_entropy(jnp.ones((3, 4)), jnp.ones((2,), jnp.int32)),
        ValueError,
        "labels",
    ),
    Case(
        "Trainer loss name", lambda: train.Trainer(_linear_model(), optax.adam(1e-3), loss="bogus"), ValueError, "loss"
    ),
    Case(
        "Trainer metric name",
        lambda: train.Trainer(_linear_model(), optax.adam(1e-3), metrics=["bogus"]),
        ValueError,
        "metric",
    ),
    Case("fit optimizer str", lambda: train.fit(_linear_model(), "adam", DATA, progress=False), TypeError, "optimizer"),
    Case(
        "fit batch_size 0",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), DATA, batch_size=0, progress=False),
        ValueError,
        "batch_size",
    ),
    Case(
        "fit epochs -1",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), DATA, epochs=-1, progress=False),
        ValueError,
        "epochs",
    ),
    Case(
        "fit epochs 0",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), DATA, epochs=0, progress=False),
        ValueError,
        "epochs must be a positive int",
    ),
    Case(
        "fit data list",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), [1, 2], progress=False),
        TypeError,
        "train_data",
    ),
    Case(
        "fit data no targets",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), {"inputs": DATA["inputs"]}, progress=False),
        ValueError,
        "targets",
    ),
    Case(
        "fit validation_every 0",
        lambda: train.fit(
            _linear_model(), optax.adam(1e-3), DATA, validation_data=DATA, validation_every=0, progress=False
        ),
        ValueError,
        "validation_every",
    ),
    Case("Checkpointer every_steps 0", lambda: train.Checkpointer("unused", every_steps=0), ValueError, "every_steps"),
    Case("Checkpointer mode", lambda: train.Checkpointer("unused", mode="up"), ValueError, "mode"),
    Case("EarlyStopping patience", lambda: train.EarlyStopping(patience=-1), ValueError, "patience"),
]


def _wrong_value(rule: Any) -> tuple[Any, str]:
    """A value the field's declared type refuses, and a stable label for the test id."""
    if "float" in rule.atoms:
        return float("nan"), "nan"
    if rule.atoms & {"bool", "int", "tuple"}:
        return "yes", "'yes'"
    if rule.literals and isinstance(rule.literals[0], str):
        return "not-a-choice", "'not-a-choice'"
    return object(), "object()"


def _generated_cell_cases() -> list[Case]:
    """For every registered cell, each declared field given a value of the wrong kind.

    The cell is rebuilt with ``dataclasses.replace`` from a valid instance (the
    shared registry of test cases), so required fields need no knowledge here.
    """
    valid = {}
    for case in CELL_CASES:
        valid.setdefault(type(case.make()), case.make())
    cases = []
    for entry in recurrax.cells.registered_cells():
        for field in dataclasses.fields(entry.cell_type):
            rule = _field_rule(field.type)
            if rule is None or field.name == "hidden_size":
                continue
            value, label = _wrong_value(rule)
            error = ValueError if label in ("nan", "'not-a-choice'") else TypeError
            cases.append(
                Case(
                    f"{entry.name}({field.name}={label})",
                    lambda cell=valid[entry.cell_type], name=field.name, value=value: dataclasses.replace(
                        cell, **{name: value}
                    ),
                    error,
                    rf"\b{field.name} must be",
                )
            )
    return cases


ALL_CASES = CASES + _generated_cell_cases()


def test_the_table_is_long_enough():
    assert len(CASES) >= 60, len(CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=[case.name for case in ALL_CASES])
def test_bad_input_gives_a_clear_error_naming_the_argument(case: Case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Checkpointer rows name a relative directory
    with pytest.raises(case.error) as caught:
        case.call()
    assert caught.type in (ValueError, TypeError), f"{case.name}: {caught.type.__name__}: {caught.value}"
    # Raised by recurrax, not from deep inside jax, optax or flax.
    frame = caught.tb
    while frame.tb_next is not None:
        frame = frame.tb_next
    origin = frame.tb_frame.f_code.co_filename
    assert "/recurrax/" in origin or origin.endswith("test_bad_inputs.py"), f"{case.name}: raised in {origin}"
    assert re.search(case.names, str(caught.value)), f"{case.name}: message {str(caught.value)!r} lacks {case.names!r}"
