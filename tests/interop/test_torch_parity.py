"""recurrax equals PyTorch on PyTorch's own modules: the strictest reference for the cells and the engine.

Max abs difference ≤ 1e-5 in float32 and ≤ 1e-10 in float64, for outputs and
final states; gradients against torch autograd.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from interop.torch_cases import (
    LENGTHS,
    TOLERANCE,
    B,
    H,
    T,
    is_lstm,
    make_module,
    max_abs_diff,
    output_size,
    random_inputs,
    run_torch,
    torch,
    torch_state,
)
from recurrax.interop import from_torch

KIND_IDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]


@jax.jit
def _apply(rnn, xs, lengths, initial_state):
    return rnn(xs, lengths=lengths, initial_state=initial_state)


def _as_jax(tree):
    return jax.tree.map(jnp.asarray, tree)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", KIND_IDS)
def test_two_layer_bidirectional_packed_with_initial_state(kind, dtype, request):
    """The combined case: 2 layers, both directions, per-example lengths, a given (h_0, c_0)."""
    if dtype == "float64":
        request.getfixturevalue("x64")
    # Alternate the layout with the dtype so that each cell type sees both.
    batch_first = dtype == "float32"
    module = make_module(kind, num_layers=2, bidirectional=True, batch_first=batch_first, double=dtype == "float64")
    xs, state0 = random_inputs(kind, num_states=4, batch_first=batch_first, dtype=dtype)
    expected_out, expected_state = run_torch(
        module, torch.from_numpy(xs), lengths=LENGTHS, initial_state=torch_state(state0)
    )

    rnn = from_torch(module)
    assert rnn.dtype == jnp.dtype(dtype)
    out, state = _apply(rnn, jnp.asarray(xs), jnp.asarray(LENGTHS), _as_jax(state0))

    tol = TOLERANCE[dtype]
    assert max_abs_diff(out, expected_out) <= tol
    assert max_abs_diff(state, expected_state) <= tol
    # Padding is exactly zero in both.
    out_bm = np.asarray(out) if batch_first else np.swapaxes(np.asarray(out), 0, 1)
    assert out_bm.shape == (B, T, 2 * output_size(kind))
    for b, length in enumerate(LENGTHS):
        assert np.all(out_bm[b, length:] == 0)
    if is_lstm(kind):
        assert state[0].shape == (4, B, output_size(kind)) and state[1].shape == (4, B, H)


@pytest.mark.parametrize("kind", KIND_IDS)
def test_single_layer_without_bias_full_length(kind):
    """The other corner: one layer, one direction, time-major, bias=False, zero initial state, no jit."""
    module = make_module(kind, bias=False, seed=2)
    xs, _ = random_inputs(kind, num_states=1, batch_first=False, dtype="float32", seed=3)
    expected_out, expected_state = run_torch(module, torch.from_numpy(xs))

    rnn = from_torch(module)
    out, state = rnn(jnp.asarray(xs))
    assert max_abs_diff(out, expected_out) <= TOLERANCE["float32"]
    assert max_abs_diff(state, expected_state) <= TOLERANCE["float32"]


def test_unbatched_input_matches():
    """PyTorch also takes an unbatched ``[T, D]`` sequence (states ``[L·N, H]``)."""
    module = make_module("lstm_proj", num_layers=2, bidirectional=True, batch_first=True, seed=4)
    xs, state0 = random_inputs("lstm_proj", num_states=4, batch_first=True, dtype="float32", batched=False)
    expected_out, expected_state = run_torch(module, torch.from_numpy(xs), initial_state=torch_state(state0))

    out, state = from_torch(module)(jnp.asarray(xs), initial_state=_as_jax(state0))
    assert max_abs_diff(out, expected_out) <= TOLERANCE["float32"]
    assert max_abs_diff(state, expected_state) <= TOLERANCE["float32"]


def _torch_grads_as_params(module, mode):
    """torch's parameter gradients, laid out as recurrax params (via the same transposes as the weights)."""
    grads = type(module)(
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        batch_first=module.batch_first,
        **({"proj_size": module.proj_size} if mode == "LSTM" else {}),
    ).double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            target = getattr(grads, name)
            # The summed LSTM bias gets ∂L/∂b_ih (= ∂L/∂b_hh); zero b_hh so the sum is just that.
            target.copy_(torch.zeros_like(p) if mode != "GRU" and name.startswith("bias_hh") else p.grad)
    return from_torch(grads).params


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru"])
def test_gradients_match_torch_autograd(kind, x64):
    """∂L/∂xs, ∂L/∂(initial state) and ∂L/∂params equal torch autograd through packed sequences."""
    module = make_module(kind, num_layers=2, bidirectional=True, batch_first=True, double=True, seed=5)
    xs, state0 = random_inputs(kind, num_states=4, batch_first=True, dtype="float64", seed=6)
    rng = np.random.default_rng(7)
    # A random weighting of the outputs, so that no symmetry of a plain sum can hide an error.
    weights = rng.normal(size=(B, T, 2 * output_size(kind)))

    xs_t = torch.from_numpy(xs).requires_grad_(True)
    state_t = jax.tree.map(lambda s: s.requires_grad_(True), torch_state(state0))
    out_t, h_t = run_torch(module, xs_t, lengths=LENGTHS, initial_state=state_t)
    # Through every output: output, h_n, and c_n for the LSTM (weighted unlike h_n).
    final_t = h_t[0].sum() + 0.5 * h_t[1].sum() if is_lstm(kind) else h_t.sum()
    loss_t = (out_t * torch.from_numpy(weights)).sum() + final_t
    loss_t.backward()

    rnn = from_torch(module)

    def loss(rnn, xs, state0):
        out, h = rnn(xs, lengths=jnp.asarray(LENGTHS), initial_state=state0)
        final = jnp.sum(h[0]) + 0.5 * jnp.sum(h[1]) if is_lstm(kind) else jnp.sum(h)
        return jnp.sum(out * jnp.asarray(weights)) + final

    value, (g_rnn, g_xs, g_state) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
        rnn, jnp.asarray(xs), _as_jax(state0)
    )
    assert abs(float(value) - loss_t.item()) <= 1e-10

    assert max_abs_diff(g_xs, xs_t.grad) <= 1e-10
    assert max_abs_diff(tuple(g_state) if is_lstm(kind) else g_state, jax.tree.map(lambda s: s.grad, state_t)) <= 1e-10
    expected_params = _torch_grads_as_params(module, from_torch(module).mode)
    diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), g_rnn.params, expected_params)
    assert max(jax.tree.leaves(diffs)) <= 1e-10
    # The padded steps of xs do not influence anything.
    for b, length in enumerate(LENGTHS):
        assert np.all(np.asarray(g_xs)[b, length:] == 0)


def test_bfloat16_module_agrees_to_bfloat16_precision():
    """A bf16 module runs in bf16; recurrax keeps its state in float32, so agreement is to bf16 rounding."""
    module = make_module("lstm_proj", num_layers=2, bidirectional=True, seed=12).to(torch.bfloat16)
    xs, _ = random_inputs("lstm_proj", num_states=4, batch_first=False, dtype="float32", seed=13)
    expected_out, expected_state = run_torch(module, torch.from_numpy(xs).to(torch.bfloat16))

    out, state = from_torch(module)(jnp.asarray(xs).astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16 and state[0].dtype == jnp.bfloat16
    # A few bf16 ulps (2⁻⁸ relative) on values of order 1.
    assert max_abs_diff(out.astype(jnp.float32), expected_out.float()) <= 2e-2
    assert max_abs_diff(tuple(s.astype(jnp.float32) for s in state), tuple(s.float() for s in expected_state)) <= 2e-2
