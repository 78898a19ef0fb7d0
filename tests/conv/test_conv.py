"""Conv1D, TemporalBlock, TCN and the receptive-field helper, against independent references."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from recurrax.conv import (
    TCN,
    Conv1D,
    TemporalBlock,
    conv1d,
    conv_output_length,
    padding_pair,
    receptive_field,
    weight_norm,
)
from recurrax.nn import TCN as NNXTCN
from recurrax.nn import Conv1D as NNXConv1D

B, T, D, F = 2, 7, 4, 6
LENGTHS = np.array([7, 4])


def _xs(dtype=np.float32, seed=0):
    """Test data from numpy: eager jax.random would compile once per shape."""
    return np.random.default_rng(seed).standard_normal((B, T, D)).astype(dtype)


def _init(block, in_features=D, scale=0.5):
    """Random parameters of ``block.init``'s shapes, from numpy: nothing compiles."""
    shapes = jax.eval_shape(functools.partial(block.init, in_features=in_features), jax.random.key(0))
    rng = np.random.default_rng(3)
    return jax.tree.map(lambda s: (scale * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


def _reference_conv(xs, kernel, bias, dilation, padding, groups, stride=1):
    """Cross-correlation written as loops over groups, taps and time (numpy, float64)."""
    K, d_group, F_ = kernel.shape
    total = (K - 1) * dilation
    if isinstance(padding, str):
        left = {"causal": total, "same": total // 2, "valid": 0}[padding]
        right = {"causal": 0, "same": total - total // 2, "valid": 0}[padding]
    else:
        left, right = (padding, padding) if isinstance(padding, int) else padding
    padded = np.pad(xs, ((0, 0), (left, right), (0, 0)))
    starts = range(0, padded.shape[1] - total, stride)
    ys = np.zeros((xs.shape[0], len(starts), F_))
    f_group = F_ // groups
    for g in range(groups):
        x_g = padded[..., g * d_group : (g + 1) * d_group]
        w_g = kernel[..., g * f_group : (g + 1) * f_group]
        for j, start in enumerate(starts):
            for k in range(K):
                ys[:, j, g * f_group : (g + 1) * f_group] += x_g[:, start + k * dilation] @ w_g[k]
    return ys + bias


def _random_conv_params(conv, dtype=np.float64):
    params = jax.tree.map(np.asarray, _init(conv))
    params["bias"] = np.random.default_rng(2).standard_normal(F)  # zero biases hide a missing bias
    return jax.tree.map(lambda p: p.astype(dtype), params)


# (kernel_size, stride, dilation, padding, groups): every padding form, strides that do and do not divide T.
CONV_CONFIGS = [
    (3, 1, 2, "causal", 1),
    (4, 1, 1, "same", 2),
    (2, 1, 3, "same", 1),
    (3, 1, 1, "valid", 2),
    (3, 2, 1, 1, 1),
    (4, 3, 2, (3, 1), 2),
    (5, 2, 1, "same", 1),
    (2, 2, 2, "causal", 1),
]


@pytest.mark.parametrize("kernel_size, stride, dilation, padding, groups", CONV_CONFIGS)
def test_conv1d_matches_loop_reference(kernel_size, stride, dilation, padding, groups, x64):
    conv = Conv1D(features=F, kernel_size=kernel_size, stride=stride, dilation=dilation, padding=padding, groups=groups)
    params = _random_conv_params(conv)
    xs = _xs(np.float64)
    ys = conv.apply(params, xs)
    ref = _reference_conv(xs, params["kernel"], params["bias"], dilation, padding, groups, stride)
    assert ys.shape == ref.shape == (B, conv.output_length(T), F)
    np.testing.assert_allclose(ys, ref, atol=1e-12, rtol=1e-12)


def _torch_conv(torch, params, kernel_size, stride, dilation, padding, groups):
    """``torch.nn.Conv1d`` with our weights; explicit (left, right) zeros, as torch takes one int or 'same' only."""
    left, right = padding_pair(padding, kernel_size, dilation)
    conv = torch.nn.Conv1d(D, F, kernel_size, stride=stride, dilation=dilation, groups=groups).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(np.asarray(params["kernel"])).permute(2, 1, 0))
        conv.bias.copy_(torch.tensor(np.asarray(params["bias"])))

    def apply(xs):  # [B, T, D] -> [B, T', F]
        return conv(torch.nn.functional.pad(xs.transpose(1, 2), (left, right))).transpose(1, 2)

    return conv, apply


@pytest.mark.parametrize("kernel_size, stride, dilation, padding, groups", CONV_CONFIGS[4:])
def test_strided_conv_values_gradients_and_lengths_match_torch(kernel_size, stride, dilation, padding, groups, x64):
    """Outputs and gradients (kernel, bias, inputs) equal torch's; with lengths each example equals torch
    on its own steps alone, and ``output_length`` is the length of torch's output."""
    torch = pytest.importorskip("torch")
    conv = Conv1D(features=F, kernel_size=kernel_size, stride=stride, dilation=dilation, padding=padding, groups=groups)
    params = _random_conv_params(conv)
    xs = _xs(np.float64)
    cotangent = np.random.default_rng(5).standard_normal((B, conv.output_length(T), F))

    def loss(params, xs):
        ys = conv.apply(params, xs, lengths=LENGTHS)
        return jnp.sum(ys * cotangent), ys

    (_, ys), (grads, grad_xs) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, xs)

    module, apply = _torch_conv(torch, params, kernel_size, stride, dilation, padding, groups)
    x_torch = torch.tensor(xs, requires_grad=True)
    want_loss = 0.0
    out_lengths = conv.output_length(jnp.asarray(LENGTHS)).tolist()
    for b, length in enumerate(LENGTHS):
        alone = apply(x_torch[b : b + 1, :length])  # torch never sees the padding
        assert (
            alone.shape[1]
            == out_lengths[b]
            == conv_output_length(int(length), kernel_size, stride=stride, padding=padding, dilation=dilation)
        )
        np.testing.assert_allclose(ys[b, : out_lengths[b]], alone[0].detach().numpy(), atol=1e-12)
        want_loss = want_loss + (alone[0] * torch.tensor(cotangent[b, : out_lengths[b]])).sum()
        assert not np.any(np.asarray(ys[b, out_lengths[b] :])), "outputs past the output length are zero"
    want_loss.backward()
    np.testing.assert_allclose(grads["kernel"], module.weight.grad.permute(2, 1, 0).numpy(), atol=1e-10)
    np.testing.assert_allclose(grads["bias"], module.bias.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(grad_xs, x_torch.grad.numpy(), atol=1e-10)


def test_strided_conv_gradients_match_finite_differences(x64):
    """Without torch too: reverse-mode gradients w.r.t. kernel, bias and inputs, with lengths."""
    conv = Conv1D(features=F, kernel_size=4, stride=3, dilation=2, padding=(3, 1), groups=2)
    params = _random_conv_params(conv)
    apply = jax.jit(lambda params, xs: conv.apply(params, xs, lengths=LENGTHS))
    check_grads(apply, (params, _xs(np.float64)), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_a_strided_conv_keeps_every_stride_th_output_of_the_unstrided_one():
    xs = _xs()
    for padding in ("causal", "same", 2):
        strided = Conv1D(features=F, kernel_size=3, stride=2, padding=padding)
        params = _init(strided)
        unstrided = Conv1D(features=F, kernel_size=3, padding=padding)
        np.testing.assert_allclose(strided.apply(params, xs), unstrided.apply(params, xs)[:, ::2], atol=1e-6)


def test_conv1d_lengths_equal_running_each_example_alone():
    """Padding never leaks into valid steps, even for a centred ('same') window; padded outputs are zero."""
    conv = Conv1D(features=F, kernel_size=3, padding="same")
    params = _init(conv)
    xs = _xs()
    ys = conv.apply(params, xs, lengths=LENGTHS)
    alone = conv.apply(params, xs[1:, :4])
    np.testing.assert_allclose(ys[1, :4], alone[0], atol=1e-6)
    assert not np.any(np.asarray(ys[1, 4:]))
    np.testing.assert_allclose(ys[0], conv.apply(params, xs[:1])[0], atol=1e-6)


def test_time_major_is_a_transpose():
    conv = Conv1D(features=F, kernel_size=3, dilation=2)
    params = _init(conv)
    xs = _xs()
    ys = conv.apply(params, xs, lengths=LENGTHS)
    ys_tm = conv.apply(params, jnp.swapaxes(xs, 0, 1), lengths=LENGTHS, time_major=True)
    np.testing.assert_array_equal(jnp.swapaxes(ys_tm, 0, 1), ys)


def test_weight_norm_is_per_output_channel_and_starts_at_the_plain_kernel():
    conv = Conv1D(features=F, kernel_size=3, weight_norm=True)
    params = jax.jit(functools.partial(conv.init, in_features=D))(jax.random.key(0))
    np.testing.assert_allclose(conv.kernel(params), params["kernel_v"], rtol=1e-6)
    g = jnp.arange(1.0, F + 1)
    w = weight_norm(params["kernel_v"], g)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(w).reshape(-1, F), axis=0), g, rtol=1e-6)


def _torch_temporal_block(torch, params, in_features, features, kernel_size, dilation, weight_norm_on):
    """Bai et al.'s TemporalBlock as in their repository (locuslab/TCN), float64, eval mode."""
    nn = torch.nn
    wn = nn.utils.parametrizations.weight_norm if weight_norm_on else (lambda m: m)
    pad = (kernel_size - 1) * dilation

    def conv(i, o, p):
        module = nn.Conv1d(i, o, kernel_size, padding=pad, dilation=dilation).double()
        return wn(module)

    class Chomp(nn.Module):
        def forward(self, x):
            return x[:, :, :-pad].contiguous()

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = conv(in_features, features, pad), conv(features, features, pad)
            self.net = nn.Sequential(self.conv1, Chomp(), nn.ReLU(), self.conv2, Chomp(), nn.ReLU())
            self.downsample = nn.Conv1d(in_features, features, 1).double() if in_features != features else None

        def forward(self, x):
            res = x if self.downsample is None else self.downsample(x)
            return torch.relu(self.net(x) + res)

    block = Block()

    def as_torch(a):  # [K, D, F] → PyTorch's [F, D, K]
        return torch.tensor(np.asarray(a)).permute(2, 1, 0).contiguous()

    with torch.no_grad():
        for name in ("conv1", "conv2"):
            module, p = getattr(block, name), params[name]
            if weight_norm_on:
                module.parametrizations.weight.original0.copy_(
                    torch.tensor(np.asarray(p["kernel_g"])).reshape(-1, 1, 1)
                )
                module.parametrizations.weight.original1.copy_(as_torch(p["kernel_v"]))
            else:
                module.weight.copy_(as_torch(p["kernel"]))
            module.bias.copy_(torch.tensor(np.asarray(p["bias"])))
        block.downsample.weight.copy_(as_torch(params["downsample"]["kernel"]))
        block.downsample.bias.copy_(torch.tensor(np.asarray(params["downsample"]["bias"])))
    return block


@pytest.mark.parametrize("weight_norm_on", [False, True], ids=["plain", "weight_norm"])
def test_temporal_block_matches_bai_et_al_pytorch_block(weight_norm_on, x64):
    torch = pytest.importorskip("torch")
    block = TemporalBlock(features=F, kernel_size=3, dilation=2, weight_norm=weight_norm_on, param_dtype=jnp.float64)
    # Random, non-trivial values everywhere (Bai's N(0, 0.01) init would make ReLU outputs tiny).
    rng = np.random.default_rng(1)
    shapes = jax.eval_shape(functools.partial(block.init, in_features=D), jax.random.key(0))
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape), shapes)
    xs = _xs(np.float64)
    reference = _torch_temporal_block(torch, params, D, F, 3, 2, weight_norm_on)
    with torch.no_grad():
        want = reference(torch.tensor(np.asarray(xs)).transpose(1, 2)).transpose(1, 2).numpy()
    np.testing.assert_allclose(block.apply(params, xs), want, atol=1e-10, rtol=1e-10)


def _tanh_tcn():
    return TCN(features=(5, 5, 5), kernel_size=3, activation="tanh", kernel_init=jax.nn.initializers.normal(0.5))


def test_receptive_field_agrees_with_the_impulse_response():
    """Output T-1 depends on exactly the last `receptive_field` inputs (nonzero Jacobian there, zero before)."""
    tcn = _tanh_tcn()
    assert tcn.receptive_field == receptive_field(3, [1, 1, 2, 2, 4, 4]) == 1 + 2 * 2 * (1 + 2 + 4) == 29
    steps = tcn.receptive_field + 3
    params = _init(tcn)
    xs = np.random.default_rng(1).standard_normal((1, steps, D)).astype(np.float32)
    jac = jax.jit(jax.jacrev(lambda x: tcn.apply(params, x)[0, -1]))(xs)  # [F, 1, steps, D]
    reaches = np.any(np.abs(np.asarray(jac)) > 0, axis=(0, 1, 3))
    assert reaches.tolist() == [False] * 3 + [True] * tcn.receptive_field

    conv = Conv1D(features=1, kernel_size=4, dilation=3)
    impulse = jnp.zeros((1, 20, 1)).at[0, 5, 0].set(1.0)
    kernel = jnp.ones((4, 1, 1))
    response = np.asarray(conv.apply({"kernel": kernel, "bias": jnp.zeros(1)}, impulse))[0, :, 0]
    # An impulse at t=5 reaches the outputs t = 5, 8, 11, 14: the last one is receptive_field - 1 later.
    assert np.flatnonzero(response).tolist() == [5, 8, 11, 14]
    assert conv.receptive_field == 14 - 5 + 1


def test_tcn_is_causal_and_respects_lengths():
    tcn = _tanh_tcn()
    params = _init(tcn)
    xs = _xs()
    apply = jax.jit(tcn.apply)
    ys = apply(params, xs, lengths=LENGTHS)
    future_changed = xs.copy()
    future_changed[:, 4:] += 10.0
    np.testing.assert_array_equal(apply(params, future_changed, lengths=LENGTHS)[0, :4], ys[0, :4])
    # Example 1 (length 4): whatever is in its padding, it equals running its 4 steps alone.
    np.testing.assert_array_equal(apply(params, future_changed, lengths=LENGTHS)[1], ys[1])
    np.testing.assert_allclose(ys[1, :4], apply(params, xs[1:, :4])[0], atol=1e-6)
    assert not np.any(np.asarray(ys[1, 4:]))


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_dropout_only_with_a_key_and_nnx_train_eval():
    tcn = TCN(features=F, num_levels=2, kernel_size=2, dropout_rate=0.5)
    params = _init(tcn)
    xs = _xs()
    apply = jax.jit(tcn.apply)
    plain = apply(params, xs)
    dropped = apply(params, xs, dropout_key=jax.random.key(3))
    assert not np.allclose(plain, dropped)
    np.testing.assert_array_equal(dropped, apply(params, xs, dropout_key=jax.random.key(3)))

    module = NNXTCN(D, F, num_levels=2, kernel_size=2, dropout_rate=0.5, rngs=nnx.Rngs(0, dropout=1))
    forward = nnx.jit(lambda m: m(xs))
    module.eval()
    np.testing.assert_allclose(forward(module), apply(module.pure_params(), xs), atol=1e-6)
    module.train()
    first, second = forward(module), forward(module)
    assert not np.allclose(first, second), "each training call draws a fresh dropout key"
    assert module.receptive_field == tcn.receptive_field


def test_nnx_conv_trains_under_nnx_jit():
    module = NNXConv1D(D, F, kernel_size=3, stride=2, dilation=2, padding=(3, 1), rngs=nnx.Rngs(0))
    xs = _xs()
    assert module.output_length(T) == 4 and module.output_length(jnp.asarray(LENGTHS)).tolist() == [4, 2]

    @nnx.jit
    def loss_and_grad(module):
        return nnx.value_and_grad(lambda m: jnp.sum(m(xs, lengths=LENGTHS) ** 2))(module)

    loss, grads = loss_and_grad(module)
    want = module.spec.apply(module.pure_params(), xs, lengths=LENGTHS)
    assert want.shape == (B, 4, F)
    np.testing.assert_allclose(loss, jnp.sum(want**2), rtol=1e-5)
    assert set(grads["params"]) == {"kernel", "bias"}
    assert grads["params"]["kernel"].shape == (3, D, F)


def test_bfloat16_compute_and_param_dtype():
    tcn32 = TCN(features=F, num_levels=2, kernel_size=3)
    tcn16 = TCN(features=F, num_levels=2, kernel_size=3, dtype=jnp.bfloat16)
    params = _init(tcn32, scale=0.3)
    ys16 = jax.jit(tcn16.apply)(params, _xs())
    assert ys16.dtype == jnp.bfloat16
    ys32 = jax.jit(tcn32.apply)(params, _xs())
    np.testing.assert_allclose(np.asarray(ys16, np.float32), ys32, atol=5e-2, rtol=5e-2)
    tcn16_storage = TCN(features=F, num_levels=2, param_dtype=jnp.bfloat16)
    stored = jax.eval_shape(functools.partial(tcn16_storage.init, in_features=D), jax.random.key(0))
    assert {p.dtype for p in jax.tree.leaves(stored)} == {jnp.dtype(jnp.bfloat16)}


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: Conv1D(features=4, kernel_size=0), ValueError, "kernel_size must be a positive int, got 0"),
        (lambda: Conv1D(features=4, kernel_size=3, dilation=-1), ValueError, "dilation must be a positive int"),
        (lambda: Conv1D(features=4, kernel_size=3, padding="full"), ValueError, "padding must be one of"),
        (lambda: Conv1D(features=4, kernel_size=3, groups=3), ValueError, "groups=3 must divide features=4"),
        (lambda: Conv1D(features=4, kernel_size=3, groups=2).init(jax.random.key(0), 3), ValueError, "in_features"),
        (lambda: conv1d(jnp.ones((2, 5, 3)), jnp.ones((3, 4, 2))), ValueError, "has 3 features"),
        (lambda: conv1d(jnp.ones((2, 5, 3)), jnp.ones((3, 3))), ValueError, "kernel must have shape"),
        (
            lambda: conv1d(jnp.ones((2, 2, 3)), jnp.ones((3, 3, 2)), padding="valid"),
            ValueError,
            r"T=2 steps, too few for kernel_size=3 .* >= \(kernel_size - 1\) \* dilation \+ 1 = 3",
        ),
        (lambda: Conv1D(features=4, kernel_size=3, stride=0), ValueError, "stride must be a positive int, got 0"),
        (lambda: conv1d(jnp.ones((2, 5, 3)), jnp.ones((3, 3, 2)), stride=1.5), ValueError, "stride must be a positive"),
        (lambda: Conv1D(features=4, kernel_size=3, padding=-1), ValueError, "padding must be .* got -1"),
        (lambda: Conv1D(features=4, kernel_size=3, padding=(1, -2)), ValueError, r"padding must be .* got \(1, -2\)"),
        (lambda: Conv1D(features=4, kernel_size=3, padding=(1,)), TypeError, r"padding must be .* got tuple \(1,\)"),
        (lambda: Conv1D(features=4, kernel_size=3, padding=True), TypeError, "padding must be .* got bool True"),
        (lambda: Conv1D(features=4, kernel_size=3, padding=1.5), TypeError, "padding must be .* got float 1.5"),
        (lambda: conv_output_length(5.0, 3), TypeError, "length must be an int or an integer array"),
        (lambda: conv1d(jnp.ones((2, 5, 3)), jnp.ones((3, 3, 2)), lengths=jnp.array([5, 6])), ValueError, "<="),
        (lambda: TCN(features=4), ValueError, "num_levels is required"),
        (lambda: TCN(features=(4, 4), dilations=(1,)), ValueError, "dilations has 1 entries"),
        (
            lambda: TCN(features=4, num_levels=2, dropout_rate=1.0),
            ValueError,
            r"dropout_rate must be a float in \[0, 1\)",
        ),
        (lambda: TemporalBlock(features=4, kernel_size=2, activation="swish"), ValueError, "activation must be one"),
        (lambda: receptive_field([2, 3], [1]), ValueError, "one entry per convolution"),
        (lambda: receptive_field(3, [1, 0]), ValueError, r"dilations\[1\] must be a positive int"),
    ],
)
def test_bad_input_gives_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()
