"""Recordings: ``scan(..., record=True)`` and ``nn.recording()`` return each cell's named internals per step.

They equal a hand-written loop over ``cell.recorded_step`` (and, for the LSTM
and GRU, the numpy reference's gates), zero past ``lengths`` and in ``xs``'s
order when reversed; ``ys`` and the final carry are those of ``record=False``.
Off, recording costs nothing: each step's program is its recorded step's with
the records dropped and holds no dead value (so no recorded value is computed
for recording alone), and the engine never asks for records.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax._src.interpreters import partial_eval as pe

import numpy_reference as ref
import recurrax
from cell_registry import BATCH, CELL_CASES, FEATURES, HIDDEN, STEPS, CellCase, carry_to_numpy
from recurrax import nn
from recurrax.cells import LSTMCell

LENGTHS = np.array([6, 4, 1])
DIRECTIONS = (False, True)

# What each cell records (the table in docs/interpretability.md); wrappers record their cell's.
NAMES = {
    "SimpleRNNCell": {"pre"},
    "LSTMCell": {"i", "f", "g", "o", "c"},
    "GRUCell": {"r", "z", "n"},
    "IndRNNCell": {"pre"},
    "QRNNCell": {"z", "f", "o", "c"},
    "MinGRUCell": {"z", "h_tilde"},
    "MinLSTMCell": {"f", "i", "h_tilde"},
    "LRUCell": {"a", "b"},
    "ConvLSTMCell": {"i", "f", "g", "o", "c"},
    "CausalConv1DCell": set(),
}
# The numpy references' gate outputs (``gates=True``), in their concatenation order.
GATES = {ref.lstm_step: ("i", "f", "g", "o", "c"), ref.gru_step: ("r", "z", "n")}


def _base(cell: recurrax.Cell) -> recurrax.Cell:
    while hasattr(cell, "cell"):
        cell = cell.cell
    return cell


def _random_like(tree, rng: np.random.Generator):
    """Random values shaped like ``tree``'s leaves, made by numpy: an eager ``init`` would compile each initialiser."""
    return jax.tree.map(lambda leaf: rng.uniform(-0.8, 0.8, leaf.shape).astype(leaf.dtype), tree)


def _abstract_params(cell: recurrax.Cell):
    return jax.eval_shape(functools.partial(cell.init, in_features=FEATURES), jax.random.key(0))


def _one_case_per_cell_type() -> list[CellCase]:
    """The first case of each cell class and wrapper (the variants differ in their step: the program test covers it)."""
    seen: set[type] = set()
    cases = []
    for case in CELL_CASES:
        if type(case.make()) not in seen:
            seen.add(type(case.make()))
            cases.append(case)
    return cases


VALUE_CASES = _one_case_per_cell_type()
CELLS = [case.make() for case in VALUE_CASES]
RUNS = [(case.name, reverse) for case in VALUE_CASES for reverse in ((False, True) if case.name == "lstm" else (True,))]


@pytest.fixture(scope="module")
def runs():
    """Every cell type's records from the engine and from the loop: two compiles in all (one per cell costs ~0.4 s).

    The engine runs backwards within ``lengths`` (forwards too for the LSTM):
    the step order and where each record goes back to both matter. The loop
    is the documented one over ``cell.recorded_step``, in plain Python and
    numpy: iteration ``k`` runs step ``k`` of each example still running
    (``k < lengths[b]``; backwards, position ``lengths[b] - 1 - k``), the
    others' carries stay, and each record goes back to the position its step
    read (zero past the example's length). One jitted function steps every
    cell at once.
    """
    rng = np.random.default_rng(0)
    params = [_random_like(_abstract_params(cell), rng) for cell in CELLS]
    xs = rng.normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    index = {case.name: i for i, case in enumerate(VALUE_CASES)}

    @jax.jit
    def engine(params, xs):
        scans = [
            recurrax.scan(CELLS[index[name]], params[index[name]], xs, lengths=LENGTHS, reverse=reverse, record=True)
            for name, reverse in RUNS
        ]
        return scans, [cell.initial_carry((BATCH,)) for cell in CELLS]

    @jax.jit
    def step_all(params, carries, x):
        return [cell.recorded_step(p, c, x_) for cell, p, c, x_ in zip(CELLS, params, carries, x, strict=True)]

    scans, initial_carries = engine(params, xs)
    batch = np.arange(BATCH)
    loops = {}
    for reverse in DIRECTIONS:
        carries = jax.tree.map(np.asarray, initial_carries)
        records: list[dict[str, np.ndarray]] = [{} for _ in CELLS]
        for k in range(STEPS):
            running = k < LENGTHS
            t = np.where(running, LENGTHS - 1 - k if reverse else k, 0)
            outs = step_all(params, carries, [xs[batch, t]] * len(CELLS))
            for i, (new, _, internals) in enumerate(outs):
                carries[i] = jax.tree.map(
                    lambda n, o, running=running: np.where(running.reshape((-1,) + (1,) * (o.ndim - 1)), n, o),
                    new,
                    carries[i],
                )
                for name, value in internals.items():
                    value = np.asarray(value)
                    into = records[i].setdefault(name, np.zeros((BATCH, STEPS, *value.shape[1:]), value.dtype))
                    into[batch[running], t[running]] = value[running]
        loops[reverse] = list(zip(records, carries, strict=True))
    return {
        "params": dict(zip(index, params, strict=True)),
        "xs": xs,
        "initial_carries": dict(zip(index, initial_carries, strict=True)),
        "engine": dict(zip(RUNS, scans, strict=True)),
        "loop": {(name, reverse): loops[reverse][i] for name, i in index.items() for reverse in DIRECTIONS},
    }


@pytest.mark.parametrize("run", RUNS, ids=[f"{name}-{'reverse' if reverse else 'forward'}" for name, reverse in RUNS])
def test_records_equal_the_loop(run, runs):
    name, reverse = run
    case = VALUE_CASES[[c.name for c in VALUE_CASES].index(name)]
    _, final, records = runs["engine"][run]
    loop_records, loop_final = runs["loop"][run]
    assert set(records) == NAMES[type(_base(case.make())).__name__]
    assert set(loop_records) == set(records)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), final, loop_final)
    for key, value in records.items():
        assert value.shape[:2] == (BATCH, STEPS), (key, value.shape)
        np.testing.assert_allclose(value, loop_records[key], rtol=1e-5, atol=1e-6, err_msg=key)

    step = getattr(case.reference_step, "func", case.reference_step)
    if step in GATES:
        # The LSTM's and GRU's gates against the numpy reference, in float64.
        np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), runs["params"][name])
        gates, _ = ref.scan_loop(
            lambda c, x: case.reference_step(np_params, c, x, gates=True),
            runs["xs"].astype(np.float64),
            carry_to_numpy(jax.tree.map(np.asarray, runs["initial_carries"][name])),
            lengths=LENGTHS,
            reverse=reverse,
        )
        recorded = np.concatenate([records[key] for key in GATES[step]], axis=-1)
        np.testing.assert_allclose(recorded, gates, rtol=1e-4, atol=2e-5)


def _dce(jaxpr, outputs: int):
    return pe.dce_jaxpr(jaxpr, [i < outputs for i in range(len(jaxpr.outvars))])[0]


def _text(jaxpr) -> str:
    """The program as text, less the pytree bookkeeping newer jax keeps on a scan (``ft_in``, ``ft_out``).

    That bookkeeping describes the outputs as traced; dce_jaxpr leaves it as it
    was, so a scan whose record outputs were dropped still lists them there.
    """
    return re.sub(r"(?m)^\s*ft_(in|out)=.*\n", "", str(jaxpr))


def _equations(jaxpr) -> int:
    """Equations in ``jaxpr`` and every jaxpr inside it (a scan's body, a custom rule's function)."""
    count = 0
    for eqn in jaxpr.eqns:
        count += 1
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                count += _equations(inner)
    return count


@pytest.mark.parametrize("case", CELL_CASES, ids=[case.name for case in CELL_CASES])
def test_recording_off_is_free(case: CellCase):
    """Recording on, minus its records, is the program of recording off; and that program wastes nothing.

    So ``ys`` and the final carry with ``record=True`` are exactly those of
    ``record=False`` (the step loop's), and every recorded value is one the
    program computes and uses anyway: a value computed for recording alone
    would be dead in the program without it. The input projection is hoisted
    where the cell has one (then ``step`` is ``step_projected`` after it, by
    construction). Tracing only: nothing compiles.
    """
    cell = case.make()
    params = _abstract_params(cell)
    xs = jax.ShapeDtypeStruct((BATCH, STEPS, FEATURES), jnp.float32)
    options = recurrax.ScanOptions(reverse=True, hoist_input_projection=cell.supports_input_projection, fused=False)

    def program(record: bool):
        run = lambda p, x: recurrax.scan(cell, p, x, lengths=LENGTHS, options=options, record=record)  # noqa: E731
        return jax.make_jaxpr(run)(params, xs).jaxpr

    off, on = program(False), program(True)
    outputs = len(off.outvars)
    assert _equations(_dce(off, outputs)) == _equations(off), "the program computes values it does not use"
    assert _text(_dce(on, outputs)) == _text(_dce(off, outputs)), "recording changed the program"


def test_engine_never_asks_for_records_when_off():
    """Free when off, in the engine: without ``record`` it never calls ``recorded_step`` and lowers the same program."""

    class Unrecorded(LSTMCell):
        def recorded_step(self, params, carry, x, *, projected=False):
            raise AssertionError("recorded_step called with record=False")

    cell, unrecorded = recurrax.lstm(HIDDEN), Unrecorded(HIDDEN)
    params = jax.eval_shape(functools.partial(cell.init, in_features=FEATURES), jax.random.key(0))
    xs = jax.ShapeDtypeStruct((BATCH, STEPS, FEATURES), jnp.float32)
    for fused, hoist in ((None, False), (False, True)):  # the fused path; the step loop, projection hoisted

        def lowered(c, fused=fused, hoist=hoist):
            run = lambda p, x: recurrax.scan(c, p, x, lengths=LENGTHS, fused=fused, hoist_input_projection=hoist)  # noqa: E731
            return jax.jit(run).lower(params, xs).as_text()

        assert lowered(unrecorded) == lowered(cell), (fused, hoist)


def test_record_runs_the_step_loop_and_refuses_what_cannot_record():
    cell = recurrax.cells.min_gru(HIDDEN)
    params = jax.eval_shape(functools.partial(cell.init, in_features=FEATURES), jax.random.key(0))
    xs = jax.ShapeDtypeStruct((BATCH, STEPS, FEATURES), jnp.float32)
    parallel, sequential = (
        str(jax.make_jaxpr(lambda p, x, m=m: recurrax.scan(cell, p, x, method=m, record=True))(params, xs))
        for m in ("parallel", "sequential")
    )
    assert parallel == sequential  # method="parallel" records through the step loop
    with pytest.raises(ValueError, match="fused=True"):
        jax.eval_shape(lambda p, x: recurrax.scan(cell, p, x, fused=True, record=True), params, xs)
    with pytest.raises(TypeError, match="needs a recurrax Cell"):
        recurrax.scan(lambda c, x: (c, x), None, jnp.ones((2, 3)), initial_carry=jnp.zeros(3), record=True)


def test_nn_recording_bidirectional_with_carry_probe():
    """One entry per layer call (each direction of a Bidirectional), zero past ``lengths``; works with carry_probe."""
    xs = np.random.default_rng(1).normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)

    @jax.jit  # the model is built inside: one compile, where an eager init compiles every initialiser
    def run(xs):
        model = nn.Bidirectional(
            nn.MinGRU(FEATURES, 4, rngs=nnx.Rngs(0)), nn.MinGRU(FEATURES, 4, rngs=nnx.Rngs(1), reverse=True)
        )
        with nn.recording() as records, nn.carry_probe() as carries:
            model(xs, lengths=LENGTHS)
        return records, carries

    records, carries = run(xs)
    assert [sorted(r) for r in records] == [["h_tilde", "z"]] * 2 and len(carries) == 2
    for direction in records:
        for b, length in enumerate(LENGTHS):
            assert not np.any(np.asarray(direction["z"][b, length:]))
            assert np.all(np.asarray(direction["z"][b, :length]) > 0)


def test_plot_recording():
    rng = np.random.default_rng(0)
    records = {"f": rng.uniform(0, 1, (2, 6, 3)), "b": rng.normal(size=(2, 6, 3)) + 1j * rng.normal(size=(2, 6, 3))}
    fig = recurrax.interpret.plot_recording(records, name="f", example=1)
    assert fig.axes[0].get_title() == "f, example 1"
    assert fig.axes[0].images[0].get_clim() == (0.0, 1.0)  # gates on the fixed [0, 1] scale
    assert recurrax.interpret.plot_recording(records["b"][0], example=None).axes[0].get_title() == "|record|"
    with pytest.raises(ValueError, match="name= picks one"):
        recurrax.interpret.plot_recording(records)


def test_a_projected_step_cell_of_your_own_steps_hoists_and_records():
    """``ProjectedStepCell``: ``project_inputs`` and ``projected_update`` give the step, the hoisted step and the
    recording; a subclass that overrides ``step`` keeps its own step and records nothing."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Leaky(recurrax.cells.ProjectedStepCell):
        def init(self, key, in_features):
            return {"kernel": jax.random.normal(key, (in_features, self.hidden_size)) / 2}

        def initial_carry(self, batch_shape=(), dtype=None):
            return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

        def project_inputs(self, params, xs):
            return xs @ params["kernel"]

        def projected_update(self, params, carry, projected_x):
            keep = jax.nn.sigmoid(projected_x)
            h = keep * carry + (1 - keep) * jnp.tanh(projected_x)
            return h, 2 * h, {"keep": keep}

    class Doubled(Leaky):
        def step(self, params, carry, x):
            new, y = super().step(params, carry, x)
            return new, 2 * y

    xs = np.random.default_rng(0).normal(size=(BATCH, STEPS, FEATURES)).astype(np.float32)
    cell = Leaky(HIDDEN)
    params = cell.init(jax.random.key(0), FEATURES)
    kernel = np.asarray(params["kernel"], np.float64)
    h, ys, keeps = np.zeros((BATCH, HIDDEN)), [], []
    for t in range(STEPS):  # the recurrence by hand
        z = xs[:, t].astype(np.float64) @ kernel
        keep = 1 / (1 + np.exp(-z))
        h = keep * h + (1 - keep) * np.tanh(z)
        ys.append(2 * h)
        keeps.append(keep)
    ys, keeps = np.stack(ys, 1), np.stack(keeps, 1)
    assert cell.supports_input_projection
    for hoist in (False, True):
        out, final = recurrax.scan(cell, params, xs, hoist_input_projection=hoist)
        recorded_out, recorded_final, records = recurrax.scan(
            cell, params, xs, hoist_input_projection=hoist, record=True
        )
        np.testing.assert_allclose(out, ys, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(final, h, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(recorded_out, out)
        np.testing.assert_array_equal(recorded_final, final)
        assert set(records) == {"keep"}
        np.testing.assert_allclose(records["keep"], keeps, rtol=1e-5, atol=1e-6)
    doubled_out, _, doubled_records = recurrax.scan(Doubled(HIDDEN), params, xs, record=True)
    assert doubled_records == {}
    np.testing.assert_allclose(doubled_out, 2 * ys, rtol=1e-5, atol=1e-6)
