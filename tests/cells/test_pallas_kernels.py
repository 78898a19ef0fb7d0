"""The Pallas kernels of the "gates from a matmul" cells equal the step loop: outputs, final carries and gradients.

The LSTM (plain and with peepholes), the GRU, the Elman RNN and a user's
:class:`~recurrax.cells.MatmulGatedCell` share one kernel pair
(``cells/_pallas_gated.py``). On CPU it runs in Pallas's interpret mode (the
same kernel bodies as XLA operations), so these tests hold its arithmetic,
masks and backward kernel; the GPU lowering is checked by cross-platform
lowering here and compiled only by ``benchmarks/run_gpu.sh``.
One shape for every cell, chosen to need padding (B=3 → 4, H=3 → 4), with
lengths, resets, an initial carry, reverse and two batch dimensions; each cell
is one compiled program holding the reference, the kernel's value-and-gradient
and its forward-only variant.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gpu_lowering
import recurrax
from recurrax.cells import _gate_update_jaxpr, _kernels, _pallas, _pallas_gated_tpu
from recurrax.cells._gru_sequence import gru_gate_update
from recurrax.cells._lstm_sequence import lstm_gate_update

BATCH, T, D, H = (1, 3), 5, 2, 3
LENGTHS = jnp.array([[5, 3, 4]])
RESETS = jnp.zeros((*BATCH, T), bool).at[0, 0, 3].set(True).at[0, 2, 1].set(True)


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)])


def _compare(cell, batch=BATCH, lengths=LENGTHS, resets=RESETS):
    k_p, k_x, k_c, k_w = jax.random.split(jax.random.key(7), 4)
    # Random parameters everywhere (a zero recurrent bias would hide a missing one).
    params = jax.tree.map(lambda a: 0.7 * a, _random_like(k_p, cell.init(k_p, D)))
    xs = jax.random.normal(k_x, (*batch, T, D))
    carry = jax.tree.map(lambda a: 0.5 * a, _random_like(k_c, cell.initial_carry(batch)))
    weights = jax.random.normal(k_w, (*batch, T, H))

    def run(kernel, params, xs, carry):
        # "loop": the engine's step loop. "pallas": fused=True, so the kernel runs or the call raises.
        options = recurrax.ScanOptions(reverse=True, fused=kernel == "pallas", kernel="pallas")
        return recurrax.scan(cell, params, xs, initial_carry=carry, lengths=lengths, resets=resets, options=options)

    def loss(params, xs, carry, kernel):
        ys, final = run(kernel, params, xs, carry)
        return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(final)), (ys, final)

    grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)

    @jax.jit  # one program: the step loop (fused=False), the kernel differentiated, the kernel forward only
    def programs(params, xs, carry):
        return {
            "loop": grad(params, xs, carry, "loop"),
            "pallas": grad(params, xs, carry, "pallas"),
            "pallas forward": run("pallas", params, xs, carry),
        }

    return programs(params, xs, carry)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GainRNNCell(recurrax.cells.MatmulGatedCell):
    """h' = tanh(g ⊙ z) / g with a per-unit gain g: a cell of a user's, whose update is NaN at a zero gain."""

    num_gates: ClassVar[int] = 1

    def init(self, key, in_features):
        return {
            "input_kernel": jax.random.normal(key, (in_features, self.hidden_size)),
            "recurrent_kernel": jnp.eye(self.hidden_size),
            "bias": jnp.zeros(self.hidden_size),
            "gain": jnp.ones((1, self.hidden_size)),
        }

    def initial_carry(self, batch_shape=(), dtype=None):
        return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

    def project_inputs(self, params, xs):
        return xs @ params["input_kernel"] + params["bias"]

    def unit_parameters(self, params):
        return params["gain"]

    def gate_update(self, gx, hh, state, units):
        # The kernel pads H = 3 to 4 units with a gain of 0: 0/0 there, which must not reach a real unit.
        (gain,) = units
        return (jnp.tanh(gain * (gx[0] + hh[0])) / gain,), {}


CELL_OF_A_USER = "a user's MatmulGatedCell"
CELLS = {
    "lstm": lambda: recurrax.lstm(H),
    "gru": lambda: recurrax.gru(H),
    "peephole lstm": lambda: recurrax.lstm(H, peephole=True),
    "simple rnn": lambda: recurrax.simple_rnn(H),
    CELL_OF_A_USER: lambda: GainRNNCell(H),
}


@pytest.fixture(scope="module", params=list(CELLS))
def results(request):
    return _compare(CELLS[request.param]())


@pytest.mark.slow  # 1.5-4.5 s per cell: interpret-mode kernels and their gradients compile as large programs
def test_the_kernels_equal_the_step_loop_in_values_and_gradients(results):
    (value, (ys, final)), grads = results["loop"]
    (k_value, (k_ys, k_final)), k_grads = results["pallas"]
    np.testing.assert_allclose(k_value, value, rtol=1e-5)
    np.testing.assert_allclose(k_ys, ys, atol=1e-5)
    assert not np.any(np.asarray(k_ys)[0, 1, 3:]), "outputs past an example's length are zero"
    for got, want in zip(jax.tree.leaves((k_final, k_grads)), jax.tree.leaves((final, grads)), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)
    # The forward-only kernel (no saved gates) computes the same outputs.
    f_ys, f_final = results["pallas forward"]
    for got, want in zip(jax.tree.leaves((f_ys, f_final)), jax.tree.leaves((ys, final)), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_kernels_find_which_updates_read_only_the_sums_of_their_gates():
    # Those whose backward kernel keeps gx + hh and writes one gradient for both (the others, gx and hh).
    # (update, G gates, S parts of the carry, P unit-parameter rows) as each cell passes them to the kernel:
    updates = {
        "lstm": (lstm_gate_update, 4, 2, 0),
        "gru": (gru_gate_update, 3, 1, 0),
        "peephole lstm": (lstm_gate_update, 4, 2, 3),
        "simple rnn": (recurrax.simple_rnn(H).gate_update, 1, 1, 0),
        CELL_OF_A_USER: (GainRNNCell(H).gate_update, 1, 1, 1),
    }
    summed = {name: _gate_update_jaxpr.reads_only_sums(*update) for name, update in updates.items()}
    assert summed == {"lstm": True, "gru": False, "peephole lstm": True, "simple rnn": True, CELL_OF_A_USER: True}

    def reads(update, num_gates=1, num_parts=1):
        return _gate_update_jaxpr.reads_only_sums(update, num_gates, num_parts, 0)

    assert reads(lambda g, r, s, u: (((g[0] + r[0]) * s[0],), {}))
    assert not reads(lambda g, r, s, u: (((g[0] + r[0]) * g[0],), {}))  # gx read again
    assert not reads(lambda g, r, s, u: ((g[0] * r[0],), {}))  # not a sum
    assert not reads(lambda g, r, s, u: ((g[0] + r[1], g[1] + r[0]), {}), 2, 2)  # sums of other gates
    assert not reads(lambda g, r, s, u: ((jax.jit(jnp.add)(g[0], r[0]),), {}))  # the sum hidden in a jit
    assert not reads(lambda g, r, s, u: ((g[0],), {}))  # hh unread: the saved sum would be wrong


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_a_kernel_that_cannot_run_falls_back_or_raises_by_name(name):
    cell = recurrax.lstm(H) if name == "lstm" else recurrax.gru(H)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.zeros((T, 2, D))
    carry = cell.initial_carry((2,))
    remat = recurrax.ScanOptions(kernel="pallas", remat=True)
    # fused=None: the XLA loop runs instead; fused=True: the cell declines with the kernel's reason.
    assert cell.sequence_unsupported(params, carry, xs, remat) is None
    reason = cell.sequence_unsupported(params, carry, xs, remat.replace(fused=True))
    assert reason is not None and "kernel='pallas'" in reason and "remat" in reason
    if name == "gru":
        reason = cell.sequence_unsupported(params, carry, xs, recurrax.ScanOptions(kernel="cudnn", fused=True))
        assert reason is not None and "no cudnn kernel" in reason
    # The switch picks the kernel: a pallas_call in the program with kernel="pallas", none with "xla".
    for kernel, calls in (("pallas", True), ("xla", False)):
        jaxpr = jax.make_jaxpr(lambda p, x, k=kernel: recurrax.scan(cell, p, x, time_major=True, kernel=k))(params, xs)
        assert ("pallas_call" in str(jaxpr)) is calls, kernel
    # auto stays on the XLA loop until a GPU run measures the kernels.
    assert _kernels.choose(recurrax.ScanOptions(), {"pallas": lambda steps: None}) == ("xla", None)


def _assert_equal(results):
    (value, (ys, final)), grads = results["loop"]
    (k_value, (k_ys, k_final)), k_grads = results["pallas"]
    np.testing.assert_allclose(k_value, value, rtol=1e-5)
    for got, want in zip(jax.tree.leaves((k_ys, k_final, k_grads)), jax.tree.leaves((ys, final, grads)), strict=True):
        np.testing.assert_allclose(got, want, atol=2e-5)
    f_ys, f_final = results["pallas forward"]
    for got, want in zip(jax.tree.leaves((f_ys, f_final)), jax.tree.leaves((ys, final)), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.slow  # ~2 s per cell: the TPU interpreter runs each grid iteration as its own program
@pytest.mark.parametrize("name", ["gru", "peephole lstm", "a user's MatmulGatedCell"])
def test_the_tpu_kernels_equal_the_step_loop_in_values_and_gradients(name, monkeypatch):
    # The Mosaic kernels in Pallas's TPU interpreter (TPU semantics: blocks, scratch, sequential grid), with
    # 2 examples per block and 2 steps per chunk so that 10 examples make 2 blocks and T = 5 three chunks,
    # the last padded.
    monkeypatch.setattr(_pallas, "OFF_DEVICE_VARIANT", "tpu")
    monkeypatch.setattr(_pallas_gated_tpu, "TIME_CHUNK", 2)
    monkeypatch.setattr(_pallas_gated_tpu, "BATCH_BLOCK", 8)
    batch = (2, 5)
    lengths = jnp.array([[5, 3, 4, 1, 5], [2, 5, 5, 4, 3]])
    resets = jnp.zeros((*batch, T), bool).at[0, 0, 3].set(True).at[1, 2, 1].set(True).at[1, 4, 2].set(True)
    ran = []
    for step in ("forward", "backward"):
        kernel = getattr(_pallas_gated_tpu, step)
        monkeypatch.setattr(_pallas_gated_tpu, step, lambda *a, k=kernel, s=step: ran.append(s) or k(*a))
    _assert_equal(_compare(CELLS[name](), batch, lengths, resets))
    assert sorted(set(ran)) == ["backward", "forward"]


@pytest.mark.slow  # ~2-3 s per variant: interpreted kernels, vmapped, and their gradients
@pytest.mark.parametrize("variant", ["triton", "tpu"])
def test_the_kernels_run_under_vmap_over_parameters(variant, monkeypatch):
    # An ensemble of two GRUs, vmapped: jax.vmap puts a grid dimension in front of the kernels' own. Each
    # member equals the step loop's (kernel="xla", same vmap), values and gradients.
    monkeypatch.setattr(_pallas, "OFF_DEVICE_VARIANT", variant)
    monkeypatch.setattr(_pallas_gated_tpu, "TIME_CHUNK", 2)  # T = 5: three chunks
    cell = recurrax.gru(H)
    params = jax.vmap(lambda k: cell.init(k, D))(jax.random.split(jax.random.key(0), 2))
    xs = jax.random.normal(jax.random.key(1), (2, *BATCH, T, D))

    def loss(p, x, kernel):
        ys, _ = recurrax.scan(cell, p, x, lengths=LENGTHS, resets=RESETS, kernel=kernel, fused=kernel == "pallas")
        return jnp.sum(jnp.sin(ys))

    @jax.jit
    def both(params, xs):
        return [jax.vmap(jax.value_and_grad(lambda p, x, k=k: loss(p, x, k)))(params, xs) for k in ("pallas", "xla")]

    got, want = both(params, xs)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, atol=2e-5)


# Not slow-marked (~1 s of tracing and lowering, no compile): what lowers changes with the jax version.
def test_the_tpu_kernels_lower_through_mosaic(monkeypatch):
    # Cross-platform lowering (no TPU needed): Mosaic's lowering rules run in Python, so an operation or
    # a block shape it cannot express fails here. Whether Mosaic then compiles it is known only on a TPU.
    monkeypatch.setattr(_pallas, "OFF_DEVICE_VARIANT", "tpu")
    monkeypatch.setattr(_pallas, "tpu_interpret", lambda: False)
    xs, lengths = jnp.ones((2, 20, 3)), jnp.array([20, 5])
    # The LSTM's update reads only the sums of its gates, the GRU's does not: both backward kernels' forms.
    for cell in (recurrax.lstm(32, peephole=True), recurrax.gru(32)):
        params = cell.init(jax.random.key(0), 3)

        def loss(p, x, cell=cell):
            ys, _ = recurrax.scan(cell, p, x, lengths=lengths, reverse=True, kernel="pallas", fused=True)
            return jnp.sum(ys)

        text = jax.jit(jax.value_and_grad(loss)).trace(params, xs).lower(lowering_platforms=("tpu",)).as_text()
        assert text.count("tpu_custom_call") == 2, type(cell).__name__  # the forward and the backward kernel


def test_the_tpu_kernels_decline_what_does_not_fit_vmem(monkeypatch):
    monkeypatch.setattr(_pallas, "OFF_DEVICE_VARIANT", "tpu")
    cell = recurrax.lstm(2048)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 4))
    xs, carry = jax.ShapeDtypeStruct((8, 2, 4), jnp.float32), jax.eval_shape(lambda: cell.initial_carry((2,)))
    reason = cell.sequence_unsupported(params, carry, xs, recurrax.ScanOptions(kernel="pallas", fused=True))
    assert reason is not None and "H = 2048 needs" in reason and "MiB of VMEM on a TPU" in reason
    assert _pallas_gated_tpu.unsupported(4, 2, 32, 512) is None


def test_a_matmul_gated_cell_runs_its_kernel_only_when_asked():
    cell = recurrax.simple_rnn(H)
    params = cell.init(jax.random.key(0), D)
    xs = jnp.zeros((T, 2, D))
    # kernel="pallas": the kernel; "auto" and "xla": the engine's step loop, its XLA path (no error).
    for kernel, calls in (("pallas", True), ("auto", False), ("xla", False)):
        jaxpr = jax.make_jaxpr(lambda p, x, k=kernel: recurrax.scan(cell, p, x, time_major=True, kernel=k))(params, xs)
        assert ("pallas_call" in str(jaxpr)) is calls, kernel
    no_loop = r"SimpleRNNCell: no fused XLA loop \(its whole sequence runs only as kernel='pallas', not 'auto'\)"
    with pytest.raises(ValueError, match=no_loop):
        recurrax.scan(cell, params, xs, time_major=True, fused=True)
    with pytest.raises(ValueError, match=r"SimpleRNNCell: kernel='pallas': remat=True \(the kernel stores"):
        recurrax.scan(cell, params, xs, time_major=True, kernel="pallas", remat=True, fused=True)

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Doubled(recurrax.cells.SimpleRNNCell):
        def step(self, params, carry, x):
            h, y = super().step(params, carry, x)
            return h, 2 * y

    with pytest.raises(ValueError, match="Doubled overrides its step"):
        recurrax.scan(Doubled(H), params, xs, time_major=True, kernel="pallas", fused=True)
    # Peepholes: the Pallas kernel or the step loop; no fused XLA loop, no cuDNN.
    peephole = recurrax.lstm(H, peephole=True)
    p_params = peephole.init(jax.random.key(0), D)
    jaxpr = jax.make_jaxpr(lambda p, x: recurrax.scan(peephole, p, x, time_major=True, kernel="xla"))(p_params, xs)
    assert "pallas_call" not in str(jaxpr) and "custom_jvp_call" not in str(jaxpr)
    with pytest.raises(ValueError, match=r"kernel='cudnn': peepholes \(cuDNN's LSTM has none\)"):
        recurrax.scan(peephole, p_params, xs, time_major=True, kernel="cudnn", fused=True)


def test_a_gpu_whose_jax_has_no_triton_backend_declines_the_kernels_by_name(monkeypatch):
    # jax 0.12 deprecates Pallas's Triton backend; a jax without it declines kernel="pallas" on a GPU.
    def no_triton():
        raise ImportError("cannot import name 'triton' from 'jax.experimental.pallas'")

    monkeypatch.setattr(_pallas, "interpret_mode", lambda: False)
    monkeypatch.setattr(_pallas, "_pallas_triton", no_triton)
    xs = jnp.zeros((T, 2, D))
    missing = r"kernel='pallas'.*: this jax has no Pallas Triton backend to compile the kernels for a GPU \(cannot"
    for cell, method in ((recurrax.simple_rnn(H), "sequential"), (recurrax.min_gru(H), "parallel")):
        params = cell.init(jax.random.key(0), D)
        with pytest.raises(ValueError, match=missing):
            recurrax.scan(cell, params, xs, time_major=True, method=method, kernel="pallas", fused=True)
        # Without fused=True the XLA path runs: no kernel in the program.
        run = lambda p, x, cell=cell, method=method: recurrax.scan(  # noqa: E731
            cell, p, x, time_major=True, method=method, kernel="pallas"
        )
        assert "pallas_call" not in str(jax.make_jaxpr(run)(params, xs)), type(cell).__name__


@dataclasses.dataclass(frozen=True, kw_only=True)
class CenteredRNNCell(recurrax.cells.SimpleRNNCell):
    """h' = tanh(z - mean over units of z): the mean needs every unit, so a tile of the state computes another."""

    def gate_update(self, gx, hh, state, units):
        z = gx[0] + hh[0]
        return (jnp.tanh(z - jnp.mean(z, axis=-1, keepdims=True)),), {}


def test_a_cell_whose_update_is_not_elementwise_runs_the_step_loop_or_raises_by_name():
    cell = CenteredRNNCell(H)
    params = cell.init(jax.random.key(0), D)
    xs = jax.random.normal(jax.random.key(1), (T, 2, D))
    with pytest.raises(ValueError, match=r"CenteredRNNCell: kernel='pallas': its gate_update is not elementwise over "):
        recurrax.scan(cell, params, xs, time_major=True, kernel="pallas", fused=True)
    # Without fused=True the step loop runs it: no kernel in the program, and the step loop's numbers.
    run = jax.jit(lambda p, x, kernel: recurrax.scan(cell, p, x, time_major=True, kernel=kernel), static_argnums=2)
    assert "pallas_call" not in str(jax.make_jaxpr(run, static_argnums=2)(params, xs, "pallas"))
    np.testing.assert_array_equal(run(params, xs, "pallas")[0], run(params, xs, "xla")[0])


def test_the_kernels_name_what_makes_an_update_not_elementwise():
    def reason(body, num_units=0):
        return _gate_update_jaxpr.not_elementwise(lambda g, r, s, u: ((body(g[0] + r[0], *u),), {}), 1, 1, num_units)

    assert reason(lambda z: jnp.tanh(z) / (1 + jnp.exp(-z))) is None
    assert reason(jax.nn.relu) is None  # a custom_jvp inside a jit: their bodies are read
    assert reason(lambda z, gain: jnp.tanh(gain * z) / gain, num_units=1) is None
    assert "(it uses `reduce_sum`)" in reason(lambda z: z - jnp.mean(z, axis=-1, keepdims=True))
    assert "(it uses `reduce_max`)" in reason(lambda z: z - jnp.max(z, axis=0))  # across examples, too
    assert "(it uses `rev`)" in reason(lambda z: z[:, ::-1])
    assert "(it uses `cumsum`)" in reason(lambda z: jnp.cumsum(z, axis=-1))
    assert "(it uses `iota`)" in reason(lambda z: z * jnp.arange(z.shape[-1], dtype=z.dtype))
    assert "(it uses `dot_general`)" in reason(lambda z: z @ z)
    assert "(it uses `reshape`)" in reason(lambda z: z.reshape(z.shape[0], -1, 1)[..., 0])
    scales = jnp.ones(5)  # one per unit of a 5-unit state: no tile has 5 units
    assert "cannot be traced on a tile of the state" in reason(lambda z: z * scales)


def test_one_tiles_weight_blocks_fit_a_gpus_shared_memory_twice_over():
    # The first H200 run: at one 128-wide tile Triton asked 565,376 bytes for the LSTM's kernel, of 232,448
    # (two copies of each gate's [128, 128] float32 block, plus ~40 KiB). The widest tile that fits is used.
    h200, a100, t4 = (_pallas.GPU_SHARED_MEMORY_BYTES[c] for c in ("9.0", "8.0", "7.5"))
    assert h200 == 232_448  # what Triton reported available
    expected = {h200: {1: 128, 3: 64, 4: 64, 8: 32}, a100: {1: 64, 4: 32}, t4: {1: 32, 4: 16}}
    for memory, tiles in expected.items():
        assert {g: _pallas.gpu_hidden_tile(g, memory) for g in tiles} == tiles
        for g, tile in tiles.items():
            assert 2 * g * tile * tile * 4 + _pallas.GPU_SHARED_MEMORY_RESERVE <= memory
            assert (
                tile == _pallas.GPU_HIDDEN_TILE
                or 2 * g * (2 * tile) ** 2 * 4 + _pallas.GPU_SHARED_MEMORY_RESERVE > memory
            )
    assert _pallas.gpu_hidden_tile(4) == 64  # off a GPU, for the H200 the tests lower for


def test_the_doctor_says_what_the_kernels_run_on_each_backend(monkeypatch):
    class GPU:
        compute_capability = "9.0"

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "devices", lambda: [GPU()])
    h200 = "Triton kernels, compute capability 9.0, 227 KiB shared memory per block: state tiles 64 (LSTM), 64 (GRU)"
    assert _pallas.describe() == h200 + ", 128 (Elman RNN)"
    GPU.compute_capability = "7.5"  # a T4
    assert _pallas.describe().endswith(
        "64 KiB shared memory per block: state tiles 16 (LSTM), 16 (GRU), 32 (Elman RNN)"
    )
    monkeypatch.setattr(_pallas, "_pallas_triton", lambda: (_ for _ in ()).throw(ImportError("no triton")))
    assert (
        _pallas.describe()
        == "declined: this jax has no Pallas Triton backend to compile the kernels for a GPU (no triton)"
    )
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert _pallas.describe() == "Mosaic TPU kernels, compiled"
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(_pallas, "OFF_DEVICE_VARIANT", "tpu")
    assert _pallas.describe() == "Mosaic TPU kernels, in Pallas's TPU interpreter"


def test_kernel_is_one_of_the_named_choices():
    with pytest.raises(ValueError, match=r"kernel must be one of \('auto', 'xla', 'pallas', 'cudnn'\), got 'triton'"):
        recurrax.ScanOptions(kernel="triton")


# Not slow-marked (~1 s of tracing and lowering, no compile): what lowers changes with the jax version.
def test_the_kernels_lower_through_triton_for_a_cuda_gpu(monkeypatch):
    # Cross-platform lowering (no GPU needed): catches what Triton cannot express
    # (value slices, unsupported primitives) before a GPU run does.
    monkeypatch.setattr(_pallas, "interpret_mode", lambda: False)
    monkeypatch.setattr(_pallas, "GPU_HIDDEN_TILE", 16)  # two tiles of the state, as H > 128 has on a GPU
    xs, lengths = jnp.ones((2, 8, 3)), jnp.array([8, 5])
    # The LSTM with and without per-unit parameters (its peepholes), and the GRU, whose update reads more
    # than the sums of its gates: every cell runs the same kernel pair, in one of its two backward forms.
    for cell in (recurrax.lstm(32), recurrax.lstm(32, peephole=True), recurrax.gru(32)):
        params = cell.init(jax.random.key(0), 3)

        def loss(p, x, cell=cell):
            ys, _ = recurrax.scan(cell, p, x, lengths=lengths, reverse=True, kernel="pallas", fused=True)
            return jnp.sum(ys)

        with gpu_lowering.for_a_cuda_gpu():
            lowered = jax.jit(jax.value_and_grad(loss)).trace(params, xs).lower(lowering_platforms=("cuda",))
        text = lowered.as_text()
        assert text.count("__gpu$xla.gpu.triton") == 2, type(cell).__name__  # the forward and the backward kernel
