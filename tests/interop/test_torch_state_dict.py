"""The state-dict route against torch: what ``from_torch`` gives, exact round trips, a run without torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from interop.torch_cases import LENGTHS, TOLERANCE, make_module, max_abs_diff, random_inputs, run_torch, torch
from recurrax.interop import from_torch, from_torch_state_dict, to_torch_state_dict

KIND_IDS = ["rnn_relu", "lstm_proj", "gru"]  # every layout: one bias sum, a projection, two biases


def _bitwise_equal(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(np.asarray(a), np.asarray(b))


def _same(a, b) -> bool:
    """Same configuration and the same parameters, bit for bit."""
    same_params = jax.tree.all(jax.tree.map(_bitwise_equal, a.params, b.params))
    return same_params and dataclasses.replace(a, params=b.params) == b


@pytest.mark.parametrize("kind", KIND_IDS)
def test_state_dict_route_is_from_torch_and_round_trips_exactly(kind):
    module = make_module(kind, num_layers=2, bidirectional=True, batch_first=True, seed=20)
    module.dropout = 0.25
    rnn = from_torch(module)
    settings = {"mode": rnn.mode, "batch_first": True, "dropout": 0.25}

    # numpy arrays (as from np.load) and torch tensors give what from_torch gives.
    as_numpy = {k: v.numpy() for k, v in module.state_dict().items()}
    assert _same(from_torch_state_dict(as_numpy, **settings), rnn)
    assert _same(from_torch_state_dict(module.state_dict(), **{**settings, "mode": rnn.mode.lower()}), rnn)

    # recurrax → torch state dict → recurrax is the identity, also for params torch never saw.
    trained = jax.tree.map(lambda p: 1.25 * p + 0.125, rnn)
    assert _same(from_torch_state_dict(to_torch_state_dict(trained), **settings), trained)


def test_bfloat16_tensors_keep_their_dtype_and_bits():
    module = make_module("lstm_proj", num_layers=2, seed=21).to(torch.bfloat16)
    rnn = from_torch_state_dict(module.state_dict(), mode="LSTM")
    assert _same(rnn, from_torch(module))
    assert _same(from_torch_state_dict(to_torch_state_dict(rnn), mode="LSTM"), rnn)


# Runs in a fresh interpreter where `import torch` fails, as on a machine without it.
_WITHOUT_TORCH = textwrap.dedent(
    """
    import sys
    sys.modules["torch"] = None
    import jax
    import jax.numpy as jnp
    import numpy as np
    import recurrax

    try:
        import torch
    except ImportError:
        pass
    else:
        raise AssertionError("torch was importable")
    data = np.load(sys.argv[1])
    state = {k: data[k] for k in data.files if k.startswith(("weight", "bias"))}
    rnn = recurrax.interop.from_torch_state_dict(state, mode="lstm", batch_first=True)
    xs, lengths = jnp.asarray(data["xs"]), jnp.asarray(data["lengths"])
    output, (h_n, c_n) = jax.jit(lambda rnn, xs, lengths: rnn(xs, lengths=lengths))(rnn, xs, lengths)
    np.savez(sys.argv[2], output=output, h_n=h_n, c_n=c_n)
    """
)


def test_a_saved_npz_state_dict_loads_and_runs_without_torch(tmp_path):
    module = make_module("lstm_proj", num_layers=2, bidirectional=True, batch_first=True, seed=22)
    xs, _ = random_inputs("lstm_proj", num_states=4, batch_first=True, dtype="float32", seed=23)
    saved, results = tmp_path / "lstm.npz", tmp_path / "results.npz"
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    np.savez(saved, xs=xs, lengths=LENGTHS, **state)

    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, str(saved), str(results)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]

    expected_out, expected_state = run_torch(module, torch.from_numpy(xs), lengths=LENGTHS)
    got = np.load(results)
    assert max_abs_diff(got["output"], expected_out) <= TOLERANCE["float32"]
    assert max_abs_diff((got["h_n"], got["c_n"]), expected_state) <= TOLERANCE["float32"]
