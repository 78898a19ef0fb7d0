"""ConvLSTM (1D and 2D) against a PyTorch loop, against the LSTM at kernel size 1, and through the engine."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from gradient_check import check_gradients
from recurrax.cells import conv_lstm

B, T, C_IN, C_H = 2, 4, 2, 3
LENGTHS = np.array([4, 2])


def _normal(shape, seed, scale=1.0):
    """Test data from numpy: eager jax.random would compile once per shape."""
    return scale * np.random.default_rng(seed).standard_normal(shape)


def _random_params(cell, input_size):
    """Random values for every parameter (shapes from ``init``), so that no term hides behind a zero."""
    shapes = jax.eval_shape(functools.partial(cell.init, in_features=input_size), jax.random.key(0))
    return jax.tree.map(lambda s: _normal(s.shape, s.shape[-1], 0.5), shapes)


def _torch_conv_lstm(torch, params, frames, h, c, peephole):
    """Shi et al.'s equations with PyTorch's 'same' convolutions, channels-first, one step at a time."""
    n = frames.ndim - 3  # [B, T, *S, C]
    conv = torch.nn.functional.conv1d if n == 1 else torch.nn.functional.conv2d
    to_cf = lambda a: torch.tensor(np.asarray(a)).movedim(-1, 1)  # noqa: E731 — [B, *S, C] → [B, C, *S]
    w_x = torch.tensor(np.asarray(params["input_kernel"])).permute(n + 1, n, *range(n))
    w_h = torch.tensor(np.asarray(params["recurrent_kernel"])).permute(n + 1, n, *range(n))
    bias = torch.tensor(np.asarray(params["bias"])).reshape(-1, *([1] * n))
    peep = torch.tensor(np.asarray(params["peephole"])).movedim(-1, 1) if peephole else None
    h, c, outputs = to_cf(h), to_cf(c), []
    for t in range(frames.shape[1]):
        z = conv(to_cf(frames[:, t]), w_x, padding="same") + conv(h, w_h, padding="same") + bias
        zi, zf, zg, zo = z.chunk(4, dim=1)
        if peephole:
            zi, zf = zi + peep[0] * c, zf + peep[1] * c
        c = torch.sigmoid(zf) * c + torch.sigmoid(zi) * torch.tanh(zg)
        if peephole:
            zo = zo + peep[2] * c
        h = torch.sigmoid(zo) * torch.tanh(c)
        outputs.append(h.movedim(1, -1))
    return torch.stack(outputs, 1).numpy(), h.movedim(1, -1).numpy(), c.movedim(1, -1).numpy()


@pytest.mark.parametrize(
    "spatial_shape, kernel_size, peephole",
    [((5,), 3, True), ((4, 3), (3, 2), False)],
    ids=["1d_peephole", "2d_uneven_kernel"],
)
def test_matches_pytorch_reference(spatial_shape, kernel_size, peephole, x64):
    torch = pytest.importorskip("torch")
    cell = conv_lstm(C_H, spatial_shape, kernel_size=kernel_size, peephole=peephole, param_dtype=jnp.float64)
    frames = _normal((B, T, *spatial_shape, C_IN), 2)
    params = _random_params(cell, cell.flatten_inputs(frames).shape[-1])
    carry = jax.tree.map(lambda a: _normal(a.shape, 3), cell.initial_carry((B,)))
    ys, final = recurrax.scan(cell, params, cell.flatten_inputs(frames), initial_carry=carry)
    with warnings.catch_warnings():  # PyTorch notes that an even kernel makes it copy the padded input
        warnings.filterwarnings("ignore", message="Using padding='same' with even kernel", category=UserWarning)
        ref_ys, ref_h, ref_c = _torch_conv_lstm(torch, params, np.asarray(frames), carry.h, carry.c, peephole)
    np.testing.assert_allclose(cell.unflatten_outputs(ys), ref_ys, atol=1e-12, rtol=1e-12)
    np.testing.assert_allclose(final.h, ref_h, atol=1e-12, rtol=1e-12)
    np.testing.assert_allclose(final.c, ref_c, atol=1e-12, rtol=1e-12)


def test_kernel_size_one_is_an_lstm_at_every_position(x64):
    cell = conv_lstm(C_H, (3,), kernel_size=1, param_dtype=jnp.float64)
    frames = _normal((B, T, 3, C_IN), 2)
    params = _random_params(cell, 3 * C_IN)
    lstm = recurrax.lstm(C_H, param_dtype=jnp.float64)
    lstm_params = {
        "input_kernel": params["input_kernel"][0],
        "recurrent_kernel": params["recurrent_kernel"][0],
        "bias": params["bias"],
    }
    ys, final = recurrax.scan(cell, params, cell.flatten_inputs(frames), lengths=LENGTHS)
    # Positions become batch entries for the plain LSTM: [B, T, W, C] → [B, W, T, C].
    lstm_ys, lstm_final = recurrax.scan(
        lstm, lstm_params, jnp.swapaxes(frames, 1, 2), lengths=np.repeat(LENGTHS[:, None], 3, axis=1)
    )
    np.testing.assert_allclose(cell.unflatten_outputs(ys), jnp.swapaxes(lstm_ys, 1, 2), atol=1e-12)
    np.testing.assert_allclose(final.c, lstm_final.c, atol=1e-12)


def test_gradients_and_hoisting(x64):
    cell = conv_lstm(C_H, (3,), kernel_size=3, peephole=True, param_dtype=jnp.float64)
    params = _random_params(cell, 3 * C_IN)
    xs = _normal((B, 3, 3 * C_IN), 4)

    def loss(params, xs):
        ys, carry = recurrax.scan(cell, params, xs, lengths=np.array([3, 1]))
        return jnp.sum(jnp.sin(ys)) + jnp.sum(carry.c**2)

    check_gradients(jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (params, xs), atol=1e-6, rtol=1e-6)
    hoisted, _ = recurrax.scan(cell, params, xs, hoist_input_projection=True)
    stepwise, _ = recurrax.scan(cell, params, xs, hoist_input_projection=False)
    np.testing.assert_allclose(hoisted, stepwise, atol=1e-12)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="spatial_shape must be a tuple of 1 to 3 sizes"):
        conv_lstm(C_H, (2, 2, 2, 2))
    with pytest.raises(ValueError, match="one size per spatial dim"):
        conv_lstm(C_H, (4, 4), kernel_size=(3,))
    with pytest.raises(ValueError, match=r"kernel_size\[0\] must be a positive int"):
        conv_lstm(C_H, (4,), kernel_size=0)
    with pytest.raises(ValueError, match="not prod"):
        conv_lstm(C_H, (4, 4)).init(jax.random.key(0), 15)
    with pytest.raises(ValueError, match="must end with the spatial shape"):
        conv_lstm(C_H, (4, 4)).flatten_inputs(jnp.ones((2, 4, 5, 3)))
