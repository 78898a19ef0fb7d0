"""Cross-cutting tests over every registered cell: numpy reference, gradients, dtypes."""

from __future__ import annotations

import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
import recurrax.cells
from cell_registry import BATCH, CELL_CASES, FEATURES, STEPS, CellCase, carry_to_numpy, randomized_params
from gradient_check import check_gradients
from numpy_reference import scan_loop

CASE_IDS = [case.name for case in CELL_CASES]
REFERENCE_CASES = [case for case in CELL_CASES if case.reference_step is not None]
LENGTHS = np.array([6, 4, 1])
RESETS = np.zeros((BATCH, STEPS), bool)
RESETS[0, 3] = RESETS[1, 1] = True


def _inputs(dtype=jnp.float32) -> jax.Array:
    return jax.random.normal(jax.random.key(7), (BATCH, STEPS, FEATURES), dtype)


def test_registry_covers_every_public_cell():
    public = {
        obj
        for name in recurrax.cells.__all__
        if inspect.isclass(obj := getattr(recurrax.cells, name))
        and issubclass(obj, recurrax.Cell)
        and not inspect.isabstract(obj)
    }
    registered = set()
    for case in CELL_CASES:
        cell = case.make()
        while True:  # wrappers count for themselves and for the cell they wrap
            registered.add(type(cell))
            if not hasattr(cell, "cell"):
                break
            cell = cell.cell
    assert public <= registered, f"cells missing from tests/cell_registry.py: {public - registered}"


def _loss(ys, carry) -> jax.Array:
    # |.|² keeps complex carries (LRU) real; integer leaves (zoneout keys) carry no gradient.
    states = [leaf for leaf in jax.tree.leaves(carry) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in states)


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=[case.name for case in REFERENCE_CASES])
def test_matches_numpy_reference_loop(case: CellCase, x64):
    """The engine with lengths and resets, forwards and in reverse, equals the documented loop over the numpy step."""
    cell = case.make(param_dtype=jnp.float64)
    params = randomized_params(cell, jax.random.key(0), values_from=case.make())
    xs = _inputs(jnp.float64)
    c0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(3), a.shape, a.dtype), cell.initial_carry((BATCH,)))
    directions = (False, True)
    # Both directions in one compile (eagerly, every op of the engine would compile on its own).
    run = jax.jit(
        lambda params, xs, c0: [
            recurrax.scan(cell, params, xs, initial_carry=c0, lengths=LENGTHS, resets=RESETS, reverse=reverse)
            for reverse in directions
        ]
    )
    np_params = jax.tree.map(np.asarray, params)
    for reverse, (ys, final) in zip(directions, run(params, xs, c0), strict=True):
        ref_ys, ref_final = scan_loop(
            lambda c, x: case.reference_step(np_params, c, x),
            np.asarray(xs),
            carry_to_numpy(c0),
            lengths=LENGTHS,
            resets=RESETS,
            reverse=reverse,
        )
        np.testing.assert_allclose(ys, ref_ys, atol=1e-12, rtol=1e-12, err_msg=f"reverse={reverse}")
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, atol=1e-12, rtol=1e-12), carry_to_numpy(final), ref_final
        )


def _paths(cell: recurrax.Cell) -> list[dict]:
    """The default path, then both ways of applying the input matmul in the step loop (before it, or in each step)."""
    if not cell.supports_input_projection:
        return [{}]
    return [{}, {"fused": False, "hoist_input_projection": True}, {"fused": False, "hoist_input_projection": False}]


@pytest.mark.slow
@pytest.mark.parametrize("case", CELL_CASES, ids=CASE_IDS)
def test_gradients_match_finite_differences_and_agree_on_every_path(case: CellCase, x64):
    """The default path's gradient matches finite differences; the other paths give its values and gradients.

    With lengths and resets. One compile for every path (the default one is the fused
    loop for a fused cell, else one of the step loops); the finite differences
    evaluate the same program.
    """
    cell = case.make(param_dtype=jnp.float64)
    params = randomized_params(cell, jax.random.key(1), values_from=case.make())
    xs = _inputs(jnp.float64)

    def loss(params, xs, options):
        return _loss(*recurrax.scan(cell, params, xs, lengths=LENGTHS, resets=RESETS, **options))

    @jax.jit
    def every_path(params, xs):
        return [jax.value_and_grad(loss, argnums=(0, 1))(params, xs, options) for options in _paths(cell)]

    # A step of 1e-6: central differences err by ~eps² times the third derivative, and after each reset
    # the layer-norm LSTM normalises a zero recurrent input, where that is ~1e7 (variance floor 1e-5).
    default_path = lambda params, xs: every_path(params, xs)[0]  # noqa: E731
    check_gradients(default_path, (params, xs), atol=1e-6, rtol=1e-6, eps=1e-6)
    results = zip(_paths(cell), every_path(params, xs), strict=True)
    for (options, got), (other_options, want) in itertools.combinations(results, 2):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-12, rtol=1e-12, err_msg=f"{options} vs {other_options}")


@pytest.mark.parametrize("case", CELL_CASES, ids=CASE_IDS)
def test_bfloat16_compute_stays_close_to_float32(case: CellCase):
    cell32 = case.make()
    cell16 = case.make(dtype=jnp.bfloat16)
    params = randomized_params(cell32, jax.random.key(2))
    xs = _inputs()
    (ys32, _), (ys16, carry16) = jax.jit(lambda params, xs: [recurrax.scan(c, params, xs) for c in (cell32, cell16)])(
        params, xs
    )
    assert ys16.dtype == jnp.bfloat16
    # The recurrence accumulates in float32 even when the matmuls run in bf16.
    low_precision = {jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)}
    assert not any(leaf.dtype in low_precision for leaf in jax.tree.leaves(carry16))
    np.testing.assert_allclose(np.asarray(ys16, np.float32), ys32, atol=5e-2)


def test_param_dtype_controls_storage():
    cell = recurrax.lstm(4, param_dtype=jnp.bfloat16, peephole=True, layer_norm=True, proj_size=2)
    params = cell.init(jax.random.key(0), 3)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}


def test_lstm_parameter_shapes():
    cell = recurrax.lstm(5, peephole=True, layer_norm=True, proj_size=3)
    shapes = jax.tree.map(jnp.shape, cell.init(jax.random.key(0), 2))
    assert shapes == {
        "input_kernel": (2, 20),
        "recurrent_kernel": (3, 20),
        "bias": (20,),
        "peephole": (3, 5),
        "input_norm_scale": (20,),
        "recurrent_norm_scale": (20,),
        "cell_norm_scale": (5,),
        "cell_norm_bias": (5,),
        "projection_kernel": (5, 3),
    }


def test_gru_and_rnn_parameter_shapes():
    gru = jax.tree.map(jnp.shape, recurrax.gru(4).init(jax.random.key(0), 2))
    assert gru == {"input_kernel": (2, 12), "recurrent_kernel": (4, 12), "input_bias": (12,), "recurrent_bias": (12,)}
    rnn = jax.tree.map(jnp.shape, recurrax.simple_rnn(4).init(jax.random.key(0), 2))
    assert rnn == {"input_kernel": (2, 4), "recurrent_kernel": (4, 4), "bias": (4,)}


def test_forget_bias_and_orthogonal_recurrent_blocks():
    H = 6
    params = recurrax.lstm(H, forget_bias=1.0).init(jax.random.key(0), 3)
    np.testing.assert_array_equal(params["bias"][H : 2 * H], np.ones(H))
    np.testing.assert_array_equal(params["bias"][:H], np.zeros(H))
    for k in range(4):
        block = np.asarray(params["recurrent_kernel"][:, k * H : (k + 1) * H])
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)


def test_chrono_initialisation():
    H, t_max = 64, 100.0
    params = recurrax.lstm(H, chrono_max_timescale=t_max).init(jax.random.key(0), 3)
    forget = np.asarray(params["bias"][H : 2 * H])
    assert np.all(forget >= 0) and np.all(forget <= np.log(t_max - 1) + 1e-6)
    np.testing.assert_allclose(params["bias"][:H], -forget)
    gru = recurrax.gru(H, chrono_max_timescale=t_max).init(jax.random.key(0), 3)
    update = np.asarray(gru["input_bias"][H : 2 * H])
    assert np.all(update >= 0) and update.std() > 0.1
    with pytest.raises(ValueError, match="max_timescale"):
        recurrax.lstm(H, chrono_max_timescale=1.5).init(jax.random.key(0), 3)


def test_equal_cells_compare_equal_so_jit_does_not_retrace():
    assert recurrax.lstm(8) == recurrax.lstm(8)
    assert hash(recurrax.gru(8)) == hash(recurrax.gru(8))
    assert recurrax.lstm(8) != recurrax.lstm(8, peephole=True)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: recurrax.lstm(0), "hidden_size"),
        (lambda: recurrax.lstm(4.0), "hidden_size"),
        (lambda: recurrax.lstm(4, proj_size=4), "proj_size"),
        (lambda: recurrax.simple_rnn(4, activation="sigmoid"), "activation"),
        (lambda: recurrax.gru(4, dtype=jnp.int32), "dtype"),
    ],
)
def test_bad_cell_options_are_clear_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()
