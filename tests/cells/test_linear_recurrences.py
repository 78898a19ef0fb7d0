"""minGRU, minLSTM and LRU: paper math and initialisation, parallel == sequential, gradients, dtypes, bad input."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import recurrax
from gradient_check import check_gradients
from recurrax.cells import LRUCell, MinGRUCell, MinLSTMCell, lru, min_gru, min_lstm

B, T, D, H = 3, 6, 3, 5
LENGTHS = np.array([6, 4, 1])
RESETS = np.zeros((B, T), bool)
RESETS[0, 3] = RESETS[1, 1] = True

CELLS = {
    "min_gru": lambda **kw: min_gru(H, **kw),
    "min_gru_log": lambda **kw: min_gru(H, log_space=True, **kw),
    "min_lstm": lambda **kw: min_lstm(H, **kw),
    "min_lstm_log": lambda **kw: min_lstm(H, log_space=True, **kw),
    "lru": lambda **kw: lru(H, out_features=D, r_min=0.4, r_max=0.95, **kw),
}


def _init(cell, key=0, in_features=D):
    """``cell.init`` under one jit: eagerly, every initialiser would compile on its own."""
    return jax.jit(functools.partial(cell.init, in_features=in_features))(jax.random.key(key))


def _params(cell, key=0):
    """Initial params plus noise, so that zero biases cannot hide a missing term."""
    rng = np.random.default_rng(key)
    return jax.tree.map(lambda p: p + rng.uniform(-0.3, 0.3, p.shape).astype(p.dtype), _init(cell, key))


def _carry(cell, seed=3):
    zero = cell.initial_carry((B,))
    values = np.random.default_rng(seed).standard_normal((2, *zero.shape))
    if jnp.iscomplexobj(zero):
        return (values[0] + 1j * values[1]).astype(zero.dtype)
    return values[0].astype(zero.dtype)


def _xs(dtype=np.float32):
    return np.random.default_rng(7).standard_normal((B, T, D)).astype(dtype)


# ----------------------------------------------------------- paper references
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _g(x):
    return np.where(x >= 0, x + 0.5, _sigmoid(x))


def _min_gru_step(p, h, x, log_space):
    k = x @ p["input_kernel"] + p["bias"]
    z, pre = _sigmoid(k[..., :H]), k[..., H:]
    candidate = _g(pre) if log_space else pre
    h = (1 - z) * h + z * candidate
    return h, h


def _min_lstm_step(p, h, x, log_space):
    k = x @ p["input_kernel"] + p["bias"]
    f, i, pre = _sigmoid(k[..., :H]), _sigmoid(k[..., H : 2 * H]), k[..., 2 * H :]
    candidate = _g(pre) if log_space else pre
    h = f / (f + i) * h + i / (f + i) * candidate
    return h, h


def _lru_step(p, h, x):
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    b = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])
    h = lam * h + x @ b
    y = (h @ (p["C_re"] + 1j * p["C_im"])).real + p["D"] * x
    return h, y


REFERENCES = {
    "min_gru": lambda p, h, x: _min_gru_step(p, h, x, False),
    "min_gru_log": lambda p, h, x: _min_gru_step(p, h, x, True),
    "min_lstm": lambda p, h, x: _min_lstm_step(p, h, x, False),
    "min_lstm_log": lambda p, h, x: _min_lstm_step(p, h, x, True),
    "lru": _lru_step,
}


def _reference_scan(step, xs, h0, lengths, resets, reverse):
    """The scan engine's documented loop, one example at a time."""
    ys = np.zeros((*xs.shape[:2], step(h0[0], xs[0, 0])[1].shape[-1]), xs.dtype)
    finals = []
    for b in range(xs.shape[0]):
        h = h0[b]
        steps = range(lengths[b])
        for t in reversed(steps) if reverse else steps:
            # resets mark an episode's first step; backwards, an episode is entered at its last step.
            if (t + 1 < xs.shape[1] and resets[b, t + 1]) if reverse else resets[b, t]:
                h = h0[b]
            h, ys[b, t] = step(h, xs[b, t])
        finals.append(h)
    return ys, np.stack(finals)


@pytest.mark.parametrize("name", list(CELLS))
def test_both_methods_match_the_papers_equations(name, x64):
    cell = CELLS[name](param_dtype=jnp.float64)
    params = _params(cell)
    xs, h0 = _xs(np.float64), _carry(cell)
    np_params = jax.tree.map(np.asarray, params)
    # Each method in one direction here; the float32 test below shows the methods agree in both.
    cases = [("sequential", False), ("parallel", True)]
    run = jax.jit(
        lambda params, xs, h0: [
            recurrax.scan(cell, params, xs, initial_carry=h0, lengths=LENGTHS, resets=RESETS, reverse=r, method=m)
            for m, r in cases
        ]
    )
    for (_, reverse), (ys, final) in zip(cases, run(params, xs, h0), strict=True):
        ref_ys, ref_final = _reference_scan(
            lambda h, x: REFERENCES[name](np_params, h, x),
            np.asarray(xs),
            np.asarray(h0),
            LENGTHS,
            RESETS,
            reverse,
        )
        np.testing.assert_allclose(ys, ref_ys, atol=1e-12, rtol=1e-12)
        np.testing.assert_allclose(final, ref_final, atol=1e-12, rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["min_gru_log", "min_lstm", "lru"])  # the log-space, linear and complex scans
def test_parallel_equals_sequential_outputs_and_gradients_float32(name):
    """The issue's bar: ≤ 1e-5 in float32, with lengths, resets, a non-zero initial carry, both directions.

    Gradients are compared on the reverse pass (the within-length reversal is
    the harder path); forward-pass gradients are checked against finite
    differences below.
    """
    cell = CELLS[name]()
    params, xs, h0 = _params(cell), _xs(), _carry(cell)

    def run(params, xs, h0, method, reverse):
        return recurrax.scan(
            cell, params, xs, initial_carry=h0, lengths=LENGTHS, resets=RESETS, reverse=reverse, method=method
        )

    def loss(params, xs, h0, method):
        ys, final = run(params, xs, h0, method, True)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.abs(final) ** 2), (ys, final)

    @jax.jit
    def both_methods(params, xs, h0):
        grad = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)
        forward = [run(params, xs, h0, m, False) for m in ("sequential", "parallel")]
        return forward, [grad(params, xs, h0, m) for m in ("sequential", "parallel")]

    forward, backward = both_methods(params, xs, h0)
    (ys_fs, h_fs), (ys_fp, h_fp) = forward
    (g_s, (ys_rs, h_rs)), (g_p, (ys_rp, h_rp)) = backward
    for got, want in [(ys_fp, ys_fs), (h_fp, h_fs), (ys_rp, ys_rs), (h_rp, h_rs)]:
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert not np.any(np.asarray(ys_fp)[2, 1:]) and not np.any(np.asarray(ys_rp)[2, 1:]), "padding outputs must be 0"
    for a, b in zip(jax.tree.leaves(g_p), jax.tree.leaves(g_s), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["min_gru_log", "lru"])  # the log-space and complex scans
def test_parallel_gradients_match_finite_differences(name, x64):
    cell = CELLS[name](param_dtype=jnp.float64)
    params, xs, h0 = _params(cell), _xs(np.float64)[:2, :4], _carry(cell)[:2]

    def loss(params, xs):
        ys, h = recurrax.scan(cell, params, xs, initial_carry=h0, lengths=np.array([4, 2]), method="parallel")
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.abs(h) ** 2)

    check_gradients(jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), (params, xs), atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_log_space_scan_is_stable_on_long_sequences_with_saturated_gates():
    """Gates near 0 and 1: products of forget gates underflow float32, the log-space scan does not mind."""
    cell = min_lstm(H, log_space=True)
    params = jax.tree.map(lambda p: 16.0 * p, _init(cell))
    xs = np.random.default_rng(1).standard_normal((2, 16, D)).astype(np.float32)
    log_forget, _ = cell.log_recurrence_coefficients(params, xs)
    assert np.min(np.sum(log_forget, axis=1)) < np.log(np.finfo(np.float32).tiny)

    @jax.jit
    def run(params):
        def loss(p):
            ys, _ = recurrax.scan(cell, p, xs, method="parallel")
            return jnp.sum(ys), ys

        ys_s, _ = recurrax.scan(cell, params, xs, method="sequential")
        grads, ys_p = jax.grad(loss, has_aux=True)(params)
        return ys_s, ys_p, grads

    ys_s, ys_p, grads = run(params)
    assert np.all(np.isfinite(ys_p))
    np.testing.assert_allclose(ys_p, ys_s, atol=1e-5, rtol=1e-5)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_min_lstm_gates_are_normalised():
    """f' + i' = 1 exactly in the paper's sense: a constant candidate c keeps h = c from h0 = c."""
    cell = min_lstm(H)
    params = _params(cell)
    params["input_kernel"] = params["input_kernel"].at[:, 2 * H :].set(0.0)
    params["bias"] = params["bias"].at[2 * H :].set(1.5)
    ys, _ = recurrax.scan(cell, params, _xs(), initial_carry=jnp.full((B, H), 1.5))
    np.testing.assert_allclose(ys, 1.5, rtol=1e-6)


def test_lru_initialisation_follows_the_paper():
    """Appendix A's init_lru_parameters: |λ|² ~ U(r_min², r_max²), phase ~ U(0, max_phase), γ = √(1-|λ|²).

    Its defaults (the unit disk, phases in [0, 2π]) and B ~ N(0, 1/2D), C ~ N(0, 1/N), D ~ N(0, 1) on a
    wide cell; a given ring on a small one. One program makes both (an init compiles in ~0.5 CPU-s).
    """
    N, O = 512, 16
    cell, default = lru(64, r_min=0.5, r_max=0.9, max_phase=math.pi / 4, out_features=8), lru(N, out_features=O)

    def inits(key):
        params = cell.init(key, 8)
        return params, cell.eigenvalues(params), default.init(key, O)

    params, eigenvalues, wide = jax.tree.map(np.asarray, jax.jit(inits)(jax.random.key(0)))
    modulus = np.abs(eigenvalues)
    phase = np.exp(params["theta_log"])
    assert modulus.min() >= 0.5 - 1e-6 and modulus.max() <= 0.9 + 1e-6
    assert phase.min() >= 0 and phase.max() <= math.pi / 4 + 1e-6
    np.testing.assert_allclose(np.exp(params["gamma_log"]), np.sqrt(1 - modulus**2), rtol=1e-5)
    assert cell.initial_carry((2,)).dtype == jnp.complex64
    # bf16 compute keeps the recurrence in complex64 (a float32 state), like every cell's float32 state.
    assert lru(4, dtype=jnp.bfloat16).initial_carry(()).dtype == jnp.complex64
    shapes = {k: v.shape for k, v in params.items()}
    assert shapes == {
        "nu_log": (64,),
        "theta_log": (64,),
        "gamma_log": (64,),
        "B_re": (8, 64),
        "B_im": (8, 64),
        "C_re": (64, 8),
        "C_im": (64, 8),
        "D": (8,),
    }

    modulus, phase = np.exp(-np.exp(wide["nu_log"])), np.exp(wide["theta_log"])
    assert modulus.max() <= 1 and phase.min() >= 0 and phase.max() <= 2 * math.pi + 1e-5
    # uniform in area: E|λ|² = 1/2 (variance 1/12; over 512 draws 4 standard errors is 0.05)
    assert abs(np.mean(modulus**2) - 0.5) < 0.05 and abs(np.mean(phase) - math.pi) < 0.35
    np.testing.assert_allclose(np.exp(wide["gamma_log"]), np.sqrt(1 - modulus**2), rtol=1e-4, atol=1e-6)
    for name, std in [("B_re", 1 / math.sqrt(2 * O)), ("B_im", 1 / math.sqrt(2 * O)), ("C_re", 1 / math.sqrt(N))]:
        assert abs(np.std(wide[name]) / std - 1) < 0.05, name
    assert abs(np.std(wide["D"]) - 1) < 0.5


MIN_RNNS = {"min_gru": min_gru, "min_lstm": min_lstm}
INIT_D, INIT_H, CHRONO_T = 16, 256, 100.0


@functools.cache
def _min_rnn_inits():
    """Per minGRU and minLSTM: default params, chrono params and the chrono keep coefficient at x = 0.

    One program for all of them: each init compiled on its own costs ~0.3 CPU-s.
    """

    def inits(key):
        out = {}
        for name, make in MIN_RNNS.items():
            default, chrono = make(INIT_H), make(INIT_H, chrono_max_timescale=CHRONO_T)
            chrono_params = chrono.init(key, INIT_D)
            keep, _ = chrono.recurrence_coefficients(chrono_params, jnp.zeros((INIT_D,)))
            out[name] = (default.init(key, INIT_D), chrono_params, keep)
        return out

    return jax.tree.map(np.asarray, jax.jit(inits)(jax.random.key(0)))


@pytest.mark.parametrize("name", list(MIN_RNNS))
def test_min_rnn_default_initialisation_is_the_papers_nn_linear(name):
    """The paper's reference code: nn.Linear(D, H) per gate, weights and biases U(±1/√D)."""
    params, _, _ = _min_rnn_inits()[name]
    bound = 1 / math.sqrt(INIT_D)
    for key in ("input_kernel", "bias"):
        values = params[key]
        assert np.abs(values).max() <= bound
        # uniform, not a narrower law: the std of U(±b) is b/√3 and the draws reach the bounds
        assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 0.1 and np.abs(values).max() > 0.95 * bound, key


@pytest.mark.parametrize("name", list(MIN_RNNS))
def test_chrono_initialisation_spreads_the_memory_up_to_the_max_timescale(name):
    """At x = 0 the keep coefficient a = u/(1+u), u ~ U(1, T-1): a memory 1/(1-a) = 1+u steps in [2, T]."""
    H, t_max = INIT_H, CHRONO_T
    _, params, keep = _min_rnn_inits()[name]
    timescale = 1 / (1 - keep.astype(np.float64))
    assert timescale.min() >= 2 - 1e-3 and timescale.max() <= t_max * (1 + 1e-3)
    assert timescale.min() < 0.1 * t_max and timescale.max() > 0.9 * t_max
    bias = params["bias"]
    if name == "min_gru":  # b_z = -log u in [-log(T-1), 0]
        assert bias[:H].max() <= 0 and bias[:H].min() >= -math.log(t_max - 1) - 1e-6
    else:  # b_f = log u in [0, log(T-1)], b_i = -b_f
        assert bias[:H].min() >= 0 and bias[:H].max() <= math.log(t_max - 1) + 1e-6
        np.testing.assert_array_equal(bias[H : 2 * H], -bias[:H])
    assert np.abs(bias[-H:]).max() <= 1 / math.sqrt(INIT_D)  # the candidate's bias keeps its nn.Linear init
    with pytest.raises(ValueError, match="chrono_max_timescale must be > 2"):
        MIN_RNNS[name](H, chrono_max_timescale=2.0)


def test_params_from_linears_equal_the_papers_separate_layers(x64):
    """The fused [W_z | W_h] (minLSTM: [W_f | W_i | W_h]) runs the paper's sequential step with its linears."""
    rng = np.random.default_rng(0)
    xs, cases = _xs(np.float64), {}
    for name, make in MIN_RNNS.items():
        cell = make(H, param_dtype=jnp.float64)
        biased = [k != 1 for k in range(cell.num_blocks)]  # the second layer without bias
        layers = [(rng.standard_normal((H, D)), rng.standard_normal(H) if b else None) for b in biased]
        params = cell.params_from_linears(*layers, layout="torch")
        from_flax = cell.params_from_linears(*[(w.T, b) for w, b in layers], layout="flax")
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(from_flax), strict=True):
            np.testing.assert_array_equal(a, b)
        cases[name] = (cell, layers, params, _carry(cell))
    run = jax.jit(lambda ps, h0s: {n: recurrax.scan(c[0], ps[n], xs, initial_carry=h0s[n]) for n, c in cases.items()})
    outputs = run({n: c[2] for n, c in cases.items()}, {n: c[3] for n, c in cases.items()})

    for name, (_, layers, _, h0) in cases.items():

        def linear(k, x, layers=layers):
            w, b = layers[k]
            return x @ w.T + (0 if b is None else b)

        def step(h, x, gru=name == "min_gru", linear=linear):  # the paper's listings, sequential mode
            if gru:
                z = _sigmoid(linear(0, x))
                h = (1 - z) * h + z * linear(1, x)
            else:
                f, i = _sigmoid(linear(0, x)), _sigmoid(linear(1, x))
                h = f / (f + i) * h + i / (f + i) * linear(2, x)
            return h, h

        ref_ys, ref_final = _reference_scan(step, xs, np.asarray(h0), [T] * B, np.zeros((B, T), bool), False)
        np.testing.assert_allclose(outputs[name][0], ref_ys, atol=1e-12, rtol=1e-12)
        np.testing.assert_allclose(outputs[name][1], ref_final, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize(
    "layers, layout, match",
    [
        ([np.ones((H, D)), np.ones((H, D))], "pytorch", "layout must be one of"),
        ([np.ones((D, H)), np.ones((H, D))], "torch", r"z: the weight must be \[H, D\]"),
        ([np.ones((H, D)), np.ones((H, D + 1))], "torch", "h: .* same D for every block"),
        ([np.ones(H), np.ones((H, D))], "torch", "must be 2-D"),
        ([(np.ones((H, D)), np.ones(D)), np.ones((H, D))], "torch", r"z: the bias must have shape \(5,\)"),
    ],
)
def test_params_from_linears_rejects_the_wrong_shapes(layers, layout, match):
    with pytest.raises(ValueError, match=match):
        min_gru(H).params_from_linears(*layers, layout=layout)


def test_parameter_shapes_and_param_dtype():
    assert {
        k: v.shape
        for k, v in jax.eval_shape(functools.partial(min_gru(H).init, in_features=D), jax.random.key(0)).items()
    } == {
        "input_kernel": (D, 2 * H),
        "bias": (2 * H,),
    }
    cell = min_lstm(H, param_dtype=jnp.bfloat16)
    params = jax.eval_shape(functools.partial(cell.init, in_features=D), jax.random.key(0))
    assert {k: v.shape for k, v in params.items()} == {"input_kernel": (D, 3 * H), "bias": (3 * H,)}
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}


def test_hoisted_input_projection_is_the_same_cell():
    cell = min_gru(H)
    params, xs = _params(cell), _xs()
    ys_hoisted, _ = recurrax.scan(cell, params, xs, hoist_input_projection=True)
    ys_plain, _ = recurrax.scan(cell, params, xs, hoist_input_projection=False)
    np.testing.assert_array_equal(ys_hoisted, ys_plain)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: lru(4, r_min=0.9, r_max=0.5), ValueError, "r_min < r_max"),
        (lambda: lru(4, r_max=1.5), ValueError, "r_max <= 1"),
        (lambda: lru(4, out_features=0), ValueError, "out_features"),
        (lambda: lru(4).init(jax.random.key(0), 3), ValueError, "skip=False"),
        (lambda: lru(4, dtype=jnp.bfloat16, carry_dtype=jnp.bfloat16), TypeError, "state dtype"),
        (lambda: min_gru(0), ValueError, "hidden_size"),
        (lambda: min_lstm(H).log_recurrence_coefficients({}, jnp.ones((2, D))), ValueError, "log_space=False"),
    ],
)
def test_bad_options_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_cells_are_linear_cells():
    for cls in (MinGRUCell, MinLSTMCell, LRUCell):
        assert issubclass(cls, recurrax.LinearCell)
