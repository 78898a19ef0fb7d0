"""The house rules, as tests: who may import whom, options declared once, names and their deprecations.

The import rules are read from the source (``ast``), so a change that breaks
them fails here with the offending module and import.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax
from jaxpr_walk import equations
from recurrax import _options as recurrax_options
from recurrax.cells import registered_cells

SRC = Path(recurrax.__file__).parent
# The ground floor: what cells, conv and attention may build on (besides themselves).
GROUND_FLOOR = {
    "recurrax._validation",
    "recurrax._types",
    "recurrax._ops",
    "recurrax._options",
    "recurrax._cell",
    "recurrax._linear_cell",
    "recurrax._projected_cell",
    "recurrax._params",
    "recurrax._factory",
    "recurrax._deprecation",
}
SIBLINGS = ("cells", "conv", "attention")
# The engine: it asks cells for what they can do and imports none of them.
ENGINE = (
    "_scan",
    "_parallel",
    "_sequence_parallel",
    "_compose",
    "_recurrent_block",
    "_cell",
    "_linear_cell",
    "_params",
    "_options",
)


def _imports(path: Path) -> set[str]:
    """Every ``recurrax.*`` module a file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recurrax"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("recurrax"))
    return found


def _package_files(package: str) -> list[Path]:
    return sorted((SRC / package).glob("*.py"))


@pytest.mark.parametrize("package", SIBLINGS)
def test_cells_conv_and_attention_stand_on_the_ground_floor_only(package):
    for path in _package_files(package):
        for module in _imports(path):
            own = module.startswith(f"recurrax.{package}")
            floor = any(module == f or module.startswith(f + ".") for f in GROUND_FLOOR)
            assert own or floor or module == "recurrax", f"{path.relative_to(SRC)} imports {module}"


@pytest.mark.parametrize("module", ENGINE)
def test_the_engine_imports_no_concrete_cell(module):
    for imported in _imports(SRC / f"{module}.py"):
        assert not imported.startswith(("recurrax.cells", "recurrax.conv", "recurrax.attention", "recurrax.nn")), (
            f"{module}.py imports {imported}"
        )


def test_every_flax_nnx_module_lives_in_nn():
    nn_classes = {name for name in dir(recurrax.nn) if inspect.isclass(getattr(recurrax.nn, name))}
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.parts[0] == "nn":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                nnx_base = [b for b in bases if "nnx." in b or b.split(".")[-1] in nn_classes]
                assert not nnx_base, f"{relative} defines the NNX module {node.name} ({nnx_base})"


def test_the_ground_floor_imports_nothing_above_it():
    for name in GROUND_FLOOR:
        for imported in _imports(SRC / f"{name.split('.')[-1]}.py"):
            assert any(imported == f or imported.startswith(f + ".") for f in GROUND_FLOOR), (
                f"{name} imports {imported}"
            )


# -------------------------------------------------------------- options, once
def test_factories_and_layers_are_derived_from_the_cell_fields():
    for entry in registered_cells():
        fields = {f.name: f.default for f in dataclasses.fields(entry.cell_type) if f.init}
        factory = inspect.signature(entry.factory).parameters
        layer = inspect.signature(recurrax.nn.layer_for(entry)).parameters
        linen = inspect.signature(recurrax.linen.linen_layer_for(entry)).parameters
        for name, default in fields.items():
            assert name in factory and (factory[name].default is default or name in ("hidden_size", "spatial_shape"))
            assert name in layer and name in linen, f"{entry.layer} does not list {name}"
        assert entry.factory(4, **_required(entry)) == entry.cell_type(4, **_required(entry))


def _required(entry):
    return {"spatial_shape": (3,)} if entry.name == "conv_lstm" else {}


@pytest.mark.slow
@pytest.mark.parametrize("entry", registered_cells(), ids=[e.name for e in registered_cells()])
def test_every_registered_layer_is_its_cell_scanned(entry):
    xs = jax.random.normal(jax.random.key(0), (2, 5, 3))
    options = {"skip": False} if entry.name == "lru" else _required(entry)
    layer = recurrax.nn.layer_for(entry)(3, 4, rngs=nnx.Rngs(0), **options)
    assert type(layer.cell) is entry.cell_type and layer.options.method == entry.layer_options.get(
        "method", "sequential"
    )
    expected, _ = recurrax.scan(layer.cell, layer.pure_params(), xs, lengths=jnp.array([5, 2]), options=layer.options)
    np.testing.assert_array_equal(layer(xs, lengths=jnp.array([5, 2])), expected)


def test_a_cell_registered_by_a_user_gets_a_factory_a_layer_and_a_backbone(monkeypatch):
    monkeypatch.setattr(recurrax.cells._registry, "_ENTRIES", dict(recurrax.cells._registry._ENTRIES))

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class LeakyCell(recurrax.Cell):
        leak: float = 0.5

        def init(self, key, in_features):
            return {"kernel": jax.random.normal(key, (in_features, self.hidden_size)) * 0.1}

        def initial_carry(self, batch_shape=(), dtype=None):
            return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

        def step(self, params, carry, x):
            h = self.leak * carry + jnp.tanh(x @ params["kernel"])
            return h, h

    leaky = recurrax.register_cell(LeakyCell, "leaky_test_cell", layer="LeakyTest", summary="a test cell")
    assert leaky(4, leak=0.25) == LeakyCell(4, leak=0.25)
    layer = recurrax.nn.LeakyTest(3, 4, rngs=nnx.Rngs(0), leak=0.25, reverse=True)
    assert layer.cell.leak == 0.25 and layer.options.reverse
    model = recurrax.models.SequenceClassifier(3, 2, cell="leaky_test_cell", hidden_size=4, rngs=nnx.Rngs(0))
    assert model(jnp.ones((2, 5, 3))).shape == (2, 2)
    assert "leaky_test_cell" in recurrax.models.backbone_names()
    with pytest.raises(ValueError, match="is registered"):
        recurrax.register_cell(LeakyCell, "leaky_test_cell", layer="LeakyTest", summary="again")


def test_an_alias_is_the_same_cell_everywhere(monkeypatch):
    """``min_gru`` is the spelling; ``mingru`` works as attribute, backbone name and registry name."""
    assert recurrax.mingru is recurrax.min_gru and recurrax.cells.minlstm is recurrax.min_lstm
    assert "mingru" not in recurrax.__all__  # listed once, under its spelling
    for alias, name in [("mingru", "min_gru"), ("minlstm", "min_lstm"), ("simple_rnn", "rnn")]:
        assert recurrax.models.backbone_spec(alias).name == recurrax.models.backbone_spec(name).name == name
    assert recurrax.cells.cell_entry("mingru").name == "min_gru"
    with pytest.raises(AttributeError, match="has no attribute 'min_gruu'"):
        recurrax.min_gruu  # noqa: B018
    monkeypatch.setattr(recurrax.cells._registry, "_ENTRIES", dict(recurrax.cells._registry._ENTRIES))
    with pytest.raises(ValueError, match="alias name"):
        recurrax.register_cell(recurrax.GRUCell, "gru_again", layer="GRUAgain", aliases=("mingru",), summary="")
    with pytest.raises(ValueError, match="alias must be a Python identifier"):
        recurrax.register_cell(recurrax.GRUCell, "gru_again", layer="GRUAgain", aliases=("gru-2",), summary="")


# ------------------------------------------------------------------ options
def test_scan_options_travel_as_one_object_and_as_keywords():
    cell = recurrax.gru(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    options = recurrax.ScanOptions(reverse=True, unroll=2, fused=False)
    by_object, _ = recurrax.scan(cell, params, xs, options=options)
    by_keyword, _ = recurrax.scan(cell, params, xs, reverse=True, unroll=2, fused=False)
    overridden, _ = recurrax.scan(cell, params, xs, options=options, reverse=False)
    forward, _ = recurrax.scan(cell, params, xs)
    np.testing.assert_array_equal(by_object, by_keyword)
    np.testing.assert_allclose(overridden, forward, rtol=1e-6)
    stacked, _ = recurrax.stacked_scan([cell], [params], xs, options=options)
    np.testing.assert_array_equal(stacked, by_object)
    layer = recurrax.nn.GRU(3, 4, rngs=nnx.Rngs(0), options=options)
    assert layer.options == options and layer.reverse
    assert "reverse" in inspect.signature(recurrax.scan).parameters
    assert "unroll" in inspect.signature(recurrax.nn.RNN).parameters


@pytest.mark.parametrize("fused", [False, True], ids=["step_loop", "fused_loop"])
def test_unroll_none_is_the_backends_measured_default_and_an_explicit_one_wins(monkeypatch, fused):
    cell = recurrax.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.ones((2, 5, 3))

    def unrolls(**options):
        loss = lambda p: jnp.sum(recurrax.scan(cell, p, xs, fused=fused, **options)[0])  # noqa: E731
        jaxpr = jax.make_jaxpr(jax.grad(loss))(params).jaxpr
        return {eqn.params["unroll"] for eqn in equations(jaxpr) if eqn.primitive.name == "scan"}

    assert recurrax.ScanOptions().unroll is None
    assert unrolls() == {1}  # CPU: none measured faster than one step per iteration
    monkeypatch.setitem(recurrax_options.DEFAULT_UNROLL, jax.default_backend(), 3)
    assert recurrax.ScanOptions().steps_per_iteration() == 3
    assert unrolls() == {3}
    assert unrolls(unroll=2) == {2}


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: recurrax.ScanOptions(method="fast"), ValueError, "method must be one of"),
        (lambda: recurrax.ScanOptions(unroll=0), ValueError, "unroll must be None, a positive int"),
        (lambda: recurrax.ScanOptions(reverse=1), TypeError, "reverse must be a bool"),
        (lambda: recurrax.ScanOptions(fused="yes"), TypeError, "fused must be None, True or False"),
        (lambda: recurrax.ScanOptions().replace(revers=True), TypeError, r"unknown scan option\(s\) \['revers'\]"),
        (lambda: recurrax.scan(recurrax.gru(2), None, jnp.ones((1, 2, 3))), TypeError, "params is None"),
    ],
)
def test_bad_options_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_another_cells_parameters_are_named_leaf_by_leaf():
    lstm_params = recurrax.lstm(4).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"missing \['input_bias', 'recurrent_bias'\]; unexpected \['bias'\]"):
        recurrax.scan(recurrax.gru(4), lstm_params, jnp.ones((2, 5, 3)))


# ------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (lambda: recurrax.LSTM, recurrax.LSTMCell),
        (lambda: recurrax.GRU, recurrax.GRUCell),
        (lambda: recurrax.SimpleRNN, recurrax.SimpleRNNCell),
        (lambda: recurrax.cells.MinGRU, recurrax.MinGRUCell),
        (lambda: recurrax.cells.ConvLSTM, recurrax.ConvLSTMCell),
        (lambda: recurrax.cells.CausalConv1D, recurrax.conv.CausalConv1DCell),
        (lambda: recurrax.cells.causal_conv1d, recurrax.conv.causal_conv1d),
    ],
)
def test_old_names_still_work_with_a_warning(old, new):
    with pytest.warns(DeprecationWarning, match="is deprecated; use"):
        assert old() is new


def test_the_old_size_keyword_and_method_still_work_with_a_warning():
    cell = recurrax.lstm(4)
    with pytest.warns(DeprecationWarning, match="in_features"):
        params = cell.init(jax.random.key(0), input_size=3)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, cell.init(jax.random.key(0), 3))
    with pytest.warns(DeprecationWarning, match="params_in_features"):
        assert cell.input_size(params) == 3
    conv = recurrax.conv_lstm(2, spatial_shape=(4, 4))
    assert recurrax.params_in_features(conv, conv.init(jax.random.key(0), 4 * 4 * 3)) == 48
    info = recurrax.tasks.adding_problem(10, num_train=2, num_validation=2, num_test=2).info
    with pytest.warns(DeprecationWarning, match="in_features"):
        assert info.input_size == info.in_features == 2
