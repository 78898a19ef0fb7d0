"""``to_nnx``: the recurrax.nn layers built from a torch module (and its ``nn.Linear`` head) compute what torch does."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from interop.torch_cases import (
    LENGTHS,
    TOLERANCE,
    D,
    H,
    P,
    make_module,
    max_abs_diff,
    random_inputs,
    run_torch,
    torch,
)
from recurrax import nn
from recurrax.interop import to_nnx


@nnx.jit
def _run(model, xs, lengths):
    return model(xs, lengths=lengths)


def _linear(in_features, *, bias=True, seed=30):
    torch.manual_seed(seed)
    return torch.nn.Linear(in_features, 5, bias=bias)


@pytest.mark.parametrize(
    ("kind", "bidirectional", "batch_first", "bias"),
    [("lstm_proj", True, True, True), ("gru", False, False, False)],
    ids=["lstm-proj-bidirectional-batch-first", "gru-time-major-no-head-bias"],
)
def test_stack_and_head_equal_torch(kind, bidirectional, batch_first, bias):
    """Two layers with torch's eval-mode dropout between them, per-example lengths, and a Linear on every step."""
    module = make_module(kind, num_layers=2, bidirectional=bidirectional, batch_first=batch_first, seed=31)
    module.dropout = 0.25  # off in eval mode, in torch and (after to_nnx) in recurrax
    output_features = (2 if bidirectional else 1) * (P if kind == "lstm_proj" else H)
    head = _linear(output_features, bias=bias)
    model = to_nnx(module, head=head, rngs=nnx.Rngs(0))
    assert isinstance(model, nnx.Sequential) and isinstance(model.layers[0], nn.StackedRNN)
    assert model.layers[0].dropout.deterministic  # the torch module was in eval mode

    xs, _ = random_inputs(kind, num_states=1, batch_first=batch_first, dtype="float32", seed=32)
    expected, _ = run_torch(module, torch.from_numpy(xs), lengths=LENGTHS)
    with torch.no_grad():
        expected = head(expected)
    got = _run(model, jnp.asarray(xs), jnp.asarray(LENGTHS))
    assert max_abs_diff(got, expected) <= TOLERANCE["float32"]


def test_without_head_a_single_layer_is_a_one_layer_stack_in_either_layout():
    module = make_module("rnn_relu", bias=False, seed=33)
    model = to_nnx(module, rngs=nnx.Rngs(0))
    assert isinstance(model, nn.StackedRNN) and len(model.layers) == 1 and isinstance(model.layers[0], nn.RNN)
    assert model.layers[0].time_major and model.layers[0].cell.activation == "relu"
    xs, _ = random_inputs("rnn_relu", num_states=1, batch_first=False, dtype="float32", seed=34)
    expected, _ = run_torch(module, torch.from_numpy(xs))
    assert max_abs_diff(model(jnp.asarray(xs)), expected) <= TOLERANCE["float32"]

    # The other layout on request (torch's is time-major here): the same numbers, transposed.
    batch_major = to_nnx(module, batch_first=True, rngs=nnx.Rngs(0))
    assert not batch_major.layers[0].time_major
    swapped = batch_major(jnp.asarray(np.swapaxes(xs, 0, 1)))
    assert max_abs_diff(np.swapaxes(np.asarray(swapped), 0, 1), expected) <= TOLERANCE["float32"]


def test_the_documented_name_table():
    """docs/interop.md: torch parameter name → attribute path of the model ``to_nnx`` returns."""
    module = make_module("lstm_proj", num_layers=2, bidirectional=True, seed=35)
    head = _linear(2 * P)
    model = to_nnx(module, head=head, rngs=nnx.Rngs(0))
    stack, linear = model.layers
    for name, value in module.state_dict().items():
        role, layer = name.split("_l")[0], int(name.split("_l")[1].split("_")[0])
        direction = stack.layers[layer].backward if name.endswith("_reverse") else stack.layers[layer].forward
        params = direction.params
        if role == "weight_ih":
            np.testing.assert_array_equal(params["input_kernel"][...], value.numpy().T)
        elif role == "weight_hh":
            np.testing.assert_array_equal(params["recurrent_kernel"][...], value.numpy().T)
        elif role == "weight_hr":
            np.testing.assert_array_equal(params["projection_kernel"][...], value.numpy().T)
        elif role == "bias_ih":  # the LSTM's (and RNN's) two biases are one: their sum
            other = module.state_dict()[name.replace("bias_ih", "bias_hh")]
            np.testing.assert_array_equal(params["bias"][...], (value + other).numpy())
    np.testing.assert_array_equal(linear.kernel[...], head.weight.detach().numpy().T)
    np.testing.assert_array_equal(linear.bias[...], head.bias.detach().numpy())


def test_gru_biases_and_the_training_mode_carry_over():
    module = make_module("gru", num_layers=2, seed=36).train()
    module.dropout = 0.5
    model = to_nnx(module, rngs=nnx.Rngs(0))
    assert not model.dropout.deterministic and model.dropout.rate == 0.5
    params = model.layers[1].params
    np.testing.assert_array_equal(params["input_bias"][...], module.bias_ih_l1.detach().numpy())
    np.testing.assert_array_equal(params["recurrent_bias"][...], module.bias_hh_l1.detach().numpy())


def test_bad_sources_and_heads_are_named():
    module = make_module("lstm", batch_first=True)
    with pytest.raises(TypeError, match=r"head must be a torch\.nn\.Linear or its state dict, got Conv1d"):
        to_nnx(module, head=torch.nn.Conv1d(H, 2, 1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"head\['weight'\] has shape \(5, 8\), expected \[out_features, 4\]"):
        to_nnx(module, head=_linear(8), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="head has dtype float64, but the recurrent weights are float32"):
        to_nnx(module, head=_linear(H).double(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="mode is read off the LSTM; pass it only with a state dict"):
        to_nnx(module, mode="LSTM", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.RNN, .* got Linear"):
        to_nnx(torch.nn.Linear(D, H), rngs=nnx.Rngs(0))

    class Doubled(torch.nn.LSTM):
        def forward(self, x, hx=None):
            output, state = super().forward(x, hx)
            return 2 * output, state

    with pytest.raises(TypeError, match="allow_subclass=True"):
        to_nnx(Doubled(D, H), rngs=nnx.Rngs(0))
    assert isinstance(to_nnx(Doubled(D, H), allow_subclass=True, rngs=nnx.Rngs(0)), nn.StackedRNN)
