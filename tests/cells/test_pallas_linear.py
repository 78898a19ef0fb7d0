"""The Pallas linear scan (``kernel="pallas"``, ``method="parallel"``) equals the associative scan and the step loop.

On CPU the kernels run in Pallas's interpret mode: the same kernel bodies as
XLA operations, so these tests hold their arithmetic, masks, tiling and
backward kernel (values and gradients with respect to parameters, inputs and
the initial carry). One shape for every cell, chosen to need padding (B=3 → 4,
H=3 → 4) and to run a 2×2 grid of tiles with two time chunks and a remainder
step; two batch dimensions. One compiled program per call: minGRU and the
LRU (a complex state) reversed with lengths, resets and an initial carry
(time-major inside the engine, every mask); minLSTM forwards with lengths and
the default carry (batch-major inside, a zero state, no resets).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gpu_lowering
import recurrax
from recurrax.cells import _pallas, _pallas_linear
from recurrax.cells._pallas_linear import linear_scan_pallas

BATCH, T, D, H = (1, 3), 5, 2, 3
LENGTHS = jnp.array([[5, 3, 4]])
RESETS = jnp.zeros((*BATCH, T), bool).at[0, 0, 3].set(True).at[0, 2, 1].set(True).at[0, 1, 4].set(True)
CELLS = {
    "min_gru": lambda: recurrax.min_gru(H),
    "min_lstm": lambda: recurrax.min_lstm(H),
    "lru": lambda: recurrax.lru(H, skip=False),
}


def _random_like(key, tree, scale):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [scale * jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    )


def _compare(cell, *, masked):
    k_p, k_x, k_c, k_w = jax.random.split(jax.random.key(3), 4)
    # Random parameters everywhere (a zero bias would hide a missing one); the LRU's |λ| = exp(-exp(ν)) stays < 1.
    params = _random_like(k_p, cell.init(k_p, D), 0.7)
    xs = jax.random.normal(k_x, (*BATCH, T, D))
    carry = _random_like(k_c, cell.initial_carry(BATCH), 0.5)  # complex for the LRU: both parts random
    weights = jax.random.normal(k_w, (*BATCH, T, cell.output_size))

    def loss(params, xs, carry, method, kernel):
        options = recurrax.ScanOptions(method=method, kernel=kernel, fused=kernel == "pallas", reverse=masked)
        if masked:
            ys, final = recurrax.scan(
                cell, params, xs, initial_carry=carry, lengths=LENGTHS, resets=RESETS, options=options
            )
        else:
            ys, final = recurrax.scan(cell, params, xs, lengths=LENGTHS, options=options)
        final_term = sum(jnp.sum(jnp.sin(jnp.real(leaf)) + jnp.cos(jnp.imag(leaf))) for leaf in jax.tree.leaves(final))
        return jnp.sum(ys * weights) + final_term, (ys, final)

    grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)

    # One program per call: the step loop and the kernel differentiated, the associative scan forwards only
    # (its gradients equal the step loop's: tests/cells/test_linear_recurrences.py; a compile saved).
    @jax.jit
    def programs(params, xs, carry):
        return {
            "loop": grad(params, xs, carry, "sequential", "xla"),
            "associative": loss(params, xs, carry, "parallel", "xla"),
            "pallas": grad(params, xs, carry, "parallel", "pallas"),
        }

    return programs(params, xs, carry)


# A compile each: minGRU and the LRU (complex) with every mask; minLSTM (minGRU's kernel code, other
# coefficients) in the call without resets or an initial carry (a zero state, batch-major inside the engine).
@pytest.fixture(
    scope="module", params=[("min_gru", True), ("lru", True), ("min_lstm", False)], ids=lambda p: "-".join(map(str, p))
)
def results(request):
    name, masked = request.param
    return _compare(CELLS[name](), masked=masked)


def test_the_kernel_equals_the_associative_scan_and_the_step_loop(results):
    (k_value, (k_ys, k_final)), k_grads = results["pallas"]
    for reference, (value, (ys, final)) in (("loop", results["loop"][0]), ("associative", results["associative"])):
        np.testing.assert_allclose(k_value, value, rtol=1e-5, err_msg=reference)
        np.testing.assert_allclose(k_ys, ys, atol=1e-5, err_msg=reference)
        for got, want in zip(jax.tree.leaves(k_final), jax.tree.leaves(final), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=reference)
    for got, want in zip(jax.tree.leaves(k_grads), jax.tree.leaves(results["loop"][1]), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)
    assert not np.any(np.asarray(k_ys)[0, 1, 3:]), "outputs past an example's length are zero"


def test_the_kernel_is_the_plain_loop_of_its_docstring():
    # Direct, without the engine: float32 with masks (a reset on an invalid step included, which must
    # change nothing), and a complex recurrence with random real and imaginary parts (a sign wrong in the
    # complex product shows), against the loop in float64 / complex128.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, T, 3, 5)) * 1.2
    h0 = rng.normal(size=(3, 5))
    valid, resets = rng.random((T, 3)) < 0.7, rng.random((T, 3)) < 0.3

    def loop(a, b, h0, valid, resets):
        h, hs = h0, []
        for t in range(T):
            h = np.where(valid[t][:, None], a[t] * np.where(resets[t][:, None], h0, h) + b[t], h)
            hs.append(h)
        return np.stack(hs)

    z = 1j * rng.normal(size=(3, T, 3, 5))
    ca, cb, ch0 = a + z[0], b + z[1], h0 + z[2, 0]
    f32 = [jnp.asarray(x, jnp.float32) for x in (a, b, h0)]
    c64 = [jnp.asarray(x, jnp.complex64) for x in (ca, cb, ch0)]
    masks = (jnp.asarray(valid), jnp.asarray(resets))
    got = jax.jit(lambda r, c: (linear_scan_pallas(*r, valid=masks[0], resets=masks[1]), linear_scan_pallas(*c)))(
        f32, c64
    )
    np.testing.assert_allclose(got[0], loop(a, b, h0, valid, resets), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], loop(ca, cb, ch0, np.ones((T, 3), bool), np.zeros((T, 3), bool)), rtol=1e-5)


@pytest.mark.slow  # ~3 s: two programs, each the kernel's value and gradient in float32 and complex64
def test_time_in_chunks_equals_the_whole_sequence_in_values_and_gradients(monkeypatch):
    # Chunks of 2 steps: T = 5 is 3 chunks, the last padded; masks with an example of length 0, resets on
    # invalid steps and one on a chunk's first step; random complex parts (the running product's and the
    # join's signs).
    rng = np.random.default_rng(1)
    a, b = (rng.normal(size=(T, 3, 5)) + 1j * rng.normal(size=(T, 3, 5)) for _ in range(2))
    h0 = rng.normal(size=(3, 5)) + 1j * rng.normal(size=(3, 5))
    valid = jnp.asarray(np.arange(T)[:, None] < np.array([5, 0, 4]))  # an example never valid keeps h0
    resets = jnp.zeros((T, 3), bool).at[2, 0].set(True).at[4, 1].set(True).at[3, 2].set(True)
    weights = jnp.asarray(rng.normal(size=(T, 3, 5)))
    args = {"float32": [jnp.asarray(x.real, jnp.float32) for x in (a, b, h0)]}
    args["complex64"] = [jnp.asarray(x, jnp.complex64) for x in (0.6 * a, b, h0)]

    def loss(a, b, h0):
        hs = linear_scan_pallas(a, b, h0, valid=valid, resets=resets)
        return jnp.sum(jnp.real(hs) * weights) + jnp.sum(jnp.imag(hs)), hs

    def program():
        grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
        return jax.jit(lambda args: {name: grad(*x) for name, x in args.items()})(args)

    whole = program()
    monkeypatch.setattr(_pallas_linear, "TIME_CHUNK", 2)
    chunked = program()
    for name in args:
        for got, want in zip(jax.tree.leaves(chunked[name]), jax.tree.leaves(whole[name]), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
    assert str(jax.make_jaxpr(lambda: loss(*args["float32"]))()).count("pallas_call") == 2  # l and the product


def test_the_switch_runs_the_kernel_by_name_and_declines_what_it_cannot_run():
    cell = recurrax.min_gru(H)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.zeros((T, 2, D))

    def program(kernel, cell=cell, params=params, xs=xs, **kw):
        return str(
            jax.make_jaxpr(lambda p, x: recurrax.scan(cell, p, x, method="parallel", kernel=kernel, **kw))(params, xs)
        )

    # kernel="pallas" runs a pallas_call; "xla" and "auto" keep the associative scan (AUTO: empty until measured).
    assert "pallas_call" in program("pallas")
    assert "pallas_call" not in program("xla") and "pallas_call" not in program("auto")
    # The step loop is untouched by the switch: a linear cell has no whole-sequence kernel of its own.
    assert "pallas_call" not in str(jax.make_jaxpr(lambda p, x: recurrax.scan(cell, p, x, kernel="pallas"))(params, xs))
    # A bfloat16 state: the associative scan instead, or with fused=True an error that says why.
    bf16 = recurrax.min_gru(H, carry_dtype=jnp.bfloat16)
    assert "pallas_call" not in program("pallas", cell=bf16, params=bf16.init(jax.random.key(0), D))
    with pytest.raises(
        ValueError, match=r"^\w+Cell: fused=True, but kernel='pallas' cannot run this call: a state of dtype bfloat16"
    ):
        program("pallas", cell=bf16, params=bf16.init(jax.random.key(0), D), fused=True)
    with pytest.raises(TypeError, match=r"a, b and h0 must share one dtype of .*got float32, float32, bfloat16"):
        linear_scan_pallas(jnp.ones((T, 2, 3)), jnp.ones((T, 2, 3)), jnp.ones((2, 3), jnp.bfloat16))
    with pytest.raises(ValueError, match=r"valid must be \[T, B\] = \(5, 2\), got \(2, 5\)"):
        linear_scan_pallas(jnp.ones((T, 2, 3)), jnp.ones((T, 2, 3)), jnp.ones((2, 3)), valid=jnp.ones((2, T), bool))


# Not slow-marked (~1 s of tracing and lowering, no compile): what lowers changes with the jax version.
def test_the_kernels_lower_through_triton_for_a_cuda_gpu(monkeypatch):
    # Cross-platform lowering (no GPU needed), as tests/cells/test_pallas_kernels.py does for the LSTM:
    # catches what Triton cannot express before a GPU run does. Complex, with both masks: every ref the
    # kernels can have, in GPU tiles (one example, 32 units, as on a GPU: a 2×2 grid here).
    monkeypatch.setattr(_pallas, "interpret_mode", lambda: False)
    a, b = (jnp.full((20, 2, 64), 0.5 + 0.1j, jnp.complex64) for _ in range(2))
    h0, valid, resets = a[0], jnp.ones((20, 2), bool), jnp.zeros((20, 2), bool).at[3, 1].set(True)

    def loss(a, b, h0):
        return jnp.sum(jnp.abs(linear_scan_pallas(a, b, h0, valid=valid, resets=resets)))

    with gpu_lowering.for_a_cuda_gpu():
        lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(a, b, h0).lower(lowering_platforms=("cuda",))
    assert lowered.as_text().count("__gpu$xla.gpu.triton") == 2  # the forward and the backward kernel
