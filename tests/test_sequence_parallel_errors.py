"""recurrax.sequence_parallel_scan in one process: a one-device mesh equals scan; bad input names itself.

The many-device checks are in tests/multidevice/test_sequence_parallel.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import recurrax

CELL = recurrax.min_gru(4)
PARAMS = CELL.init(jax.random.key(0), 3)
XS = jax.random.normal(jax.random.key(1), (2, 6, 3))
MESH = Mesh(np.array(jax.devices()[:1]), ("seq",))


def test_a_one_device_mesh_equals_scan():
    lengths, resets = jnp.array([6, 4]), jnp.zeros((2, 6), bool).at[0, 3].set(True)
    carry = jnp.full((2, 4), 0.5)
    kwargs = {"lengths": lengths, "resets": resets, "initial_carry": carry}
    run = jax.jit(recurrax.sequence_parallel_scan, static_argnames=("cell", "mesh", "axis_name", "reverse"))
    ys, h = run(CELL, PARAMS, XS, mesh=MESH, axis_name="seq", reverse=True, **kwargs)
    ref_ys, ref_h = recurrax.scan(CELL, PARAMS, XS, method="sequential", reverse=True, **kwargs)
    np.testing.assert_allclose(ys, ref_ys, atol=1e-6)
    np.testing.assert_allclose(h, ref_h, atol=1e-6)


def test_an_axis_the_mesh_lacks_is_refused():
    with pytest.raises(ValueError, match=r"axis_name must name an axis of mesh, got 'time'; .* \('seq',\)"):
        recurrax.sequence_parallel_scan(CELL, PARAMS, XS, mesh=MESH, axis_name="time")


def test_a_mesh_must_be_a_mesh():
    with pytest.raises(TypeError, match=r"mesh must be a jax\.sharding\.Mesh, got list"):
        recurrax.sequence_parallel_scan(CELL, PARAMS, XS, mesh=jax.devices(), axis_name="seq")


def test_time_steps_that_do_not_divide_over_the_axis_are_refused():
    # The check comes before anything runs, so one device listed twice stands in for two.
    two = Mesh(np.array(jax.devices()[:1] * 2), ("seq",))
    xs = XS[:, :5]
    with pytest.raises(
        ValueError, match=r"xs: its 5 time steps must split evenly over the 2 devices of mesh axis 'seq'"
    ):
        recurrax.sequence_parallel_scan(CELL, PARAMS, xs, mesh=two, axis_name="seq")


def test_a_cell_that_is_not_linear_is_refused():
    cell = recurrax.gru(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(TypeError, match=r"cell must be a linear-recurrence cell \(a LinearCell.*\), got GRUCell"):
        recurrax.sequence_parallel_scan(cell, params, XS, mesh=MESH, axis_name="seq")


def test_a_sequence_form_cell_must_say_how_far_back_it_reads():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WindowedGRU(recurrax.MinGRUCell):
        def linear_terms(self, params, initial_carry, xs, starts):
            return super().linear_terms(params, initial_carry, xs, starts)

    cell = WindowedGRU(hidden_size=4)
    assert recurrax.min_gru(4).linear_lookback() == 0 and recurrax.qrnn(4, window=3).linear_lookback() == 2
    with pytest.raises(ValueError, match="cell: WindowedGRU overrides linear_terms but not linear_lookback"):
        recurrax.sequence_parallel_scan(cell, PARAMS, XS, mesh=MESH, axis_name="seq")
