"""RecurrentBlock / RecurrentStack: equal to the papers' blocks written out in numpy, parallel == sequential, padding.

The references below follow the block's documented math step by step, with
each cell's recurrence as a plain loop over time (no recurrax code inside).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from flax import nnx

import recurrax
from gradient_check import check_gradients

B, T, F = 3, 7, 4
LENGTHS = np.array([7, 5, 2])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _gelu(x):  # the erf form (PyTorch's default)
    return 0.5 * x * (1 + scipy.special.erf(x / np.sqrt(2)))


def _norm(p, x, kind):
    if kind == "rms":
        return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + 1e-5) * p["scale"]
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _dense(p, x):
    return x @ p["kernel"] + p["bias"]


def _min_gru_loop(p, xs, lengths):
    """minGRU over time, frozen (outputs zero) past each example's length."""
    H = p["bias"].shape[0] // 2
    ys = np.zeros((*xs.shape[:-1], H))
    for b in range(xs.shape[0]):
        h = np.zeros(H)
        for t in range(lengths[b]):
            k = xs[b, t] @ p["input_kernel"] + p["bias"]
            z = _sigmoid(k[:H])
            h = (1 - z) * h + z * k[H:]
            ys[b, t] = h
    return ys


def _lru_loop(p, xs, lengths):
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    b_in = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[None]
    ys = np.zeros((*xs.shape[:-1], p["C_re"].shape[1]))
    for b in range(xs.shape[0]):
        h = np.zeros(lam.shape, complex)
        for t in range(lengths[b]):
            h = lam * h + xs[b, t] @ b_in
            ys[b, t] = (h @ (p["C_re"] + 1j * p["C_im"])).real + p["D"] * xs[b, t]
    return ys


def _conv(p, x):
    K = p["kernel"].shape[0]
    padded = np.concatenate([np.zeros((*x.shape[:-2], K - 1, x.shape[-1])), x], axis=-2)
    return p["bias"] + sum(padded[..., j : j + x.shape[-2], :] * p["kernel"][j] for j in range(K))


def _reference_block(p, x, lengths, recurrence, *, norm="layer", mlp="mlp"):
    """The block's documented math, on clean inputs; outputs zeroed past ``lengths``."""
    h = _norm(p["norm"], x, norm)
    u = _conv(p["conv"], h) if "conv" in p else h
    r = recurrence(p["cell"], u, lengths)
    if "gate" in p:
        r = r * _gelu(_dense(p["gate"], h))
    if "out" in p:
        r = _dense(p["out"], r)
    if "glu" in p:
        value, gate = np.split(_dense(p["glu"], _gelu(r)), 2, axis=-1)
        r = value * _sigmoid(gate)
    x = x + r
    if mlp is not None:
        h = _norm(p["mlp_norm"], x, norm)
        hidden = _gelu(_dense(p["mlp"]["hidden"], h))
        if mlp == "glu":
            hidden = hidden * _dense(p["mlp"]["value"], h)
        x = x + _dense(p["mlp"]["out"], hidden)
    return x * (np.arange(x.shape[-2]) < lengths[:, None])[..., None]


def _random_params(block, features, seed=0):
    """Every parameter random (zero biases and unit scales would hide a missing term), float64."""
    shapes = jax.eval_shape(functools.partial(block.init, features=features), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.uniform(-0.6, 0.6, s.shape), shapes)


F64 = {"param_dtype": jnp.float64}

CASES = {
    # The minGRU paper's block: LayerNorm, the recurrence (2x wider), a 4x MLP.
    "min_gru": (lambda: recurrax.RecurrentBlock(cell=recurrax.min_gru(2 * F, **F64), **F64), _min_gru_loop, {}),
    # Every option on: RMSNorm, a causal conv, an output gate, a GLU MLP.
    "min_gru_all_options": (
        lambda: recurrax.RecurrentBlock(
            cell=recurrax.min_gru(2 * F, **F64), norm="rms", conv_kernel=3, gated=True, mlp="glu", mlp_ratio=2, **F64
        ),
        _min_gru_loop,
        {"norm": "rms", "mlp": "glu"},
    ),
    # The LRU paper's block: the LRU (own projections, skip), GELU, a GLU; no second branch.
    "lru": (
        lambda: recurrax.RecurrentBlock(cell=recurrax.lru(6, out_features=F, **F64), output_glu=True, mlp=None, **F64),
        _lru_loop,
        {"mlp": None},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_block_equals_its_math_written_out(case, x64):
    make, recurrence, options = CASES[case]
    block = make()
    params = _random_params(block, F)
    xs = np.random.default_rng(1).standard_normal((B, T, F))
    xs[1, LENGTHS[1] :] = np.nan  # padding is garbage and must reach nothing

    @jax.jit
    def run(params, xs):
        ys = block.apply(params, xs, lengths=LENGTHS)
        sequential = recurrax.RecurrentBlock(
            **{**block.block_options(), "scan_options": recurrax.ScanOptions(method="sequential")}
        )
        return ys, sequential.apply(params, xs, lengths=LENGTHS)

    ys, ys_sequential = run(params, xs)
    clean = np.where(np.isnan(xs), 0.0, xs)
    expected = _reference_block(params, clean, LENGTHS, recurrence, **options)
    np.testing.assert_allclose(ys, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ys_sequential, expected, rtol=1e-10, atol=1e-10)


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_stack_is_projection_blocks_and_final_norm_and_its_gradients_are_right(x64):
    stack = recurrax.RecurrentStack(cell=recurrax.min_gru(F, **F64), num_blocks=2, features=F, dropout_rate=0.1, **F64)
    shapes = jax.eval_shape(functools.partial(stack.init, in_features=2), jax.random.key(0))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.uniform(-0.6, 0.6, s.shape), shapes)
    xs = rng.standard_normal((B, T, 2))

    def loss(params, xs):
        ys = stack.apply(params, xs, lengths=LENGTHS)
        return jnp.sum(ys * jnp.cos(jnp.arange(ys.size).reshape(ys.shape))), ys

    # One compiled program gives the outputs, the loss and its gradients.
    loss_and_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, ys), _ = loss_and_grads(params, xs)
    h = _dense(params["input"], xs)
    for p in params["blocks"]:
        h = _reference_block(p, h, LENGTHS, _min_gru_loop)
    valid = (np.arange(T) < LENGTHS[:, None])[..., None]
    np.testing.assert_allclose(ys, _norm(params["final_norm"], h, "layer") * valid, rtol=1e-10, atol=1e-10)

    def without_outputs(params, xs):
        (value, _), grads = loss_and_grads(params, xs)
        return value, grads

    # LayerNorm of few features curves strongly: central differences need a small step to be accurate.
    check_gradients(without_outputs, (params, xs), atol=1e-6, rtol=1e-6, eps=1e-5)


def test_backbones_build_the_papers_blocks_and_depth_means_blocks_or_layers():
    def build(cell, **options):  # abstractly: the structure, without compiling any initialiser
        return nnx.eval_shape(lambda: recurrax.models.make_backbone(cell, 3, 8, rngs=nnx.Rngs(0), **options)[0])

    mingru = build("mingru", depth=3)
    assert isinstance(mingru, recurrax.nn.RecurrentStack) and mingru.out_features == 8
    assert len(mingru.params["blocks"]) == 3 and mingru.spec.mlp == "mlp" and mingru.spec.cell.hidden_size == 8
    lru = build("lru", depth=2, expansion=2)
    assert lru.out_features == 8 and lru.spec.output_glu and lru.spec.mlp is None
    assert lru.spec.cell.hidden_size == 16 and lru.spec.cell.output_size == 8
    lstm = build("lstm", depth=2)
    assert isinstance(lstm, recurrax.nn.StackedRNN) and len(lstm.layers) == 2
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        build("mingru", depth=0)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"mlp": "swiglu"}, ValueError, "mlp must be one of"),
        ({"conv_kernel": 0}, ValueError, "conv_kernel must be a positive int, got 0"),
        ({"dropout_rate": 1.0}, ValueError, r"dropout_rate must be a float in \[0, 1\)"),
        ({"norm": "batch"}, ValueError, "norm must be one of"),
        ({"scan_options": recurrax.ScanOptions(reverse=True)}, ValueError, "must not set time_major or reverse"),
        ({"cell": "min_gru"}, TypeError, "cell must be a recurrax Cell, got str"),
    ],
)
def test_bad_options_are_refused_by_name(options, error, match):
    with pytest.raises(error, match=match):
        recurrax.RecurrentBlock(**{"cell": recurrax.min_gru(4), **options})


def test_the_docs_quote_the_recorded_depth_benchmark():
    # docs/linear_recurrences.md quotes benchmarks/results/linear_blocks.json (python -m benchmarks.linear_blocks).
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    record = json.loads((root / "benchmarks" / "results" / "linear_blocks.json").read_text())
    page = " ".join((root / "docs" / "linear_recurrences.md").read_text().split())
    recall = {(r["depth"], r["seed"]): f"{r['recall_accuracy']:.3f}" for r in record["runs"]}
    quoted = f"depth 1 {recall[1, 0]} and {recall[1, 1]}, depth 3 {recall[3, 0]} and {recall[3, 1]}"
    assert quoted in page, quoted
    assert f"delay {record['config']['delay']}" in page and f"{record['config']['steps']} Adam steps" in page
