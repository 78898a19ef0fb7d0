"""The LSTM/GRU whole-sequence (fused) paths equal the plain step loop: outputs, final carries and derivatives.

Every case compares ``recurrax.scan(..., fused=True)`` with ``fused=False`` (the
engine's own step loop, itself tested against the Python-loop reference), in
float64 to 1e-12 and in float32 to 1e-6, for reverse-mode and forward-mode
derivatives with respect to parameters, inputs and the initial carry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from recurrax.cells import _fused

B, T, D, H = 3, 7, 3, 5
CELLS = {
    "lstm": lambda **kw: recurrax.lstm(H, **kw),
    "gru": lambda **kw: recurrax.gru(H, **kw),
}


def _random_like(key: jax.Array, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)])


def _setup(name: str, dtype, batch_shape=(B,), time_major=False):
    cell = CELLS[name](param_dtype=dtype)
    key = jax.random.key(3)
    k_p, k_x, k_c, k_t = jax.random.split(key, 4)
    # Non-default, random parameters everywhere (a zero bias would hide a missing one).
    params = jax.tree.map(lambda a: a * 0.7, _random_like(k_p, cell.init(k_p, D)))
    shape = (T, *batch_shape, D) if time_major else (*batch_shape, T, D)
    xs = jax.random.normal(k_x, shape, dtype)
    carry = jax.tree.map(lambda a: 0.5 * a, _random_like(k_c, cell.initial_carry(batch_shape, dtype)))
    return cell, params, xs, carry, k_t


def _compare(name, dtype, tol, *, batch_shape=(B,), lengths=None, resets=None, check_jvp=False, **scan_kwargs):
    cell, params, xs, carry, k_t = _setup(name, dtype, batch_shape, scan_kwargs.get("time_major", False))
    weights = jax.random.normal(k_t, (*xs.shape[:-1], H), dtype)

    def loss(fused, params, xs, carry):
        ys, final = recurrax.scan(
            cell, params, xs, initial_carry=carry, lengths=lengths, resets=resets, fused=fused, **scan_kwargs
        )
        return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(final)), (ys, final)

    tangents = _random_like(jax.random.key(11), (params, xs, carry)) if check_jvp else None

    @jax.jit  # both paths and both derivative modes in one compile
    def both_paths(params, xs, carry, tangents):
        results = {}
        for fused in (True, False):
            (value, aux), grads = jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)(fused, params, xs, carry)
            tangent_out = None
            if tangents is not None:
                _, tangent_out = jax.jvp(lambda *a, fused=fused: loss(fused, *a)[0], (params, xs, carry), tangents)
            results[fused] = (value, aux, grads, tangent_out)
        return results

    results = both_paths(params, xs, carry, tangents)
    got, want = results[True], results[False]
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_equals_plain_float64(x64, name):
    lengths = jnp.array([T, 4, 1])
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True).at[1, 1].set(True).at[2, 0].set(True)
    _compare(name, jnp.float64, 1e-12, lengths=lengths, resets=resets, check_jvp=True)


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_with_other_backends_layouts_equals_plain(x64, monkeypatch, name):
    # Off CPU the tangents are plain matmuls (no pre-transposed weights or inputs).
    monkeypatch.setattr(_fused, "_cpu_layouts", lambda: False)
    lengths = jnp.array([T, 4, 1])
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True)
    _compare(name, jnp.float64, 1e-12, lengths=lengths, resets=resets, check_jvp=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_second_derivatives_equal_plain(x64, name):
    # Hessian-vector products both ways round: forward over reverse, and reverse over forward.
    cell, params, xs, carry, _ = _setup(name, jnp.float64)
    lengths = jnp.array([T, 5, 2])
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True)

    def loss(fused, params):
        ys, final = recurrax.scan(cell, params, xs, initial_carry=carry, lengths=lengths, resets=resets, fused=fused)
        return jnp.sum(jnp.tanh(ys)) + jnp.sum(jnp.sin(jax.tree.leaves(final)[0]))

    direction = _random_like(jax.random.key(5), params)

    def hvps(fused):
        grad = jax.grad(lambda p: loss(fused, p))
        fwd_over_rev = jax.jvp(grad, (params,), (direction,))[1]
        rev_over_fwd = jax.grad(lambda p: jax.jvp(lambda q: loss(fused, q), (p,), (direction,))[1])(params)
        return fwd_over_rev, rev_over_fwd

    got, want = jax.jit(hvps, static_argnums=0)(True), jax.jit(hvps, static_argnums=0)(False)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-11, atol=1e-11)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_hoisted_equals_plain_float32_time_major_reverse_unroll(name):
    # Batch dims (2, 2), time-major, reverse within lengths with resets, unroll and the hoisted
    # per-gate inputs at once.
    lengths = jnp.array([[5, T], [2, T]])
    resets = jnp.zeros((T, 2, 2), bool).at[2, 0, 0].set(True).at[4, 1, 1].set(True)
    _compare(
        name,
        jnp.float32,
        1e-6,
        batch_shape=(2, 2),
        lengths=lengths,
        resets=resets,
        time_major=True,
        reverse=True,
        unroll=2,
        hoist_input_projection=True,
    )


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_remat_chunks_equal_plain(x64, monkeypatch, name):
    # Chunks of 3 over T=7 also exercise the padding of the last chunk.
    monkeypatch.setattr(_fused, "REMAT_CHUNK", 3)
    lengths = jnp.array([T, 5, 2])
    resets = jnp.zeros((B, T), bool).at[0, 4].set(True)
    _compare(name, jnp.float64, 1e-12, lengths=lengths, resets=resets, remat=True)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_fused_loop_differentiated_directly_equals_plain(monkeypatch, name):
    # Above the CPU size threshold the fused loop is differentiated without its custom_jvp.
    monkeypatch.setattr(_fused, "CPU_BATCHED_GRADIENTS_MAX", {4: 0, 3: 0})
    resets = jnp.zeros((B, T), bool).at[1, 2].set(True)
    _compare(name, jnp.float32, 1e-6, lengths=jnp.array([T, 4, 2]), resets=resets)


def test_batched_weight_gradients_threshold():
    # On CPU the LSTM always batches; the GRU only while B·G·H <= 16384.
    assert _fused.batched_weight_gradients(128, 4, 512)
    assert _fused.batched_weight_gradients(32, 3, 128)
    assert not _fused.batched_weight_gradients(64, 3, 256)


def _uses_fused(cell, params, xs, **kwargs) -> bool:
    jaxpr = str(jax.make_jaxpr(lambda p, x: recurrax.scan(cell, p, x, **kwargs))(params, xs))
    return "custom_jvp_call" in jaxpr


def test_default_takes_the_fused_path_only_where_supported():
    xs = jnp.ones((2, 4, 3))
    lstm = recurrax.lstm(4)
    params = lstm.init(jax.random.key(0), 3)
    assert _uses_fused(lstm, params, xs)
    assert not _uses_fused(lstm, params, xs, fused=False)
    assert not _uses_fused(lstm, params, xs, hoist_input_projection=False)
    assert not _uses_fused(lstm, params, xs, return_carries=True)
    for variant in (recurrax.lstm(4, peephole=True), recurrax.lstm(4, proj_size=2), recurrax.gru(4, reset_after=False)):
        assert not _uses_fused(variant, variant.init(jax.random.key(0), 3), xs)
    mixed = recurrax.lstm(4, dtype=jnp.bfloat16)
    assert not _uses_fused(mixed, mixed.init(jax.random.key(0), 3), xs)
    gru = recurrax.gru(4)
    assert _uses_fused(gru, gru.init(jax.random.key(0), 3), xs)


def test_fused_true_where_unsupported_raises():
    xs = jnp.ones((2, 4, 3))
    cell = recurrax.lstm(4, peephole=True)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="fused=True, but the whole-sequence path does not support LSTMCell: peephole"):
        recurrax.scan(cell, params, xs, fused=True)
    plain = recurrax.lstm(4)
    plain_params = plain.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="hoist_input_projection=False"):
        recurrax.scan(plain, plain_params, xs, fused=True, hoist_input_projection=False)
    with pytest.raises(TypeError, match="fused must be None, True or False"):
        recurrax.scan(plain, plain_params, xs, fused="yes")
    step = lambda carry, x: (carry, x)  # noqa: E731
    with pytest.raises(ValueError, match="needs a recurrax Cell"):
        recurrax.scan(step, None, xs, initial_carry=jnp.zeros((2, 3)), fused=True)


def test_fused_equals_plain_without_batch_dims():
    _compare("lstm", jnp.float32, 1e-6, batch_shape=())


def test_a_subclass_keeps_the_fused_path_unless_it_changes_the_step():
    # The engine asks the cell, never its type: a subclass that only adds behaviour is fused,
    # one that overrides the step math is not (the fused loop computes LSTMCell's step).
    xs = jnp.ones((2, 4, 3))

    class Named(recurrax.LSTMCell):
        def describe(self) -> str:
            return "an LSTM with a name"

    class Clipped(recurrax.LSTMCell):
        def step_projected(self, params, carry, projected_x):
            new, y = super().step_projected(params, carry, projected_x)
            return new._replace(c=jnp.clip(new.c, -1, 1)), y

    named, clipped = Named(4), Clipped(4)
    assert _uses_fused(named, named.init(jax.random.key(0), 3), xs)
    assert not _uses_fused(clipped, clipped.init(jax.random.key(0), 3), xs)
    with pytest.raises(ValueError, match="Clipped overrides step_projected"):
        recurrax.scan(clipped, clipped.init(jax.random.key(0), 3), xs, fused=True)
