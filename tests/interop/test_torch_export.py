"""Weights out to PyTorch and back: exact round trips, configuration kept, clear errors on bad input."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from interop.torch_cases import (
    LENGTHS,
    TOLERANCE,
    D,
    H,
    P,
    is_lstm,
    make_module,
    max_abs_diff,
    random_inputs,
    run_torch,
    torch,
    torch_state,
)
from recurrax.interop import TorchRNN, from_torch, to_torch, to_torch_state_dict

KIND_IDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]


def _bitwise_equal(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kind", KIND_IDS)
def test_state_dict_round_trip_is_exact(kind):
    module = make_module(kind, num_layers=2, bidirectional=True, batch_first=True, seed=8)
    original = module.state_dict()
    rnn = from_torch(module)
    state = to_torch_state_dict(rnn)

    assert list(state) == list(original)  # same keys, in torch's order
    for name, value in state.items():
        assert value.dtype == original[name].dtype and value.shape == original[name].shape
        if name.startswith("bias_hh") and kind != "gru":
            assert torch.count_nonzero(value) == 0  # the whole summed bias lives in bias_ih
        elif name.startswith("bias_ih") and kind != "gru":
            # Only the sum is observable; it is carried over bit for bit.
            assert torch.equal(value, original[name] + original[name.replace("_ih", "_hh")])
        else:
            assert torch.equal(value, original[name]), name

    exported = to_torch(rnn)
    assert type(exported) is type(module)
    for attr in ("mode", "input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "bias"):
        assert getattr(exported, attr) == getattr(module, attr), attr
    assert getattr(exported, "proj_size", 0) == getattr(module, "proj_size", 0)
    assert getattr(exported, "nonlinearity", None) == getattr(module, "nonlinearity", None)
    # recurrax → torch → recurrax is the identity, bit for bit.
    again = from_torch(exported)
    assert jax.tree.all(jax.tree.map(_bitwise_equal, again.params, rnn.params))
    assert dataclasses.replace(again, params=rnn.params) == rnn

    xs, _ = random_inputs(kind, num_states=4, batch_first=True, dtype="float32")
    out, state_n = run_torch(exported.eval(), torch.from_numpy(xs))
    expected_out, expected_state = run_torch(module, torch.from_numpy(xs))
    assert max_abs_diff(out, expected_out) <= 1e-6
    assert max_abs_diff(state_n, expected_state) <= 1e-6


@pytest.mark.parametrize("kind", ["lstm_proj", "gru"])
def test_changed_params_export_into_a_given_module_and_match_torch(kind, x64):
    """Params that never came from torch (here: scaled and shifted) run identically once exported."""
    module = make_module(kind, num_layers=2, bidirectional=True, double=True, seed=9)
    rnn = from_torch(module)
    trained = jax.tree.map(lambda p: 1.25 * p + 0.125, rnn)
    assert isinstance(trained, TorchRNN)

    target = make_module(kind, num_layers=2, bidirectional=True, double=True, seed=10)
    assert to_torch(trained, target) is target

    xs, state0 = random_inputs(kind, num_states=4, batch_first=False, dtype="float64", seed=11)
    expected_out, expected_state = run_torch(
        target, torch.from_numpy(xs), lengths=LENGTHS, initial_state=torch_state(state0)
    )
    run = jax.jit(lambda rnn, xs, lengths, state0: rnn(xs, lengths=lengths, initial_state=state0))
    out, state = run(trained, jnp.asarray(xs), jnp.asarray(LENGTHS), jax.tree.map(jnp.asarray, state0))
    assert max_abs_diff(out, expected_out) <= TOLERANCE["float64"]
    assert max_abs_diff(state, expected_state) <= TOLERANCE["float64"]


def test_bias_free_module_round_trips():
    module = make_module("lstm", bias=False, num_layers=2, seed=12)
    rnn = from_torch(module)
    assert not rnn.bias and all(float(jnp.abs(p["bias"]).max()) == 0 for layer in rnn.params for p in layer)
    state = to_torch_state_dict(rnn)
    assert list(state) == list(module.state_dict())
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())


def test_building_a_module_leaves_the_torch_rng_alone():
    rnn = from_torch(make_module("gru"))
    before = torch.random.get_rng_state()
    to_torch(rnn)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_dtype_follows_the_module_unless_overridden(x64):
    module = make_module("gru", seed=13)
    assert from_torch(module).dtype == jnp.float32
    assert from_torch(copy.deepcopy(module).double()).dtype == jnp.float64  # .double() works in place
    wide = from_torch(module, dtype=jnp.float64)
    assert wide.dtype == jnp.float64
    narrow = from_torch(module)
    assert narrow.dtype == jnp.float32
    # float32 → float64 is exact, so casting back gives the same bits.
    assert jax.tree.all(jax.tree.map(lambda a, b: _bitwise_equal(a.astype(jnp.float32), b), wide.params, narrow.params))
    assert to_torch(wide).weight_ih_l0.dtype == torch.float64


def test_bfloat16_weights_round_trip_exactly():
    module = make_module("lstm_proj", seed=14).to(torch.bfloat16)
    rnn = from_torch(module)
    assert rnn.dtype == jnp.bfloat16
    state = to_torch_state_dict(rnn)
    assert state["weight_hr_l0"].dtype == torch.bfloat16
    assert torch.equal(state["weight_ih_l0"], module.weight_ih_l0.detach())
    assert torch.equal(state["weight_hr_l0"], module.weight_hr_l0.detach())


def test_is_a_pytree_of_params_only():
    rnn = from_torch(make_module("lstm_proj", num_layers=2, bidirectional=True))
    # 2 layers × 2 directions × (input, recurrent, bias, projection).
    assert len(jax.tree.leaves(rnn)) == 16
    assert jax.tree.structure(rnn) == jax.tree.structure(jax.tree.map(jnp.zeros_like, rnn))


def test_import_recurrax_does_not_import_torch():
    code = "import sys, recurrax, recurrax.interop; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- bad input
def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match="needs PyTorch"):
        from_torch(object())


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (torch.nn.Linear(D, H), "got Linear"),
        (torch.nn.LSTMCell(D, H), "single-step LSTMCell"),
        (torch.nn.Sequential(torch.nn.GRU(D, H)), "got Sequential"),
        ("lstm", "got str"),
    ],
    ids=["linear", "cell", "sequential", "string"],
)
def test_from_torch_rejects_other_modules(module, message):
    with pytest.raises(TypeError, match=message):
        from_torch(module)


def test_float64_module_without_x64_is_refused():
    with pytest.raises(ValueError, match="64-bit mode is off"):
        from_torch(make_module("gru").double())
    with pytest.raises(TypeError, match="dtype must be float16, bfloat16, float32 or float64, got int32"):
        from_torch(make_module("gru"), dtype=jnp.int32)


def test_apply_rejects_bad_inputs():
    rnn = from_torch(make_module("lstm", num_layers=2, bidirectional=True, batch_first=True))
    xs, (h0, c0) = random_inputs("lstm", num_states=4, batch_first=True, dtype="float32")
    with pytest.raises(ValueError, match=r"xs has 2 features .* expected input_size=3"):
        rnn(jnp.asarray(xs[..., :2]))
    with pytest.raises(ValueError, match=r"xs must have shape \[B, T, D\] \(batch_first=True\)"):
        rnn(jnp.asarray(xs[None]))
    with pytest.raises(TypeError, match="xs has dtype float16, but the parameters are float32"):
        rnn(jnp.asarray(xs, jnp.float16))
    with pytest.raises(TypeError, match=r"pair \(h_0, c_0\)"):
        rnn(jnp.asarray(xs), initial_state=jnp.asarray(h0))
    with pytest.raises(ValueError, match=r"initial_state\[1\] \(c_0\) must have shape .* \(4, 3, 4\), got \(2, 3, 4\)"):
        rnn(jnp.asarray(xs), initial_state=(jnp.asarray(h0), jnp.asarray(c0[:2])))
    with pytest.raises(ValueError, match="lengths must be <= the sequence length"):
        rnn(jnp.asarray(xs), lengths=jnp.asarray([6, 1, 1]))
    gru = from_torch(make_module("gru"))
    with pytest.raises(TypeError, match=r"initial_state \(h_0\) has dtype float16"):
        gru(jnp.zeros((5, 3, D)), initial_state=jnp.zeros((1, 3, H), jnp.float16))


def test_export_rejects_mismatches():
    rnn = from_torch(make_module("lstm_proj", num_layers=2, bidirectional=True))
    with pytest.raises(ValueError, match=r"module\.hidden_size is 8, but rnn\.hidden_size is 4"):
        to_torch(rnn, torch.nn.LSTM(D, 8, num_layers=2, bidirectional=True, proj_size=P))
    with pytest.raises(ValueError, match=r"module\.proj_size is 0, but rnn\.proj_size is 2"):
        to_torch(rnn, torch.nn.LSTM(D, H, num_layers=2, bidirectional=True))
    with pytest.raises(ValueError, match=r"module is a GRU module, but rnn\.mode is 'LSTM'"):
        to_torch(rnn, torch.nn.GRU(D, H, num_layers=2, bidirectional=True))
    with pytest.raises(TypeError, match=r"module's parameters are torch\.float64, but rnn\.dtype is float32"):
        to_torch(rnn, torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, proj_size=P).double())

    params = [list(layer) for layer in rnn.params]
    params[1][1] = {**params[1][1], "recurrent_kernel": jnp.zeros((H, 4 * H))}
    bad = dataclasses.replace(rnn, params=tuple(tuple(layer) for layer in params))
    with pytest.raises(
        ValueError, match=r"params\[1\]\[1\]\['recurrent_kernel'\] has shape \(4, 16\), expected \(2, 16\)"
    ):
        to_torch_state_dict(bad)
    missing = dataclasses.replace(rnn, params=rnn.params[:1])
    with pytest.raises(ValueError, match="params must be a tuple of num_layers=2"):
        to_torch(missing)

    no_bias = dataclasses.replace(from_torch(make_module("gru")), bias=False)
    with pytest.raises(ValueError, match=r"rnn.bias is False but params\[0\]\[0\]\['input_bias'\] has non-zero"):
        to_torch_state_dict(no_bias)
    with pytest.raises(TypeError, match=r"rnn must be a recurrax\.interop\.TorchRNN"):
        to_torch_state_dict(recurrax.lstm(H))


def test_configuration_is_validated():
    params = from_torch(make_module("gru")).params
    with pytest.raises(ValueError, match="mode must be one of"):
        TorchRNN(mode="LSTMP", params=params, input_size=D, hidden_size=H)
    with pytest.raises(ValueError, match="proj_size is only supported for mode='LSTM'"):
        TorchRNN(mode="GRU", params=params, input_size=D, hidden_size=H, proj_size=2)
    with pytest.raises(ValueError, match="num_layers must be a positive int, got 0"):
        TorchRNN(mode="GRU", params=params, input_size=D, hidden_size=H, num_layers=0)
    assert is_lstm("lstm_proj") and not is_lstm("gru")


def test_a_subclass_with_its_own_forward_is_refused_unless_allowed():
    class Scaled(torch.nn.LSTM):
        def forward(self, x, hx=None):
            output, state = super().forward(x, hx)
            return output * 2, state

    class Named(torch.nn.GRU):  # no forward of its own: converted as is
        pass

    with pytest.raises(TypeError, match=r"its own forward.*allow_subclass=True"):
        from_torch(Scaled(D, H, batch_first=True))
    assert isinstance(from_torch(Scaled(D, H, batch_first=True), allow_subclass=True), TorchRNN)
    assert isinstance(from_torch(Named(D, H, batch_first=True)), TorchRNN)
