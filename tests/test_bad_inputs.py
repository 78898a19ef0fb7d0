"""Every public entry point refuses wrong input with an error that names the argument.

One table: each row is a call a user could type, the error type it must
raise (``ValueError`` or ``TypeError``) and a pattern that the message must
contain, naming the argument. Adding a case is one line. A second part is
generated from the cell registry: every registered cell's declared fields get a
value of the wrong type (or a non-finite float), so a new cell is covered
without a line here; the same is generated for every declared field of every
block (``recurrax.conv``, ``recurrax.attention``), and a coverage test fails when
a public block is missing from ``BLOCKS``. No row matches JAX's own messages: an
error that escapes from inside jax fails its row. A second, smaller table holds
``recurrax`` command lines: each must exit with status 2 and one line on stderr
naming the flag.
"""

from __future__ import annotations

import dataclasses
import json
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
import recurrax.interop as interop
import recurrax.tasks as tasks
import recurrax.train as train
from cell_registry import CELL_CASES
from recurrax import cli, nn
from recurrax._cell import Cell
from recurrax._validation import field_rule

KEY = jax.random.key(0)
CELL = recurrax.lstm(4)
XS = jnp.ones((2, 5, 3))


def _params_of(cell: Cell, in_features: int) -> dict:
    """Parameters shaped as ``cell.init`` makes them, from numpy: an eager ``init`` would compile its
    initialisers while pytest collects this module, in every worker (1.7 s)."""
    shapes = jax.eval_shape(lambda key: cell.init(key, in_features), KEY)
    return jax.tree.map(lambda s: jnp.asarray(np.full(s.shape, 0.1, s.dtype)), shapes)


PARAMS = _params_of(CELL, 3)
GRU_PARAMS = _params_of(recurrax.gru(4), 3)
DATA = {"inputs": np.ones((4, 5, 3), np.float32), "targets": np.ones((4, 1), np.float32)}
_GRU_SD = {  # a torch.nn.GRU(2, 4) state dict, as numpy arrays
    "weight_ih_l0": np.zeros((12, 2), np.float32),
    "weight_hh_l0": np.zeros((12, 4), np.float32),
    "bias_ih_l0": np.zeros(12, np.float32),
    "bias_hh_l0": np.zeros(12, np.float32),
}
_FRESH = tasks.adding_problem(8, infinite=True, num_validation=1, num_test=1).train


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
    Case("Conv1D stride 0", lambda: conv.Conv1D(features=4, kernel_size=3, stride=0), ValueError, "stride must be"),
    Case("Conv1D stride -1", lambda: conv.Conv1D(features=4, kernel_size=3, stride=-1), ValueError, "stride must be"),
    Case("Conv1D stride 1.5", lambda: conv.Conv1D(features=4, kernel_size=3, stride=1.5), TypeError, "stride must be"),
    Case("Conv1D padding 'foo'", lambda: conv.Conv1D(features=4, kernel_size=3, padding="foo"), ValueError, "padding"),
    Case(
        "Conv1D padding (-1, 0)",
        lambda: conv.Conv1D(features=4, kernel_size=3, padding=(-1, 0)),
        ValueError,
        r"padding must be .* got \(-1, 0\)",
    ),
    Case("Conv1D padding 2.5", lambda: conv.Conv1D(features=4, kernel_size=3, padding=2.5), TypeError, "padding"),
    Case("Conv1D padding (1,)", lambda: conv.Conv1D(features=4, kernel_size=3, padding=(1,)), TypeError, "padding"),
    Case(
        "Conv1D valid, input shorter than the kernel",
        lambda: conv.Conv1D(features=4, kernel_size=3, padding="valid").apply(
            {"kernel": jnp.ones((3, 3, 4))}, jnp.ones((2, 2, 3))
        ),
        ValueError,
        r"T=2 steps, too few for kernel_size=3",
    ),
    Case("conv1d stride 0", lambda: conv.conv1d(XS, jnp.ones((3, 3, 2)), stride=0), ValueError, "stride"),
    Case(
        "conv1d padding (-1, 0)", lambda: conv.conv1d(XS, jnp.ones((3, 3, 2)), padding=(-1, 0)), ValueError, "padding"
    ),
    Case("conv_output_length stride 0", lambda: conv.conv_output_length(9, 3, stride=0), ValueError, "stride"),
    Case("nn.Conv1D stride 1.5", lambda: nn.Conv1D(3, 4, kernel_size=3, stride=1.5, rngs=_rngs()), TypeError, "stride"),
    Case(
        "nn.Conv1D padding 'foo'",
        lambda: nn.Conv1D(3, 4, kernel_size=3, padding="foo", rngs=_rngs()),
        ValueError,
        "padding",
    ),
    Case(
        "nn.Conv1D valid, input shorter than the kernel",
        lambda: nn.Conv1D(3, 4, kernel_size=3, padding="valid", rngs=_rngs())(jnp.ones((2, 2, 3))),
        ValueError,
        "too few for kernel_size=3",
    ),
    Case("TCN features str", lambda: conv.TCN(features="16", num_levels=2), TypeError, "features must be"),
    Case("TCN dilations (1, 0)", lambda: conv.TCN(features=(4, 4), dilations=(1, 0)), ValueError, r"dilations\[1\]"),
    Case(
        "nn.TCN dropout nan",
        lambda: nn.TCN(3, 4, num_levels=1, dropout_rate=float("nan"), rngs=_rngs()),
        ValueError,
        "dropout_rate must be a finite float",
    ),
    Case(
        "nn.TemporalBlock activation callable",
        lambda: nn.TemporalBlock(3, 4, 2, activation=jax.nn.relu, rngs=_rngs()),
        TypeError,
        "activation must be a str",
    ),
    Case(
        "MultiHeadAttention rope_max_timescale -1",
        lambda: attention.MultiHeadAttention(num_heads=2, rope_max_timescale=-1.0),
        ValueError,
        "rope_max_timescale",
    ),
    Case(
        "nn.MultiHeadAttention implementation 'foo'",
        lambda: nn.MultiHeadAttention(8, num_heads=2, implementation="foo", rngs=_rngs()),
        ValueError,
        "implementation must be one of",
    ),
    Case(
        "nn.TransformerEncoderBlock layer_norm_eps inf",
        lambda: nn.TransformerEncoderBlock(8, num_heads=2, layer_norm_eps=float("inf"), rngs=_rngs()),
        ValueError,
        "layer_norm_eps",
    ),
    Case(
        "nn.TransformerEncoderBlock heads 3 of kv 2",
        lambda: nn.TransformerEncoderBlock(12, num_heads=3, num_kv_heads=2, rngs=_rngs()),
        ValueError,
        "num_kv_heads",
    ),
    Case(
        "nn.TransformerEncoder positional 'alibi'",
        lambda: nn.TransformerEncoder(8, num_layers=1, num_heads=2, positional="alibi", rngs=_rngs()),
        ValueError,
        "positional must be one of",
    ),
    Case(
        "Transformer encoder str",
        lambda: attention.Transformer(encoder="enc", decoder=attention.TransformerDecoder(num_heads=2)),
        TypeError,
        "encoder",
    ),
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
    # ------------------------------------------------------------- interop
    Case(
        "from_torch_state_dict mode", lambda: interop.from_torch_state_dict(_GRU_SD, mode="lstmx"), ValueError, "mode"
    ),
    Case(
        "from_torch_state_dict missing key",
        lambda: interop.from_torch_state_dict({k: v for k, v in _GRU_SD.items() if k != "bias_hh_l0"}, mode="gru"),
        ValueError,
        r"state_dict.*missing \['bias_hh_l0'\]",
    ),
    Case(
        "from_torch_state_dict str value",
        lambda: interop.from_torch_state_dict({**_GRU_SD, "weight_hh_l0": "x"}, mode="gru"),
        TypeError,
        r"state_dict\['weight_hh_l0'\]",
    ),
    Case(
        "from_torch_state_dict wrong shape",
        lambda: interop.from_torch_state_dict({**_GRU_SD, "weight_hh_l0": np.zeros((12, 5), np.float32)}, mode="gru"),
        ValueError,
        r"state_dict\['weight_hh_l0'\] has shape",
    ),
    Case("from_torch_state_dict list", lambda: interop.from_torch_state_dict([1], mode="gru"), TypeError, "state_dict"),
    Case("to_nnx rngs None", lambda: interop.to_nnx(_GRU_SD, mode="gru", rngs=None), TypeError, "rngs"),
    # ---------------------------------------------------- generated tasks
    Case(
        "adding infinite num_train",
        lambda: tasks.adding_problem(8, infinite=True, num_train=5),
        ValueError,
        "num_train",
    ),
    Case("fresh batch index -1", lambda: _FRESH.batch(-1, 4), ValueError, "index"),
    Case("fresh batch size 0", lambda: _FRESH.batch(0, 0), ValueError, "batch_size"),
    Case("fresh source len", lambda: len(_FRESH), TypeError, "endless"),
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
    Case(
        "fit epochs and steps",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), DATA, epochs=2, steps=4, progress=False),
        ValueError,
        "epochs or steps",
    ),
    Case(
        "fit steps 0",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), DATA, steps=0, progress=False),
        ValueError,
        "steps",
    ),
    Case(
        "fit eval_every without steps",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), DATA, eval_every=2, progress=False),
        ValueError,
        "eval_every",
    ),
    Case(
        "fit steps_per_call 0",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), DATA, steps_per_call=0, progress=False),
        ValueError,
        "steps_per_call",
    ),
    Case(
        "fit source with epochs",
        lambda: train.fit(_linear_model(), optax.adam(1e-3), _FRESH, epochs=1, progress=False),
        ValueError,
        "steps",
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
    Case("Checkpointer on_corrupt", lambda: train.Checkpointer("unused", on_corrupt="maybe"), ValueError, "on_corrupt"),
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
            rule = field_rule(entry.cell_type, field)
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


# One valid instance of every public block (a pure spec); the rows below rebuild it with one field wrong.
BLOCKS = [
    conv.Conv1D(features=4, kernel_size=3),
    conv.TemporalBlock(features=4, kernel_size=2),
    conv.TCN(features=4, num_levels=2),
    attention.MultiHeadAttention(num_heads=2),
    attention.TransformerEncoderBlock(num_heads=2),
    attention.TransformerDecoderBlock(num_heads=2),
    attention.TransformerEncoder(num_heads=2),
    attention.TransformerDecoder(num_heads=2),
    attention.Transformer(
        encoder=attention.TransformerEncoder(num_heads=2), decoder=attention.TransformerDecoder(num_heads=2)
    ),
]
# Fields that check_fields leaves to their class: dtypes (check_float_dtype) and nested specs (isinstance).
UNCHECKED_BLOCK_FIELDS = {"dtype", "param_dtype", "encoder", "decoder"}


def _public_block_types() -> set[type]:
    """Every dataclass exported by ``recurrax.conv`` and ``recurrax.attention`` that is not a cell."""
    exported = [getattr(module, name) for module in (conv, attention) for name in module.__all__]
    return {
        obj for obj in exported if isinstance(obj, type) and dataclasses.is_dataclass(obj) and not issubclass(obj, Cell)
    }


def _wrong_block_values(rule: Any) -> list[tuple[Any, str, type[Exception]]]:
    """Values the declared type refuses: always one of no type it names, and the near misses for its kinds."""
    wrong: list[tuple[Any, str, type[Exception]]] = [(object(), "object()", TypeError)]
    if "float" in rule.atoms:
        wrong += [(float("nan"), "nan", ValueError), (float("-inf"), "-inf", ValueError)]
    elif rule.atoms & {"int", "pair"}:
        wrong.append((2.5, "2.5", TypeError))
    if "bool" in rule.atoms and "int" not in rule.atoms:
        wrong.append((1, "1", TypeError))
    if "ints" in rule.atoms:
        wrong.append(("16", "'16'", TypeError))  # a str is a sequence, not of ints
    if rule.literals and all(isinstance(v, str) for v in rule.literals) and "str" not in rule.atoms:
        wrong.append(("not-a-choice", "'not-a-choice'", ValueError))
    return wrong


def _generated_block_cases() -> list[Case]:
    """For every block in ``BLOCKS``, each declared field given values of the wrong kind (or non-finite)."""
    cases = []
    for block in BLOCKS:
        for field in dataclasses.fields(block):
            rule = field_rule(type(block), field)
            if rule is None:
                continue
            for value, label, error in _wrong_block_values(rule):
                cases.append(
                    Case(
                        f"{type(block).__name__}({field.name}={label})",
                        lambda block=block, name=field.name, value=value: dataclasses.replace(block, **{name: value}),
                        error,
                        rf"{type(block).__name__}: {field.name} must be",
                    )
                )
    return cases


ALL_CASES = CASES + _generated_cell_cases() + _generated_block_cases()


def test_the_table_is_long_enough():
    assert len(CASES) >= 60, len(CASES)


def test_every_public_block_is_in_the_generated_rows():
    missing = _public_block_types() - {type(block) for block in BLOCKS}
    assert not missing, f"add a valid instance of {sorted(t.__name__ for t in missing)} to BLOCKS"


@pytest.mark.parametrize("block", BLOCKS, ids=[type(block).__name__ for block in BLOCKS])
def test_check_fields_knows_every_block_field(block):
    """A field whose annotation check_fields cannot read would go unchecked (and have no rows here)."""
    unread = {f.name for f in dataclasses.fields(block) if field_rule(type(block), f) is None}
    assert unread <= UNCHECKED_BLOCK_FIELDS, f"{type(block).__name__}: no type check for {sorted(unread)}"


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


class CliCase(NamedTuple):
    name: str
    argv: list[str]
    flag: str  # the flag (or argument) the one line must name


def _train(task: str, *flags: str, out: str | None = "x") -> list[str]:
    """``recurrax train --task TASK FLAGS... --out x`` (``out=None``: the flags give --out)."""
    return ["train", "--task", task, *flags, *(["--out", out] if out else [])]


# Run in an empty directory holding one file, ``taken``; ``x`` must not be created.
CLI_CASES = [
    CliCase("--on-corrupt maybe", _train("adding", "--on-corrupt", "maybe"), "--on-corrupt"),
    CliCase("--resume --on-corrupt maybe", ["train", "--resume", "x", "--on-corrupt", "maybe"], "--on-corrupt"),
    CliCase("--on-corrupt without --resume", _train("adding", "--on-corrupt", "fallback"), "--on-corrupt"),
    CliCase("--validation-fraction 1.5", _train("mnist1d", "--validation-fraction", "1.5"), "--validation-fraction"),
    CliCase("--validation-fraction nan", _train("mnist1d", "--validation-fraction", "nan"), "--validation-fraction"),
    CliCase("--validation-fraction -1", _train("digits-rows", "--validation-fraction", "-1"), "--validation-fraction"),
    CliCase("--out an existing file", _train("adding", "--out", "taken", out=None), "--out"),
    CliCase("--out below a file", _train("adding", "--out", "taken/run", out=None), "--out"),
    CliCase("--lr nan", _train("adding", "--lr", "nan"), "--lr"),
    CliCase("--lr 0", _train("adding", "--lr", "0"), "--lr"),
    CliCase("--clip inf", _train("adding", "--clip", "inf"), "--clip"),
    CliCase("--clip-value -1", _train("adding", "--clip-value", "-1"), "--clip-value"),
    CliCase("--hidden 2.5", _train("adding", "--hidden", "2.5"), "--hidden"),
    CliCase("--dense -1", _train("adding", "--dense", "-1"), "--dense"),
    CliCase("--dropout 1", _train("adding", "--dropout", "1"), "--dropout"),
    CliCase("--batch-size 0", _train("adding", "--batch-size", "0"), "--batch-size"),
    CliCase("--epochs -1", _train("adding", "--epochs", "-1"), "--epochs"),
    CliCase("--accumulate 0", _train("adding", "--accumulate", "0"), "--accumulate"),
    CliCase("--seed -1", _train("adding", "--seed", "-1"), "--seed"),
    CliCase("--data-seed x", _train("adding", "--data-seed", "x"), "--data-seed"),
    CliCase("--seq-len 0", _train("adding", "--seq-len", "0"), "--seq-len"),
    CliCase("--num-train 0", _train("adding", "--num-train", "0"), "--num-train"),
    CliCase("--checkpoint-every 0", _train("adding", "--checkpoint-every", "0"), "--checkpoint-every"),
    CliCase("evaluate --split bogus", ["evaluate", "x", "--split", "bogus"], "--split"),
    CliCase("evaluate --step -1", ["evaluate", "x", "--step", "-1"], "--step"),
    CliCase("evaluate --batch-size 0", ["evaluate", "x", "--batch-size", "0"], "--batch-size"),
    CliCase("--cell lsmt", _train("adding", "--cell", "lsmt"), "--cell"),
    CliCase("--optimizer adamz", _train("adding", "--optimizer", "adamz"), "--optimizer"),
    CliCase("adding --validation-fraction", _train("adding", "--validation-fraction", "0.5"), "--validation-fraction"),
    CliCase("--task bogus", _train("bogus"), "--task"),
    CliCase("mnist1d --seq-len", _train("mnist1d", "--seq-len", "10"), "--seq-len"),
    CliCase("--epochs and --steps", _train("adding", "--epochs", "2", "--steps", "10"), "--steps"),
    CliCase("--steps 0", _train("adding", "--steps", "0"), "--steps"),
    CliCase("--eval-every without --steps", _train("adding", "--eval-every", "5"), "--eval-every"),
    CliCase("--eval-every 0", _train("adding", "--steps", "10", "--eval-every", "0"), "--eval-every"),
    CliCase("--steps-per-call 0", _train("adding", "--steps-per-call", "0"), "--steps-per-call"),
    CliCase("--fresh-data without --steps", _train("adding", "--fresh-data"), "--fresh-data"),
    CliCase("mnist1d --fresh-data", _train("mnist1d", "--fresh-data", "--steps", "10"), "--fresh-data"),
    CliCase("--resume --steps of an epoch run", ["train", "--resume", "run", "--steps", "10"], "--steps"),
]  # fmt: skip


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.name for case in CLI_CASES])
def test_bad_command_line_exits_2_with_one_line_naming_the_flag(case: CliCase, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("not a run")
    (tmp_path / "run").mkdir()  # a run trained by epochs, as `recurrax train` writes its config
    config = {**cli.TRAIN_DEFAULTS, "format": cli.CONFIG_FORMAT, "task": "adding"}
    (tmp_path / "run" / cli.CONFIG_FILE).write_text(json.dumps(config))
    try:
        status = cli.main(case.argv)
    except SystemExit as stop:  # argparse's own exit, should the parser ever bypass main's handling
        status = stop.code
    err = capsys.readouterr().err
    assert status == 2, f"{case.name}: exit status {status}; stderr {err!r}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{case.name}: {err!r}"
    assert lines[0].startswith("recurrax") and ": error: " in lines[0], lines[0]
    assert re.search(rf"(?<![\w-]){re.escape(case.flag)}(?![\w-])", lines[0]), f"{case.name}: {lines[0]!r}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "taken"], "a refused command wrote files"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [cli.CONFIG_FILE]
