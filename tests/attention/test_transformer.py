"""Transformer blocks against PyTorch's layers, stacks decoded with KV caches, NNX modules, bad input."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recurrax.attention import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
)
from recurrax.nn import Transformer as NNXTransformer
from recurrax.nn import TransformerEncoder as NNXTransformerEncoder

B, T, S, D, N, M = 2, 5, 4, 8, 2, 16
LENGTHS = np.array([5, 3], np.int32)
MEMORY_LENGTHS = np.array([2, 4], np.int32)


def _normal(shape, seed, dtype=np.float32):
    """Test data from numpy: eager jax.random would compile once per shape."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _init(spec, **kwargs):
    """Random values of the right shapes (numpy; nothing compiles): zero biases and unit norms would hide bugs."""
    shapes = jax.eval_shape(functools.partial(spec.init, **kwargs), jax.random.key(0))
    rng = np.random.default_rng(1)

    def value(path, s):
        noise = rng.standard_normal(s.shape)
        is_scale = any(getattr(k, "key", None) == "scale" for k in path)
        return (1.0 + 0.2 * noise if is_scale else 0.3 * noise).astype(s.dtype)

    return jax.tree_util.tree_map_with_path(value, shapes)


def _as_state(tree):
    """Our parameter pytree in the shape of an ``nnx.State`` (lists become int-keyed dicts)."""
    if isinstance(tree, dict):
        return nnx.State({k: _as_state(v) for k, v in tree.items()})
    if isinstance(tree, list):
        return nnx.State({i: _as_state(v) for i, v in enumerate(tree)})
    return jnp.asarray(tree)


# ---------------------------------------------------------------- PyTorch maps
def _load_attention(torch, module, p):
    t = lambda a: torch.tensor(np.asarray(a, np.float64))  # noqa: E731
    in_proj = np.concatenate([p[n]["kernel"].reshape(D, -1).T for n in ("query", "key", "value")])
    module.in_proj_weight.copy_(t(in_proj))
    module.in_proj_bias.copy_(t(np.concatenate([p[n]["bias"].reshape(-1) for n in ("query", "key", "value")])))
    module.out_proj.weight.copy_(t(p["out"]["kernel"].reshape(-1, D).T))
    module.out_proj.bias.copy_(t(p["out"]["bias"]))


def _load_common(torch, layer, params, norms):
    t = lambda a: torch.tensor(np.asarray(a, np.float64))  # noqa: E731
    layer.linear1.weight.copy_(t(params["mlp"]["hidden"]["kernel"].T))
    layer.linear1.bias.copy_(t(params["mlp"]["hidden"]["bias"]))
    layer.linear2.weight.copy_(t(params["mlp"]["out"]["kernel"].T))
    layer.linear2.bias.copy_(t(params["mlp"]["out"]["bias"]))
    for name in norms:
        getattr(layer, name).weight.copy_(t(params[name]["scale"]))
        getattr(layer, name).bias.copy_(t(params[name]["bias"]))


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre_ln", "post_ln"])
def test_encoder_block_matches_torch_transformer_encoder_layer(norm_first, x64):
    torch = pytest.importorskip("torch")
    block = TransformerEncoderBlock(num_heads=N, mlp_features=M, norm_first=norm_first, param_dtype=jnp.float64)
    params = _init(block, features=D)
    xs = _normal((B, T, D), 2, np.float64)
    layer = torch.nn.TransformerEncoderLayer(
        D, N, M, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first, dtype=torch.float64
    ).eval()
    with torch.no_grad():
        _load_attention(torch, layer.self_attn, params["attention"])
        _load_common(torch, layer, params, ("norm1", "norm2"))
        padding = torch.tensor(np.arange(T)[None, :] >= LENGTHS[:, None])
        want = layer(torch.tensor(xs), src_key_padding_mask=padding).numpy()
    ys = block.apply(params, xs, lengths=LENGTHS)
    for b, length in enumerate(LENGTHS):
        np.testing.assert_allclose(ys[b, :length], want[b, :length], atol=1e-10, rtol=1e-10)
    assert not np.any(np.asarray(ys[1, 3:]))


def test_decoder_block_matches_torch_transformer_decoder_layer(x64):
    torch = pytest.importorskip("torch")
    block = TransformerDecoderBlock(num_heads=N, mlp_features=M, activation="relu", param_dtype=jnp.float64)
    params = _init(block, features=D)
    xs, memory = _normal((B, T, D), 3, np.float64), _normal((B, S, D), 4, np.float64)
    layer = torch.nn.TransformerDecoderLayer(
        D, N, M, dropout=0.0, activation="relu", batch_first=True, norm_first=True, dtype=torch.float64
    ).eval()
    with torch.no_grad():
        _load_attention(torch, layer.self_attn, params["self_attention"])
        _load_attention(torch, layer.multihead_attn, params["cross_attention"])
        _load_common(torch, layer, params, ("norm1", "norm2", "norm3"))
        want = layer(
            torch.tensor(xs),
            torch.tensor(memory),
            tgt_mask=torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1),  # True = may not attend
            tgt_key_padding_mask=torch.tensor(np.arange(T)[None, :] >= LENGTHS[:, None]),
            memory_key_padding_mask=torch.tensor(np.arange(S)[None, :] >= MEMORY_LENGTHS[:, None]),
        ).numpy()
    ys = block.apply(params, xs, memory, lengths=LENGTHS, memory_lengths=MEMORY_LENGTHS)
    for b, length in enumerate(LENGTHS):
        np.testing.assert_allclose(ys[b, :length], want[b, :length], atol=1e-10, rtol=1e-10)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_causal_encoder_stack_decodes_step_by_step_like_the_full_pass():
    encoder = TransformerEncoder(
        num_layers=2, num_heads=N, features=D, causal=True, positional="learned", max_length=T, num_kv_heads=1
    )
    params = _init(encoder, in_features=3)
    xs = _normal((B, T, 3), 5)
    apply, decode = jax.jit(encoder.apply), jax.jit(encoder.decode)
    full = apply(params, xs)
    caches = encoder.init_cache(params, (B,), max_length=T)
    prompt, caches = decode(params, xs[:, :2], caches)
    steps = [prompt]
    for t in range(2, T):
        y, caches = decode(params, xs[:, t : t + 1], caches)
        steps.append(y)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=2e-5)
    # Causal: the future never reaches the past.
    later = xs.copy()
    later[:, 3:] -= 5.0
    np.testing.assert_array_equal(apply(params, later)[:, :3], full[:, :3])


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_decoder_stack_decodes_step_by_step_like_the_full_pass():
    decoder = TransformerDecoder(num_layers=2, num_heads=N, features=D, positional="rope", norm_first=False)
    params = _init(decoder, in_features=D, memory_features=6)
    xs, memory = _normal((B, T, D), 6), _normal((B, S, 6), 7)
    full = jax.jit(decoder.apply)(params, xs, memory, memory_lengths=MEMORY_LENGTHS)
    caches = decoder.init_cache(params, (B,), max_length=T)
    step = jax.jit(functools.partial(decoder.decode, memory_lengths=MEMORY_LENGTHS))
    outputs = []
    for t in range(T):
        y, caches = step(params, xs[:, t : t + 1], memory, caches)
        outputs.append(y)
    np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), full, atol=2e-5)


def test_encoder_stack_lengths_time_major_and_weights():
    encoder = TransformerEncoder(num_layers=2, num_heads=N, features=D, mlp_features=M)
    params = _init(encoder, in_features=3)
    xs = _normal((B, T, 3), 8)
    apply = jax.jit(encoder.apply, static_argnames=("return_weights", "time_major"))
    ys, weights = apply(params, xs, lengths=LENGTHS, return_weights=True)
    # Whatever sits in the padding, the valid steps do not move (same compiled function).
    padded = xs.copy()
    padded[1, 3:] = 50.0
    np.testing.assert_array_equal(apply(params, padded, lengths=LENGTHS, return_weights=True)[0], ys)
    assert not np.any(np.asarray(ys[1, 3:]))
    assert [w.shape for w in weights] == [(B, N, T, T)] * 2
    ys_tm = apply(params, np.swapaxes(xs, 0, 1), lengths=LENGTHS, time_major=True)
    np.testing.assert_allclose(np.swapaxes(ys_tm, 0, 1), ys, atol=1e-6)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_nnx_encoder_is_its_pure_stack():
    """The module adds no math (its train/eval dropout switch is tested on the shared base in tests/conv)."""
    model = NNXTransformerEncoder(3, num_layers=1, num_heads=N, features=D, rngs=nnx.Rngs(0))
    xs = _normal((B, T, 3), 9)
    assert model.out_features == D
    assert set(model.pure_params()) == {"input", "blocks", "final_norm"}
    pure = jax.jit(functools.partial(model.spec.apply, lengths=LENGTHS))(model.pure_params(), xs)
    np.testing.assert_allclose(nnx.jit(lambda m: m(xs, lengths=LENGTHS))(model), pure, atol=1e-6)


def test_encoder_decoder_transformer():
    spec = Transformer(
        encoder=TransformerEncoder(num_layers=1, num_heads=N, features=D),
        decoder=TransformerDecoder(num_layers=1, num_heads=N, features=D),
    )
    params = _init(spec, src_features=3, tgt_features=5)
    src, tgt = _normal((B, S, 3), 10), _normal((B, T, 5), 11)
    apply = jax.jit(functools.partial(spec.apply, src_lengths=MEMORY_LENGTHS, tgt_lengths=LENGTHS))
    ys = apply(params, src, tgt)
    assert ys.shape == (B, T, D) and not np.any(np.asarray(ys[1, 3:]))
    later = tgt.copy()
    later[0, 2:] += 3.0  # example 0 has all 5 steps: its first two cannot see the change
    np.testing.assert_array_equal(apply(params, src, later)[0, :2], ys[0, :2])
    assert not np.allclose(apply(params, src, later)[0, 2:], ys[0, 2:])
    module = nnx.eval_shape(lambda: NNXTransformer(3, 5, num_layers=1, num_heads=N, features=D, rngs=nnx.Rngs(0)))
    nnx.update(module, _as_state({"encoder": {"params": params["encoder"]}, "decoder": {"params": params["decoder"]}}))
    np.testing.assert_allclose(
        nnx.jit(lambda m: m(src, tgt, src_lengths=MEMORY_LENGTHS, tgt_lengths=LENGTHS))(module), ys, atol=1e-6
    )


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: TransformerEncoder(num_layers=1, num_heads=2, positional="learned"), ValueError, "needs max_length"),
        (lambda: TransformerEncoder(num_layers=1, num_heads=2, positional="alibi"), ValueError, "positional must be"),
        (lambda: TransformerEncoder(num_layers=0, num_heads=2), ValueError, "num_layers must be a positive int"),
        (lambda: TransformerEncoderBlock(num_heads=2, activation="swish"), ValueError, "activation must be one of"),
        (
            lambda: TransformerEncoderBlock(num_heads=3).init(jax.random.key(0), 8),
            ValueError,
            "divisible by num_heads=3",
        ),
        (
            lambda: Transformer(
                encoder=TransformerEncoder(num_layers=1, num_heads=2, causal=True),
                decoder=TransformerDecoder(num_layers=1, num_heads=2),
            ),
            TypeError,
            "non-causal",
        ),
    ],
)
def test_bad_options_give_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_calls_give_clear_errors():
    encoder = TransformerEncoder(num_layers=1, num_heads=N, features=D, positional="learned", max_length=4)
    params = _init(encoder, in_features=3)
    with pytest.raises(ValueError, match="decode needs a causal stack"):
        encoder.decode(params, _normal((B, 1, 3), 12), encoder.init_cache(params, (B,), 4))
    with pytest.raises(ValueError, match="past the learned table's max_length=4"):
        encoder.apply(params, _normal((B, T, 3), 12))
    block = TransformerDecoderBlock(num_heads=N)
    block_params = _init(block, features=D, memory_features=6)
    with pytest.raises(ValueError, match="memory has 8 features"):
        block.apply(block_params, _normal((B, T, D), 13), _normal((B, S, D), 14))
