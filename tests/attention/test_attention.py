"""Attention: einsum and Flax references, masks that agree with lengths, causality, KV-cache decoding, RoPE."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gradient_check import check_gradients
from recurrax.attention import (
    KVCache,
    MultiHeadAttention,
    dot_product_attention,
    learned_positions,
    make_attention_mask,
    rope,
    sinusoidal_positions,
)
from recurrax.nn import MultiHeadAttention as NNXMultiHeadAttention

B, T, S, D, N, K, H = 2, 5, 4, 8, 4, 2, 2
LENGTHS = np.array([5, 3], np.int32)
KV_LENGTHS = np.array([2, 4], np.int32)


def _normal(shape, seed, dtype=np.float32):
    """Test data from numpy: eager jax.random would compile once per shape."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _init(spec, **kwargs):
    """Random values of the right shapes (numpy; nothing compiles), biases included: zeros would hide a bias."""
    shapes = jax.eval_shape(functools.partial(spec.init, **kwargs), jax.random.key(0))
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


# ------------------------------------------------------------------ references
def _reference_attention(q, k, v, visible, scale):
    """Plain numpy einsum attention; ``visible[B, N|1, T, S]``; rows that see nothing give 0."""
    groups = q.shape[-2] // k.shape[-2]
    k, v = np.repeat(k, groups, axis=-2), np.repeat(v, groups, axis=-2)
    logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
    logits = np.where(visible, logits, -np.inf)
    peak = np.max(logits, axis=-1, keepdims=True)
    weights = np.exp(logits - np.where(np.isfinite(peak), peak, 0.0))
    total = weights.sum(-1, keepdims=True)
    weights = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 0.0)
    return np.einsum("bnts,bsnh->btnh", weights, v), weights


def _visible(q_lengths, k_lengths, causal, t, s, mask=None):
    rows, cols = np.arange(t)[:, None], np.arange(s)[None, :]
    vis = np.ones((len(q_lengths), 1, t, s), bool)
    vis &= (rows < q_lengths[:, None, None, None]) & (cols < k_lengths[:, None, None, None])
    if causal:
        vis &= cols <= rows
    return vis if mask is None else vis & mask


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_dot_product_attention_matches_einsum_reference(causal, x64):
    q, k, v = _normal((B, T, N, H), 0, np.float64), _normal((B, T, K, H), 1, np.float64), _normal((B, T, K, H), 2)
    v = v.astype(np.float64)
    mask = np.random.default_rng(3).random((B, N, T, T)) > 0.2
    mask[1, 2, 1] = False  # one query row that sees nothing
    visible = _visible(LENGTHS, np.array([4, 3]), causal, T, T, mask)
    want, want_w = _reference_attention(q, k, v, visible, 1 / np.sqrt(H))
    kwargs = dict(mask=mask, causal=causal, query_lengths=LENGTHS, key_lengths=np.array([4, 3]))
    fast = dot_product_attention(q, k, v, **kwargs)
    out, weights = dot_product_attention(q, k, v, return_weights=True, **kwargs)
    np.testing.assert_allclose(fast, want, atol=1e-12)
    np.testing.assert_allclose(out, want, atol=1e-12)
    np.testing.assert_allclose(weights, want_w, atol=1e-12)
    assert not np.any(np.asarray(out)[1, 3:]), "padded queries output zeros"


def test_multi_head_attention_matches_flax_nnx_with_the_same_weights():
    """Self- and cross-attention with grouped heads, against flax.nnx.MultiHeadAttention on valid steps."""
    for cross in (False, True):
        spec = MultiHeadAttention(num_heads=N, num_kv_heads=K)
        params = _init(spec, in_features=D, kv_features=6 if cross else None)
        flax_mha = nnx.eval_shape(  # built abstractly, then loaded with our weights
            lambda cross=cross: nnx.MultiHeadAttention(
                num_heads=N, in_features=D, num_kv_heads=K, in_kv_features=6 if cross else None, decode=False,
                rngs=nnx.Rngs(0),
            )
        )  # fmt: skip
        nnx.update(flax_mha, nnx.State(jax.tree.map(jnp.asarray, params)))
        xq = _normal((B, T, D), 4)
        if cross:
            xkv = _normal((B, S, 6), 5)
            ours = jax.jit(spec.apply)(params, xq, xkv, lengths=LENGTHS, kv_lengths=KV_LENGTHS)
            mask = make_attention_mask(T, S, key_lengths=KV_LENGTHS)
            theirs = nnx.jit(lambda m: m(xq, xkv, mask=mask, deterministic=True))(flax_mha)  # noqa: B023
        else:
            ours = jax.jit(spec.apply, static_argnames="causal")(params, xq, lengths=LENGTHS, causal=True)
            mask = make_attention_mask(T, T, key_lengths=LENGTHS, causal=True)
            theirs = nnx.jit(lambda m: m(xq, mask=mask, deterministic=True))(flax_mha)  # noqa: B023
        for b, length in enumerate(LENGTHS):
            np.testing.assert_allclose(ours[b, :length], theirs[b, :length], atol=2e-6)
            assert not np.any(np.asarray(ours[b, length:]))


def test_causal_attention_hides_the_future_and_padding_agrees_with_lengths():
    spec = MultiHeadAttention(num_heads=N, num_kv_heads=K, rope=True)
    params = _init(spec, in_features=D)
    xs = _normal((B, T, D), 6)
    apply = jax.jit(functools.partial(spec.apply, lengths=LENGTHS), static_argnames="causal")
    ys = apply(params, xs, causal=True)
    later = xs.copy()
    later[:, 3:] += 100.0  # perturb the future of step 2
    np.testing.assert_array_equal(apply(params, later, causal=True)[:, :3], ys[:, :3])
    # Example 1 (length 3) equals running its first 3 steps alone; its padding never matters.
    alone = jax.jit(spec.apply, static_argnames="causal")(params, xs[1:, :3], causal=True)
    np.testing.assert_allclose(ys[1, :3], alone[0], atol=1e-6)
    padded = xs.copy()
    padded[1, 3:] = 7.0
    np.testing.assert_array_equal(apply(params, padded, causal=True), ys)
    assert not np.any(np.asarray(ys[1, 3:]))
    # Non-causal attention does see the future: the check above can fail.
    assert not np.allclose(apply(params, later, causal=False)[:, :3], apply(params, xs, causal=False)[:, :3])


def test_kv_cache_decoding_equals_the_full_causal_pass():
    spec = MultiHeadAttention(num_heads=N, num_kv_heads=K, rope=True)
    params = _init(spec, in_features=D)
    xs = _normal((B, T, D), 7)
    full = jax.jit(spec.apply, static_argnames="causal")(params, xs, causal=True)
    decode = jax.jit(spec.decode)
    cache = spec.init_cache(params, (B,), max_length=T + 1)
    steps = []
    for t in range(T):
        y, cache = decode(params, xs[:, t : t + 1], cache)
        steps.append(y)
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=2e-6)
    assert cache.length.tolist() == [T, T]

    # Ragged prompts in one chunk (lengths 3 and 2), then each example continues one step at a time.
    cache = spec.init_cache(params, (B,), max_length=T + 1)
    prompt_lengths = np.array([3, 2], np.int32)
    prompt, cache = decode(params, xs[:, :3], cache, lengths=prompt_lengths)
    np.testing.assert_allclose(prompt[0], full[0, :3], atol=2e-6)
    np.testing.assert_allclose(prompt[1, :2], full[1, :2], atol=2e-6)
    assert not np.any(np.asarray(prompt[1, 2:]))
    next_inputs = np.stack([xs[0, 3], xs[1, 2]])[:, None]
    y, cache = decode(params, next_inputs, cache)
    np.testing.assert_allclose(y[:, 0], np.stack([full[0, 3], full[1, 2]]), atol=2e-6)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_weights_for_plots_and_attention_dropout():
    spec = MultiHeadAttention(num_heads=N, dropout_rate=0.5)
    params = _init(spec, in_features=D)
    xs = _normal((B, T, D), 8)
    apply = jax.jit(functools.partial(spec.apply, lengths=LENGTHS), static_argnames="return_weights")
    ys, weights = apply(params, xs, return_weights=True)
    assert weights.shape == (B, N, T, T)
    np.testing.assert_allclose(np.asarray(weights)[1, :, :3].sum(-1), 1.0, rtol=1e-6)
    assert not np.any(np.asarray(weights)[1, :, :, 3:]), "padded keys get zero weight"
    np.testing.assert_allclose(ys, apply(params, xs), atol=1e-6)  # the fused path agrees
    dropped = apply(params, xs, dropout_key=jax.random.key(0))
    assert not np.allclose(dropped, ys)

    # The NNX module adds no math (its train/eval dropout switch is tested on the shared base in tests/conv).
    module = NNXMultiHeadAttention(D, N, dropout_rate=0.5, rngs=nnx.Rngs(0), deterministic=True)
    np.testing.assert_allclose(nnx.jit(lambda m: m(xs, lengths=LENGTHS))(module), apply(module.pure_params(), xs))


def test_gradients_match_finite_differences(x64):
    spec = MultiHeadAttention(num_heads=N, num_kv_heads=K, rope=True, param_dtype=jnp.float64)
    params = _init(spec, in_features=D)
    xs = _normal((B, T, D), 9, np.float64)

    def loss(params, xs):
        return jnp.sum(jnp.sin(spec.apply(params, xs, lengths=LENGTHS, causal=True)))

    check_gradients(jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (params, xs), atol=1e-6, rtol=1e-6)


def test_sinusoidal_and_learned_positions():
    pe = np.asarray(sinusoidal_positions(jnp.arange(6), 5))
    p, i = np.arange(6)[:, None], np.arange(3)[None, :]
    angles = p / 10_000.0 ** (2 * i / 5)
    np.testing.assert_allclose(pe[:, 0::2], np.sin(angles), atol=1e-6)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(angles[:, :2]), atol=1e-6)
    table = jnp.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(learned_positions(table, jnp.array([2, 0])), table[jnp.array([2, 0])])
    with pytest.raises(ValueError, match="past the learned table's max_length=4"):
        learned_positions(table, jnp.array([4]))


def test_rope_is_a_complex_rotation_and_attention_scores_depend_on_offsets_only():
    x = _normal((T, N, 6), 10)
    positions = np.arange(T)
    rotated = np.asarray(rope(x, positions))
    theta = 10_000.0 ** (-np.arange(3) * 2 / 6)
    as_complex = (x[..., :3] + 1j * x[..., 3:]) * np.exp(1j * positions[:, None, None] * theta)
    np.testing.assert_allclose(rotated, np.concatenate([as_complex.real, as_complex.imag], -1), atol=1e-5)
    q, k = _normal((1, 1, 6), 11), _normal((1, 1, 6), 12)
    score = lambda m, n: float(np.sum(np.asarray(rope(q, np.array([m]))) * np.asarray(rope(k, np.array([n])))))  # noqa: E731
    assert score(3, 1) == pytest.approx(score(7, 5), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


def test_bfloat16_compute_stays_close_to_float32():
    spec32, spec16 = MultiHeadAttention(num_heads=N), MultiHeadAttention(num_heads=N, dtype=jnp.bfloat16)
    params = _init(spec32, in_features=D)
    xs = _normal((B, T, D), 13)
    # Both dtypes in one compile (eagerly, every op would compile on its own).
    both = jax.jit(lambda params, xs: [s.apply(params, xs, lengths=LENGTHS, causal=True) for s in (spec16, spec32)])
    ys16, ys32 = both(params, xs)
    assert ys16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(ys16, np.float32), ys32, atol=0.1)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: MultiHeadAttention(num_heads=3).init(jax.random.key(0), 8),
            ValueError,
            "must be divisible by num_heads=3",
        ),
        (lambda: MultiHeadAttention(num_heads=4, num_kv_heads=3), ValueError, "multiple of num_kv_heads=3"),
        (lambda: MultiHeadAttention(num_heads=4, qkv_features=10), ValueError, "qkv_features=10 must be divisible"),
        (lambda: MultiHeadAttention(num_heads=2, head_dim=3, rope=True), ValueError, "even head_dim"),
        (lambda: MultiHeadAttention(num_heads=0), ValueError, "num_heads must be a positive int"),
        (lambda: MultiHeadAttention(num_heads=2, dropout_rate=-0.1), ValueError, "dropout_rate"),
        (
            lambda: dot_product_attention(jnp.ones((2, 5, 4, 2)), jnp.ones((2, 5, 3, 2)), jnp.ones((2, 5, 3, 2))),
            ValueError,
            r"query heads \(4\) must be a multiple of the key/value heads \(3\)",
        ),
        (
            lambda: dot_product_attention(
                jnp.ones((2, 5, 4, 2)), jnp.ones((2, 5, 2, 2)), jnp.ones((2, 5, 2, 2)), mask=jnp.ones((3, 5, 5), bool)
            ),
            ValueError,
            r"mask of shape \(3, 5, 5\) does not broadcast to \[\*B, heads, T, S\] = \(2, 4, 5, 5\)",
        ),
        (
            lambda: dot_product_attention(
                jnp.ones((2, 5, 4, 2)), jnp.ones((2, 5, 2, 2)), jnp.ones((2, 5, 2, 2)), mask=jnp.ones((5, 5))
            ),
            TypeError,
            "mask must be boolean",
        ),
        (
            lambda: dot_product_attention(
                jnp.ones((2, 5, 4, 2)), jnp.ones((2, 5, 2, 2)), jnp.ones((2, 5, 2, 2)), key_lengths=jnp.array([6, 1])
            ),
            ValueError,
            "lengths must be <= the sequence length T=5",
        ),
        (
            lambda: dot_product_attention(jnp.ones((2, 5, 4, 2)), jnp.ones((2, 5, 2, 3)), jnp.ones((2, 5, 2, 3))),
            ValueError,
            "same head_dim",
        ),
    ],
)
def test_bad_input_gives_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_calls_give_clear_errors():
    spec = MultiHeadAttention(num_heads=N, rope=True)
    params = _init(spec, in_features=D)
    xs = _normal((B, T, D), 14)
    with pytest.raises(ValueError, match="rope rotates self-attention only"):
        spec.apply(params, xs, xs)
    with pytest.raises(ValueError, match="inputs_q has 3 features"):
        spec.apply(params, xs[..., :3])
    with pytest.raises(ValueError, match="kv_lengths is for cross-attention"):
        spec.apply(params, xs, kv_lengths=LENGTHS)
    cache = spec.init_cache(params, (B,), max_length=2)
    with pytest.raises(ValueError, match="max_length=2 steps, but decoding needs 3"):
        spec.decode(params, xs[:, :3], cache)
    assert isinstance(cache, KVCache) and cache.key.shape == (B, 2, N, H)
