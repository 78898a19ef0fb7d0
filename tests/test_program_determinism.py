"""Tracing the same computation again lowers to the same program, so the persistent compilation
cache (keyed on the program) hits for a new Trainer or a re-run notebook cell; and the traced
``lengths`` checks, whose numbering made the programs differ on jax < 0.11, still report the check
that failed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from jax.experimental import checkify

import recurrax


@pytest.fixture(scope="module")
def lstm():
    cell = recurrax.lstm(4)
    return cell, cell.init(jax.random.key(0), 3), jnp.ones((2, 6, 3))


def test_a_retrace_with_traced_lengths_lowers_to_the_same_program(lstm):
    cell, params, xs = lstm

    def lowered() -> str:  # a fresh function each time: jit traces it anew
        return jax.jit(lambda n: recurrax.scan(cell, params, xs, lengths=n)[0]).lower(jnp.array([6, 3])).as_text()

    assert lowered() == lowered()


def test_two_lengths_checks_in_one_function_each_report_their_own_failure(lstm):
    cell, params, xs = lstm

    def two_scans(n, m):
        return (
            recurrax.scan(cell, params, xs, lengths=n)[0].sum()
            + recurrax.scan(cell, params, xs[:, :4], lengths=m)[0].sum()
        )

    checked = checkify.checkify(jax.jit(two_scans), errors=checkify.user_checks)
    error, _ = checked(jnp.array([6, 3]), jnp.array([9, 1]))
    assert error.get().startswith("lengths must be in [1, T=4], got min 1 and max 9")
    error, _ = checked(jnp.array([0, 3]), jnp.array([4, 1]))
    assert error.get().startswith("lengths must be in [1, T=6], got min 0 and max 3")
    error, _ = checked(jnp.array([6, 3]), jnp.array([4, 1]))
    assert error.get() is None
