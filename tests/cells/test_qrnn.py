"""QRNN: the paper's convolution and pooling against a plain Python loop; parallel scan equals step loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax
from numpy_reference import scan_loop, sigmoid

B, T, D, H = 3, 7, 3, 4
LENGTHS = np.array([7, 5, 2])
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[1, 1] = True


def qrnn_step(p, carry, x, *, window, pooling, zoneout=0.0):
    """Bradbury et al. (2017), from the raw inputs of the window (not recurrax's pending sums).

    The reference carry: the last ``window`` inputs of this episode (newest last), how many
    inputs the episode has seen, the initial carry's pending sums, and c. Pre-activation at
    step t: Σ_j x_{t-j} W_j over this episode's inputs, plus what the initial carry still
    holds for this step.
    """
    inputs, seen, pending, c = carry
    inputs, seen = np.concatenate([inputs[1:], x[None]]), seen + 1
    pre = p["bias"] + sum(inputs[-1 - j] @ p["input_kernel"][j] for j in range(min(window, seen)))
    if seen - 1 < window - 1:
        pre = pre + pending[seen - 1]
    H = c.shape[-1]
    z, f = np.tanh(pre[:H]), sigmoid(pre[H : 2 * H])
    candidate = f * c + (sigmoid(pre[3 * H :]) if pooling == "ifo" else 1 - f) * z
    c_new = zoneout * c + (1 - zoneout) * candidate
    h = c_new if pooling == "f" else sigmoid(pre[2 * H : 3 * H]) * c_new
    return (inputs, seen, pending, c_new), h


def _reference(params, xs, carry0, window, pooling, reverse, zoneout=0.0):
    p = jax.tree.map(np.asarray, params)
    start = (np.zeros((B, window, D)), np.zeros(B, int), np.asarray(carry0.context), np.asarray(carry0.c))
    ys, (_, _, _, c) = scan_loop(
        lambda carry, x: qrnn_step(p, carry, x, window=window, pooling=pooling, zoneout=zoneout),
        np.asarray(xs),
        start,
        lengths=LENGTHS,
        resets=RESETS,
        reverse=reverse,
    )
    return ys, c


def _setup(window, pooling, dtype=jnp.float64):
    cell = recurrax.qrnn(H, window=window, pooling=pooling, param_dtype=dtype)
    params = cell.init(jax.random.key(0), D)
    params = {**params, "bias": jax.random.normal(jax.random.key(1), params["bias"].shape, dtype)}
    xs = jax.random.normal(jax.random.key(2), (B, T, D), dtype)
    zeros = cell.initial_carry((B,))
    carry0 = jax.tree.map(lambda a, k: jax.random.normal(jax.random.key(k), a.shape, a.dtype), zeros, type(zeros)(3, 4))
    return cell, params, xs, carry0


@pytest.mark.slow
@pytest.mark.parametrize(("window", "pooling"), [(1, "f"), (2, "fo"), (3, "ifo")])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_both_methods_match_a_plain_python_loop(x64, window, pooling, reverse):
    cell, params, xs, carry0 = _setup(window, pooling)
    ref_ys, ref_c = _reference(params, xs, carry0, window, pooling, reverse)
    methods = ("sequential", "parallel")
    # Both methods in one compile (eagerly, every op of the engine would compile on its own).
    run = jax.jit(
        lambda params, xs, carry0: [
            recurrax.scan(
                cell, params, xs, initial_carry=carry0, lengths=LENGTHS, resets=RESETS, reverse=reverse, method=method
            )
            for method in methods
        ]
    )
    for method, (ys, carry) in zip(methods, run(params, xs, carry0), strict=True):
        np.testing.assert_allclose(ys, ref_ys, rtol=1e-12, atol=1e-12, err_msg=method)
        np.testing.assert_allclose(carry.c, ref_c, rtol=1e-12, atol=1e-12, err_msg=method)


@pytest.mark.slow
def test_final_pending_sums_continue_the_sequence(x64):
    # Scanning a sequence in two pieces (the second from the first's final carry) equals
    # scanning it whole: the carry holds exactly what the convolution still owes.
    cell, params, xs, _ = _setup(3, "fo")
    methods = ("sequential", "parallel")

    @jax.jit
    def whole_and_in_pieces(params, xs):
        pieces = []
        for method in methods:
            first, mid = recurrax.scan(cell, params, xs[:, :4], method=method)
            second, end = recurrax.scan(cell, params, xs[:, 4:], initial_carry=mid, method=method)
            pieces.append((first, second, end))
        return recurrax.scan(cell, params, xs), pieces

    (whole, final), pieces = whole_and_in_pieces(params, xs)
    for first, second, end in pieces:
        np.testing.assert_allclose(jnp.concatenate([first, second], axis=1), whole, rtol=1e-12, atol=1e-12)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12), end, final)


# slow: 2-6 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_parallel_equals_sequential_in_values_and_gradients(x64):
    cell, params, xs, carry0 = _setup(3, "fo")

    def loss(method, params, xs, carry0):
        ys, carry = recurrax.scan(
            cell, params, xs, initial_carry=carry0, lengths=LENGTHS, resets=RESETS, reverse=True, method=method
        )
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry))

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(1, 2, 3)), static_argnums=0)
    grads = {method: value_and_grad(method, params, xs, carry0) for method in ("sequential", "parallel")}
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11), grads["sequential"], grads["parallel"]
    )


def test_zoneout_keeps_the_cell_state_only(x64):
    cell, params, xs, carry0 = _setup(2, "fo")
    zoned = recurrax.cells.zoneout(cell, 0.3, deterministic=True)
    start = zoned.wrap_carry(carry0)
    ys, carry = recurrax.scan(zoned, params, xs, initial_carry=start, lengths=LENGTHS, resets=RESETS)
    ref_ys, ref_c = _reference(params, xs, carry0, 2, "fo", False, zoneout=0.3)
    np.testing.assert_allclose(ys, ref_ys, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(carry.inner.c, ref_c, rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="QRNNCell exposes no recurrent state"):
        recurrax.cells.recurrent_dropout(cell, 0.1)


def test_the_layer_comes_from_the_registry():
    xs = jax.random.normal(jax.random.key(3), (B, T, D))
    layer = recurrax.nn.QRNN(D, 6, rngs=nnx.Rngs(0), window=2)
    assert layer.options.method == "parallel"  # the registry's layer default
    sequential, _ = jax.jit(lambda params, xs: recurrax.scan(layer.cell, params, xs))(layer.pure_params(), xs)
    call = nnx.jit(lambda layer, xs: layer(xs))  # one compile per layer; eagerly, one per op
    np.testing.assert_allclose(call(layer, xs), sequential, rtol=1e-5, atol=1e-6)
    regularised = recurrax.nn.QRNN(D, 6, rngs=nnx.Rngs(0), zoneout=0.1)
    assert regularised.options.method == "sequential" and call(regularised, xs).shape == (B, T, 6)
    # Its backbone ("qrnn") is checked with every other in tests/models/test_models.py.


def test_parameters_and_carry_shapes():
    cell = recurrax.qrnn(H, window=3, pooling="ifo")
    assert jax.tree.map(jnp.shape, cell.init(jax.random.key(0), D)) == {"input_kernel": (3, D, 4 * H), "bias": (4 * H,)}
    carry = cell.initial_carry((2,))
    assert carry.context.shape == (2, 2, 4 * H) and carry.c.shape == (2, H)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: recurrax.qrnn(H, window=0), "window must be a positive int"),
        (lambda: recurrax.qrnn(H, pooling="o"), "pooling must be one of"),
    ],
)
def test_bad_options_are_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
