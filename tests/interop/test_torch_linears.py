"""minGRU and minLSTM from the papers' PyTorch layers: ``from_torch_linear`` + ``params_from_linears``.

The reference is the paper's own sequential-mode listing (Feng et al., 2024),
written with ``torch.nn.Linear`` per gate, run in float32.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from interop.torch_cases import B, D, H, T, torch
from recurrax import scan
from recurrax.cells import min_gru, min_lstm
from recurrax.interop import from_torch_linear


class TorchMinGRU(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear_z = torch.nn.Linear(D, H)
        self.linear_h = torch.nn.Linear(D, H)

    def forward(self, x_t, h_prev):
        z_t = torch.sigmoid(self.linear_z(x_t))
        return (1 - z_t) * h_prev + z_t * self.linear_h(x_t)


class TorchMinLSTM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear_f = torch.nn.Linear(D, H)
        self.linear_i = torch.nn.Linear(D, H, bias=False)  # a layer without bias converts too
        self.linear_h = torch.nn.Linear(D, H)

    def forward(self, x_t, h_prev):
        f_t, i_t = torch.sigmoid(self.linear_f(x_t)), torch.sigmoid(self.linear_i(x_t))
        return f_t / (f_t + i_t) * h_prev + i_t / (f_t + i_t) * self.linear_h(x_t)


def test_params_from_torch_linears_run_the_papers_torch_step():
    torch.manual_seed(0)
    modules = {"min_gru": TorchMinGRU(), "min_lstm": TorchMinLSTM()}
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((B, T, D)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    expected = {}
    with torch.no_grad():
        for kind, module in modules.items():
            h, steps = torch.from_numpy(h0), []
            for t in range(T):
                h = module(torch.from_numpy(xs[:, t]), h)
                steps.append(h.numpy())
            expected[kind] = np.stack(steps, axis=1)
    gru, lstm = modules["min_gru"], modules["min_lstm"]
    cells = {"min_gru": min_gru(H), "min_lstm": min_lstm(H)}
    params = {
        "min_gru": cells["min_gru"].params_from_linears(
            z=from_torch_linear(gru.linear_z), h=from_torch_linear(gru.linear_h), layout="torch"
        ),
        "min_lstm": cells["min_lstm"].params_from_linears(
            *[from_torch_linear(m) for m in (lstm.linear_f, lstm.linear_i, lstm.linear_h)], layout="torch"
        ),
    }
    assert from_torch_linear(lstm.linear_i)[1] is None
    outputs = jax.jit(lambda ps: {k: scan(c, ps[k], xs, initial_carry=h0) for k, c in cells.items()})(params)
    for kind, (ys, final) in outputs.items():
        np.testing.assert_allclose(ys, expected[kind], atol=1e-6, rtol=0, err_msg=kind)
        np.testing.assert_allclose(final, expected[kind][:, -1], atol=1e-6, rtol=0, err_msg=kind)


def test_from_torch_linear_takes_only_a_linear():
    with pytest.raises(TypeError, match=r"expected a torch.nn.Linear, got GRU"):
        from_torch_linear(torch.nn.GRU(D, H))
