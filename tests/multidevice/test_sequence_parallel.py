"""recurrax.sequence_parallel_scan over 8 (and 2, 4) CPU devices equals the one-device step loop.

Values and gradients (params, inputs, initial carry), with lengths that end
inside a chunk, resets on and next to chunk boundaries, an explicit initial
carry and reverse. Compiles are the cost on 2 cores: every case of a cell runs
in one jitted program, on one shape, with parameters drawn in numpy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import recurrax

B, T, D, H = 2, 32, 3, 4  # 8 devices: chunks of 4 steps
CHUNK = T // 8
LENGTHS = np.array([T, 13], np.int32)  # 13: ends at step 12, inside chunk 3 (steps 12..15)
RESETS = np.zeros((B, T), bool)
RESETS[0, [CHUNK, 2 * CHUNK, 5 * CHUNK]] = True  # exactly on chunk boundaries
RESETS[1, [CHUNK - 1, 2 * CHUNK + 1, 3 * CHUNK - 1]] = True  # next to them
RESETS[1, 5 * CHUNK] = True  # in the padding: the frozen carry must not restart

CELLS = {
    "min_gru": recurrax.min_gru(H),
    "min_gru_log_space": recurrax.min_gru(H, log_space=True),
    "min_lstm": recurrax.min_lstm(H),
    "lru": recurrax.lru(H, out_features=D),
    "qrnn_fo": recurrax.qrnn(H, window=2, pooling="fo"),
}


def _mesh(num_devices: int) -> Mesh:
    return Mesh(np.array(jax.devices()[:num_devices]), ("seq",))


def _random_like(tree, seed: int, scale: float = 0.5):
    """Leaves drawn in numpy, shaped and typed like ``tree``'s (complex ones get an imaginary part)."""
    rng = np.random.default_rng(seed)

    def draw(leaf):
        value = rng.normal(size=leaf.shape) * scale
        if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
            value = value + 1j * rng.normal(size=leaf.shape) * scale
        return jnp.asarray(value.astype(leaf.dtype))

    return jax.tree.map(draw, tree)


def _inputs(cell, seed: int, batch: int = B, steps: int = T, features: int = D):
    params = _random_like(jax.eval_shape(functools.partial(cell.init, in_features=features), jax.random.key(0)), seed)
    xs = jnp.asarray(np.random.default_rng(seed + 1).normal(size=(batch, steps, features)).astype(np.float32))
    carry = _random_like(jax.eval_shape(lambda: cell.initial_carry((batch,))), seed + 2)
    return params, xs, carry


def _run(sharded: bool, cell, params, xs, carry, mesh_size: int = 8):
    """Both directions, each with lengths, resets and an explicit initial carry."""
    if sharded:
        run = functools.partial(recurrax.sequence_parallel_scan, mesh=_mesh(mesh_size), axis_name="seq")
    else:
        run = functools.partial(recurrax.scan, method="sequential")
    masks = {"lengths": jnp.asarray(LENGTHS), "resets": jnp.asarray(RESETS), "initial_carry": carry}
    return run(cell, params, xs, **masks), run(cell, params, xs, reverse=True, **masks)


def _loss(outputs):
    """A sum with a different weight on every output and carry entry, so that no part of the gradient cancels."""
    leaves = [jnp.real(leaf) if jnp.iscomplexobj(leaf) else leaf for leaf in jax.tree.leaves(outputs)]
    return sum(jnp.sum(leaf * jnp.cos(jnp.arange(leaf.size, dtype=leaf.dtype)).reshape(leaf.shape)) for leaf in leaves)


@functools.partial(jax.jit, static_argnames=("sharded", "cell"))
def _value_and_grads(sharded, cell, params, xs, carry):
    def loss(params, xs, carry):
        outputs = _run(sharded, cell, params, xs, carry)
        return _loss(outputs), outputs

    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry)


def _assert_trees_close(actual, expected, *, atol, rtol=1e-4):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=atol, rtol=rtol)


# slow: all but minGRU run on the full leg only (3-6 CPU-s of compiles each); the newest-stack leg keeps one.
@pytest.mark.parametrize(
    "name", [name if name == "min_gru" else pytest.param(name, marks=pytest.mark.slow) for name in CELLS]
)
def test_values_and_gradients_equal_the_one_device_step_loop(name):
    cell = CELLS[name]
    params, xs, carry = _inputs(cell, seed=len(name))
    (loss, outputs), grads = _value_and_grads(True, cell, params, xs, carry)
    (ref_loss, ref_outputs), ref_grads = _value_and_grads(False, cell, params, xs, carry)
    _assert_trees_close(outputs, ref_outputs, atol=1e-5)
    _assert_trees_close(grads, ref_grads, atol=1e-4)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    (forward_ys, _), (backward_ys, _) = outputs
    assert not np.any(np.asarray(forward_ys[1, LENGTHS[1] :])) and not np.any(np.asarray(backward_ys[1, LENGTHS[1] :]))


def _sub_mesh_cases():
    """2 devices: minLSTM from its default carry, no masks. 4 devices: QRNN of window 3 (each chunk's
    first two steps read the previous chunk's inputs), time-major with two batch dims, reverse, resets."""
    params, xs, _ = _inputs(CELLS["min_lstm"], seed=2)
    yield 2, CELLS["min_lstm"], params, xs, {}
    cell = recurrax.qrnn(H, window=3, pooling="fo")
    params, xs, carry = _inputs(cell, seed=4, batch=3)
    xs = xs.reshape(3, 1, T, D).transpose(2, 0, 1, 3)  # [T, 3, 1, D]
    carry = jax.tree.map(lambda leaf: leaf[:, None], carry)
    resets = jnp.asarray(np.tile(np.arange(T)[:, None, None] % 8 >= 7, (1, 3, 1)))  # every chunk's last step
    yield 4, cell, params, xs, {"time_major": True, "reverse": True, "resets": resets, "initial_carry": carry}


@pytest.mark.parametrize("case", list(_sub_mesh_cases()), ids=["2-min_lstm", "4-qrnn-time-major"])
def test_a_sub_mesh_equals_the_step_loop(case):
    num_devices, cell, params, xs, kwargs = case

    @functools.partial(jax.jit, static_argnames="sharded")
    def run(sharded, params, xs):  # the masks and the carry are the program's constants
        if sharded:
            mesh = _mesh(num_devices)
            return recurrax.sequence_parallel_scan(cell, params, xs, mesh=mesh, axis_name="seq", **kwargs)
        return recurrax.scan(cell, params, xs, method="sequential", **kwargs)

    _assert_trees_close(run(True, params, xs), run(False, params, xs), atol=1e-5)


def test_a_long_sequence_over_8_devices():
    steps = 65536
    cell = recurrax.min_gru(2, chrono_max_timescale=1000.0)
    params, xs, _ = _inputs(cell, seed=3, batch=1, steps=steps, features=1)
    lengths = jnp.array([steps - 5000])  # ends inside the last chunk but one
    resets = jnp.zeros((1, steps), bool).at[0, steps // 8 * 3].set(True)

    @functools.partial(jax.jit, static_argnames="sharded")
    def run(sharded, xs):
        if sharded:
            return recurrax.sequence_parallel_scan(
                cell, params, xs, mesh=_mesh(8), axis_name="seq", lengths=lengths, resets=resets
            )
        return recurrax.scan(cell, params, xs, method="sequential", lengths=lengths, resets=resets)

    ys, final = run(True, xs)
    assert len(ys.sharding.device_set) == 8  # the outputs stay split along time
    _assert_trees_close((ys, final), run(False, xs), atol=1e-4)


def test_t_must_divide_over_the_devices_and_chunks_must_hold_the_lookback():
    cell = recurrax.qrnn(H, window=3)
    params, xs, _ = _inputs(cell, seed=0, steps=12)
    with pytest.raises(ValueError, match=r"xs: its 12 time steps must split evenly over the 8 devices"):
        recurrax.sequence_parallel_scan(cell, params, xs, mesh=_mesh(8), axis_name="seq")
    params, xs, _ = _inputs(cell, seed=0, steps=8)
    with pytest.raises(ValueError, match=r"xs: each device's chunk of 1 steps is shorter than the 2 earlier steps"):
        recurrax.sequence_parallel_scan(cell, params, xs, mesh=_mesh(8), axis_name="seq")
