"""The TPU (Mosaic) variant of the linear cells' Pallas scan equals the plain loop, and lowers for a TPU.

On CPU the TPU kernels run in Pallas's TPU interpret mode
(``pltpu.InterpretParams``), which simulates what a TPU would do with them:
blocks copied into VMEM, scratch buffers that persist across the grid's steps
(and start as NaN, so a missing initialisation shows), the grid run in order.
The sizes are made tiny but keep the TPU's (8, 128) alignment: B = 9 → 16 and
H = 130 → 256 make 2 × 2 state tiles of [8, 128]; T = 6 in chunks of 4 makes
two time chunks, the last one ragged (2 steps). float32 and complex64, each
with lengths (``valid``), resets (one on an invalid step), an initial carry,
values and gradients with respect to ``a``, ``b`` and ``h0``, against the
plain loop of ``linear_scan_pallas``'s docstring (values in float64 numpy,
gradients by differentiating the loop in jax) in the same compiled program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from recurrax.cells import _pallas, _pallas_linear, _pallas_linear_tpu
from recurrax.cells._pallas_linear import linear_scan_pallas

T, B, H = 6, 9, 130


@pytest.fixture
def tpu_kernels(monkeypatch):
    """The TPU kernels, interpreted, in chunks of 4 steps and [8, 128] tiles."""
    monkeypatch.setattr(_pallas, "OFF_DEVICE_VARIANT", "tpu")
    monkeypatch.setattr(_pallas_linear_tpu, "TPU_CHUNK", 4)
    monkeypatch.setattr(_pallas_linear_tpu, "TPU_STATE_TILE", 128)
    monkeypatch.setattr(_pallas_linear_tpu, "TPU_UNROLL", 2)  # a chunk's 3 loop steps: an unrolled pair and one


def _arrays(dtype):
    rng = np.random.default_rng(1)
    shapes = ((T, B, H), (T, B, H), (B, H))
    parts = [rng.normal(size=s) + (1j * rng.normal(size=s) if dtype == jnp.complex64 else 0) for s in shapes]
    parts[0] *= 0.9  # |a| around 1: neither vanishing nor exploding over 6 steps
    lengths = np.array([6, 3, 5, 0, 6, 4, 2, 6, 1])
    valid = np.arange(T)[:, None] < lengths
    resets = np.random.default_rng(2).random((T, B)) < 0.3  # the same for both dtypes
    resets[4, 1] = True  # past example 1's end: must change nothing
    resets[4, 4] = True  # at the second chunk's first step: h0 is its state before, not the first chunk's last
    resets[4, [0, 2, 7]] = False  # ... which the other valid examples continue from
    return parts, valid, resets


def _loop(a, b, h0, valid, resets):
    """The docstring's plain loop (numpy or jax, whichever the arrays are)."""
    np_ = jnp if isinstance(a, jax.Array) else np
    h, hs = h0, []
    for t in range(a.shape[0]):
        start = np_.where(resets[t][:, None], h0, h)
        h = np_.where(valid[t][:, None], a[t] * start + b[t], h)
        hs.append(h)
    return np_.stack(hs)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64], ids=["float32", "complex64"])
def test_the_tpu_kernels_equal_the_plain_loop_in_values_and_gradients(tpu_kernels, dtype):
    grid = _pallas_linear_tpu._Grid(T, *_pallas_linear_tpu.padded_sizes(B, H), backwards=True)
    assert (grid.state_tiles, grid.num_chunks, grid.chunk) == ((2, 2), 2, 4), "the grid this test means to run"
    (a, b, h0), valid, resets = _arrays(dtype)
    weights = jnp.asarray(np.random.default_rng(3).normal(size=(T, B, H)), jnp.float32)
    masks = jnp.asarray(valid), jnp.asarray(resets)

    def loss(scan, a, b, h0):
        hs = scan(a, b, h0)
        # Real and imaginary parts weighted differently, so a gradient's conjugation error shows.
        return jnp.sum(weights * (jnp.real(hs) + 0.5 * jnp.imag(hs) + 0.1 * jnp.abs(hs) ** 2)), hs

    def kernel(a, b, h0):
        return linear_scan_pallas(a, b, h0, valid=masks[0], resets=masks[1])

    def loop(a, b, h0):
        return _loop(a, b, h0, *masks)

    grad = jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)
    args = [jnp.asarray(x, dtype) for x in (a, b, h0)]
    (k_value, k_hs), k_grads = jax.jit(lambda *x: grad(kernel, *x))(*args)
    assert "recurrax_linear_forward_tpu" in str(jax.make_jaxpr(kernel)(*args)), "the TPU kernel ran"
    (value, _), grads = jax.jit(lambda *x: grad(loop, *x))(*args)

    np.testing.assert_allclose(k_hs, _loop(a, b, h0, valid, resets), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(k_value, value, rtol=2e-5)
    for name, got, want in zip(("a", "b", "h0"), k_grads, grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=f"the gradient with respect to {name}")
    assert not np.any(np.asarray(k_grads[0])[3:, 1]), "no gradient reaches a past an example's end"


@pytest.mark.slow  # ~2 s: the TPU interpreter, vmapped
def test_the_tpu_kernels_run_under_vmap(tpu_kernels):
    # jax.vmap puts a grid dimension in front of the kernels' (blocks, chunks): each member of the vmapped
    # batch equals its own call, values and gradients.
    (a, b, h0), valid, resets = _arrays(jnp.float32)
    stacked = [jnp.stack([jnp.asarray(x), 0.5 * jnp.asarray(x)]) for x in (a, b, h0)]

    def loss(a, b, h0):
        return jnp.sum(jnp.sin(linear_scan_pallas(a, b, h0, valid=jnp.asarray(valid), resets=jnp.asarray(resets))))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    vmapped = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1, 2))))(*stacked)
    for member in range(2):
        one = grad(*(x[member] for x in stacked))
        for got, want in zip(jax.tree.leaves(vmapped), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(got[member], want, rtol=2e-5, atol=2e-5)


def test_the_backend_chooses_the_kernels(monkeypatch):
    # One place chooses: a TPU runs the Mosaic kernels compiled, a GPU the Triton ones, anything else
    # OFF_DEVICE_VARIANT interpreted (Pallas's TPU interpret mode for the TPU kernels).
    for backend, variant in (("cpu", "triton"), ("tpu", "tpu"), ("gpu", "triton")):
        monkeypatch.setattr(jax, "default_backend", lambda b=backend: b)
        assert _pallas.kernel_variant() == variant, backend
        assert (_pallas.tpu_interpret() is False) is (backend == "tpu"), backend
        # Mosaic gets the grid's semantics; the interpreter none (it cannot take them under jax.vmap).
        semantics = _pallas.tpu_dimension_semantics("parallel", "arbitrary")
        assert semantics == (("parallel", "arbitrary") if backend == "tpu" else None), backend
    monkeypatch.setattr(_pallas, "OFF_DEVICE_VARIANT", "tpu")
    assert _pallas.kernel_variant() == "triton", "still on a GPU"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert _pallas.kernel_variant() == "tpu"
    assert isinstance(_pallas.tpu_interpret(), pltpu.InterpretParams)
    with pytest.raises(ValueError, match=r"the kernel variant must be 'triton' or 'tpu', got 'mosaic'"):
        _pallas_linear._variant("mosaic")


def test_the_kernels_lower_through_mosaic_for_a_tpu(monkeypatch):
    # Cross-platform lowering (no TPU needed), with the real tile and chunk sizes: the block shapes pass
    # Pallas's (8, 128) checks and every operation in the kernels has a Mosaic lowering. What Mosaic's own
    # compiler (in libtpu) would say about layouts and VMEM is not checked here. Complex, with both masks:
    # every ref the kernels can have; T = 40 is one chunk of 32 and a ragged one of 8, B = 9 two tiles.
    monkeypatch.setattr(_pallas, "OFF_DEVICE_VARIANT", "tpu")
    monkeypatch.setattr(_pallas, "tpu_interpret", lambda: False)
    a, b = (jnp.full((40, 9, 200), 0.5 + 0.1j, jnp.complex64) for _ in range(2))
    h0, valid, resets = a[0], jnp.ones((40, 9), bool), jnp.zeros((40, 9), bool).at[3, 1].set(True)

    def loss(a, b, h0):
        return jnp.sum(jnp.abs(linear_scan_pallas(a, b, h0, valid=valid, resets=resets)))

    lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(a, b, h0).lower(lowering_platforms=("tpu",))
    text = lowered.as_text()
    assert text.count("tpu_custom_call") == 2  # the forward and the backward kernel
    assert "recurrax_linear_forward_tpu" in text and "recurrax_linear_backward_tpu" in text
