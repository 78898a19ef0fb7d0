"""``from_torch_state_dict`` and ``to_nnx`` on plain numpy state dicts: no torch needed, clear errors on bad input.

The parity with torch's own modules is in ``test_torch_state_dict.py``; this
file runs where torch is not installed too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recurrax.interop import TorchRNN, from_torch_state_dict, to_nnx

D, H, P = 3, 4, 2
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _state_dict(mode, *, num_layers=2, bidirectional=True, bias=True, proj=0, dtype=np.float32, seed=0):
    """A random state dict in torch's naming and key order (non-zero everywhere)."""
    rng = np.random.default_rng(seed)
    g, out = GATES[mode], proj or H
    state = {}
    for layer in range(num_layers):
        for suffix in ["", "_reverse"] if bidirectional else [""]:
            fan_in = D if layer == 0 else (2 if bidirectional else 1) * out
            shapes = {"weight_ih": (g * H, fan_in), "weight_hh": (g * H, out)}
            if bias:
                shapes.update(bias_ih=(g * H,), bias_hh=(g * H,))
            if proj:
                shapes["weight_hr"] = (proj, H)
            for role, shape in shapes.items():
                state[f"{role}_l{layer}{suffix}"] = rng.uniform(-0.5, 0.5, size=shape).astype(dtype)
    return state


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("lstm", {"proj": P}),
        ("GRU", {"bias": False}),
        ("rnn_relu", {"num_layers": 3, "bidirectional": False}),
    ],
)
def test_the_layout_is_read_off_the_keys_and_shapes(mode, options):
    state = _state_dict(mode.upper(), **options)
    rnn = from_torch_state_dict(state, mode=mode, batch_first=True, dropout=0.25)
    assert isinstance(rnn, TorchRNN) and rnn.mode == mode.upper()
    assert (rnn.input_size, rnn.hidden_size, rnn.proj_size) == (D, H, options.get("proj", 0))
    assert rnn.num_layers == options.get("num_layers", 2)
    assert rnn.bidirectional == options.get("bidirectional", True)
    assert rnn.bias == options.get("bias", True)
    assert rnn.batch_first and rnn.dropout == 0.25 and rnn.dtype == jnp.float32
    # Kernels are the transposes, bit for bit; the RNN/LSTM biases are summed.
    p = rnn.params[-1][-1]
    suffix = f"_l{rnn.num_layers - 1}" + ("_reverse" if rnn.bidirectional else "")
    np.testing.assert_array_equal(p["input_kernel"], state["weight_ih" + suffix].T)
    np.testing.assert_array_equal(p["recurrent_kernel"], state["weight_hh" + suffix].T)
    if rnn.bias and rnn.mode != "GRU":
        np.testing.assert_array_equal(p["bias"], state["bias_ih" + suffix] + state["bias_hh" + suffix])


def test_jax_arrays_and_an_explicit_dtype(x64):
    state = {k: jnp.asarray(v) for k, v in _state_dict("GRU", num_layers=1, bidirectional=False).items()}
    rnn = from_torch_state_dict(state, mode="GRU", dtype=jnp.float64)
    assert rnn.dtype == jnp.float64
    np.testing.assert_array_equal(rnn.params[0][0]["input_bias"], np.asarray(state["bias_ih_l0"], np.float64))


def test_to_nnx_from_a_numpy_state_dict_with_a_head_equals_the_torch_rnn_and_its_linear():
    """The NNX route computes what ``TorchRNN`` computes, followed by ``x @ weight.T + bias``."""
    state = _state_dict("GRU", num_layers=1, seed=1)
    rng = np.random.default_rng(2)
    head = {"weight": rng.normal(size=(5, 2 * H)).astype(np.float32), "bias": rng.normal(size=5).astype(np.float32)}
    model = to_nnx(state, mode="GRU", batch_first=True, head=head, rngs=nnx.Rngs(0))
    assert isinstance(model, nnx.Sequential)
    xs = jnp.asarray(rng.normal(size=(3, 5, D)), jnp.float32)
    lengths = jnp.array([5, 2, 4])
    got = nnx.jit(lambda m, xs, lengths: m(xs, lengths=lengths))(model, xs, lengths)
    output, _ = jax.jit(lambda r, xs, lengths: r(xs, lengths=lengths))(
        from_torch_state_dict(state, mode="GRU", batch_first=True), xs, lengths
    )
    np.testing.assert_allclose(got, output @ head["weight"].T + head["bias"], atol=1e-6)


# ---------------------------------------------------------------- bad input
def _without(state, key):
    return {k: v for k, v in state.items() if k != key}


GOOD = _state_dict("LSTM")


@pytest.mark.parametrize(
    ("state", "kwargs", "error", "match"),
    [
        (GOOD, {"mode": "LSTMP"}, ValueError, r"mode must be one of \('RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU'\)"),
        ([("weight_ih_l0", GOOD["weight_ih_l0"])], {}, TypeError, "state_dict must be a mapping .* got list"),
        ({**GOOD, 0: GOOD["bias_ih_l0"]}, {}, TypeError, r"state_dict keys must be str .* got \[0\]"),
        (
            _without(GOOD, "weight_hh_l1_reverse"),
            {},
            ValueError,
            r"missing \['weight_hh_l1_reverse'\], unexpected \[\]",
        ),
        ({**GOOD, "num_batches": np.zeros(())}, {}, ValueError, r"missing \[\], unexpected \['num_batches'\]"),
        (
            {f"rnn.{k}": v for k, v in GOOD.items()},
            {},
            ValueError,
            "strip the prefix from keys such as 'rnn.weight_ih_l0' first",
        ),
        # A projection only exists on an LSTM.
        (
            {**_state_dict("GRU"), "weight_hr_l0": np.zeros((2, H), np.float32)},
            {"mode": "gru"},
            ValueError,
            r"torch\.nn\.GRU .* unexpected \['weight_hr_l0'\]",
        ),
        (
            {**GOOD, "weight_hh_l1_reverse": GOOD["weight_hh_l1_reverse"][:, :3]},
            {},
            ValueError,
            r"state_dict\['weight_hh_l1_reverse'\] has shape \(16, 3\), expected \(16, 4\) for LSTM with "
            r"input_size=8, hidden_size=4 \(read off state_dict\['weight_ih_l0'\], shape \(16, 3\)\)",
        ),
        (
            {**GOOD, "weight_ih_l0": GOOD["weight_ih_l0"][:15]},
            {},
            ValueError,
            r"state_dict\['weight_ih_l0'\] has shape \(15, 3\), expected \[4·hidden_size, input_size\]",
        ),
        (
            _state_dict("LSTM", proj=H),
            {},
            ValueError,
            "invalid torch.nn.LSTM: proj_size must be smaller than hidden_size=4, got 4",
        ),
        (
            {**GOOD, "bias_hh_l0": GOOD["bias_hh_l0"].tolist()},
            {},
            TypeError,
            r"state_dict\['bias_hh_l0'\] must be an array \(numpy, JAX or a torch tensor\), got list",
        ),
        (
            {**GOOD, "bias_hh_l0": GOOD["bias_hh_l0"].astype(np.float16)},
            {},
            TypeError,
            r"state_dict\['bias_hh_l0'\] has dtype float16, but state_dict\['weight_ih_l0'\] has float32",
        ),
        (
            {k: v.astype(np.int32) for k, v in GOOD.items()},
            {},
            TypeError,
            r"state_dict\['weight_ih_l0'\] has dtype int32; expected float16, bfloat16, float32 or float64",
        ),
        (GOOD, {"batch_first": 1}, TypeError, "batch_first must be a bool, got 1"),
    ],
    ids=[
        "mode",
        "not-a-mapping",
        "key-type",
        "missing",
        "extra",
        "prefix",
        "gru-projection",
        "shape",
        "gates",
        "proj-size",
        "list",
        "mixed-dtypes",
        "int",
        "batch-first",
    ],
)
def test_bad_state_dicts_are_named(state, kwargs, error, match):
    with pytest.raises(error, match=match):
        from_torch_state_dict(state, **{"mode": "LSTM", **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "mode is required when source is a state dict"),
        ({"mode": "LSTM", "rngs": 0}, TypeError, "rngs must be an nnx.Rngs, got int"),
        ({"mode": "LSTM", "head": {"weight": np.zeros((2, 4), np.float32)}}, ValueError, r"\[out_features, 8\]"),
        (
            {"mode": "LSTM", "head": {"weight": np.zeros((2, 8), np.float32), "scale": np.ones(2)}},
            ValueError,
            r"unexpected \['scale'\]",
        ),
        (
            {"mode": "LSTM", "head": {"weight": np.zeros((2, 8), np.float32), "bias": np.ones(3, np.float32)}},
            ValueError,
            r"head\['bias'\] has shape \(3,\), expected \(2,\)",
        ),
        (
            {"mode": "LSTM", "head": {"weight": np.zeros((2, 8), np.float16)}},
            TypeError,
            "head has dtype float16, but the recurrent weights are float32",
        ),
        ({"mode": "LSTM", "head": "linear"}, TypeError, "head must be a torch.nn.Linear or its state dict, got str"),
    ],
    ids=["no-mode", "rngs", "head-width", "head-keys", "head-bias", "head-dtype", "head-type"],
)
def test_to_nnx_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        to_nnx(GOOD, **{"rngs": nnx.Rngs(0), **kwargs})


def test_to_nnx_takes_mode_only_with_a_state_dict_and_dtype_not_for_a_torch_rnn():
    rnn = from_torch_state_dict(GOOD, mode="LSTM")
    with pytest.raises(ValueError, match="mode is read off the TorchRNN; pass it only with a state dict"):
        to_nnx(rnn, mode="LSTM", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dtype cannot recast a TorchRNN"):
        to_nnx(rnn, dtype=jnp.float16, rngs=nnx.Rngs(0))
