"""Mixed precision: one policy reaches every layer (dtypes checked on the traced programs, nothing compiled),
and float16 dynamic loss scaling skips an overflowed step, backs off, grows, composes with the optimizer
chain and survives a resume."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import recurrax
from jaxpr_walk import equations
from recurrax import nn, train
from recurrax.models import SequenceClassifier
from recurrax.train._objective import split_params
from recurrax.train._step import predict_batch, train_batch
from train.train_helpers import B, D, Regressor, leaves_equal, regression_data

F32, BF16, F16 = jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)


# ------------------------------------------------------------------ the policy
def _boundaries(closed):
    """The dtypes at the boundaries a policy governs: matmul operands, scan carries, gate nonlinearities."""
    dots, carries, gates = set(), set(), set()
    for eqn in equations(closed.jaxpr):
        name = eqn.primitive.name
        if name in ("dot_general", "conv_general_dilated"):
            dots.update(jnp.dtype(v.aval.dtype) for v in eqn.invars)
        elif name == "scan":
            if "num_carry" in eqn.params:
                start, count = eqn.params["num_consts"], eqn.params["num_carry"]
            else:  # jax 0.12 describes the operands as (consts, carry, xs) trees
                start, count = (len(part.vals) for part in eqn.params["ft_in"].unpack()[:2])
            avals = [v.aval for v in eqn.invars[start : start + count]]
            carries.update(jnp.dtype(a.dtype) for a in avals if jnp.issubdtype(a.dtype, jnp.floating))
        elif name in ("logistic", "tanh"):
            gates.update(jnp.dtype(v.aval.dtype) for v in eqn.invars)
    return dots, carries, gates


@pytest.mark.parametrize(("layer", "precision", "compute"), [(nn.LSTM, "bf16", BF16), (nn.GRU, "fp16", F16)])
def test_a_layer_keeps_the_policy_dtypes_forward_and_backward(layer, precision, compute):
    """float32 master weights and gradients, matmuls in the compute dtype, float32 carries in the forward
    and the backward scans (remat on), the layer's outputs in the compute dtype; the LSTM's gates in float32."""
    model = nn.apply_precision(layer(D, 8, rngs=nnx.Rngs(0), remat=True), precision)
    policy = recurrax.precision_policy(precision)
    assert model.cell.dtype == policy.compute_dtype and model.cell.carry_dtype == "float32"
    graphdef, params = nnx.split(model)
    xs = jnp.ones((B, 5, D))

    def loss(p):
        ys = nnx.merge(graphdef, p)(xs)
        return jnp.mean(jnp.square(policy.cast_to_output(ys))), ys

    closed = jax.make_jaxpr(jax.value_and_grad(loss, has_aux=True))(params)
    (value, ys), grads = jax.eval_shape(jax.value_and_grad(loss, has_aux=True), params)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {F32}
    assert {leaf.dtype for leaf in jax.tree.leaves(grads)} == {F32} and value.dtype == F32
    assert ys.dtype == compute
    dots, carries, gates = _boundaries(closed)
    assert dots == {compute} and carries == {F32}
    if layer is nn.LSTM:  # i, f, g, o and tanh(c) from float32 pre-activations (the GRU's reset gate stays low)
        assert gates == {F32}


def test_a_backbone_model_trains_under_the_policy_through_the_trainer():
    """A classifier over residual minGRU blocks (a cell inside a block spec) and a dense head: the policy
    reaches them all through the Trainer; the loss sees float32 predictions; applying it twice changes nothing."""
    model = SequenceClassifier(D, 3, cell="min_gru", hidden_size=8, dense_size=8, dropout=0.0, rngs=nnx.Rngs(0))
    trainer = train.Trainer(model, optax.adam(1e-2), loss="softmax_cross_entropy", precision="bf16")
    assert trainer.objective.output_dtype == "float32"
    graphdef = split_params(model)[0]
    nn.apply_precision(model, "bf16")
    assert split_params(model)[0] == graphdef
    batch = {"inputs": jnp.ones((B, 5, D)), "targets": jnp.zeros((B,), jnp.int32)}
    step = functools.partial(train_batch, trainer._config)
    closed = jax.make_jaxpr(step)(trainer.params, trainer.rest, trainer.opt_state, batch)
    params, _, _, metrics, _ = jax.eval_shape(step, trainer.params, trainer.rest, trainer.opt_state, batch)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {F32}
    assert metrics["loss"].dtype == F32
    dots, carries, _ = _boundaries(closed)
    assert dots == {BF16} and carries <= {F32}
    predictions = jax.eval_shape(
        lambda p, r, b: predict_batch(trainer._graphdef_eval, trainer.objective, p, r, b),
        trainer.params,
        trainer.rest,
        batch,
    )
    assert predictions.dtype == F32


def test_policies_by_name_and_bad_ones_by_argument():
    assert str(recurrax.precision_policy("fp16")) == "params=float32,compute=float16,carry=float32,output=float32"
    assert recurrax.precision_policy("compute=bf16") == recurrax.precision_policy("bf16")
    assert recurrax.Precision(compute_dtype=jnp.bfloat16).compute_dtype == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of float32, bf16, fp16 or a policy string"):
        recurrax.precision_policy("int4")
    with pytest.raises(ValueError, match="unknown entry 'state'"):
        recurrax.precision_policy("state=float32")
    with pytest.raises(TypeError, match="compute_dtype must be one of float32, bfloat16, float16, float64"):
        recurrax.Precision(compute_dtype="int8")
    with pytest.raises(TypeError, match=r"model must be a flax\.nnx\.Module"):
        nn.apply_precision(recurrax.lstm(4), "bf16")
    with pytest.raises(ValueError, match="growth_interval must be a positive int, got 0"):
        train.dynamic_loss_scale(optax.sgd(0.1), growth_interval=0)


def test_a_policy_leaves_fp8_codes_alone():
    # quantize(..., Quantization("fp8")) stores float8 codes; a policy's float32 masters must not widen them.
    tree = {"codes": jnp.ones((2, 3), jnp.float8_e4m3fn), "bias": jnp.ones(3, jnp.bfloat16)}
    cast = recurrax.precision_policy("bf16").cast_to_param(tree)
    assert cast["codes"].dtype == jnp.float8_e4m3fn and cast["bias"].dtype == jnp.float32


# --------------------------------------------------------------- loss scaling
def test_dynamic_loss_scale_skips_backs_off_grows_and_gives_up_at_its_floor():
    inner = optax.sgd(0.1, momentum=0.9)
    tx = train.dynamic_loss_scale(inner, initial_scale=4.0, growth_interval=2, min_scale=2.0)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    update = jax.jit(tx.update)  # one compile instead of an eager dispatch per operation
    bad = {"w": jnp.array([1.0, jnp.nan, 1.0])}
    updates, after = update(bad, state, params)
    assert float(jnp.max(jnp.abs(updates["w"]))) == 0.0 and leaves_equal(after.inner_state, state.inner_state)
    assert (float(after.loss_scale), int(after.loss_scale_skipped)) == (2.0, 1)
    good = {"w": jnp.ones(3)}
    for expected in (2.0, 4.0):  # two finite steps in a row double the scale
        updates, after = update(good, after, params)
        assert float(after.loss_scale) == expected and float(jnp.min(jnp.abs(updates["w"]))) > 0
    updates, after = update(bad, after, params)  # 4 → 2: the floor
    updates, after = update(bad, after, params)  # at the floor the gradient goes to the optimizer
    assert int(after.loss_scale_skipped) == 2 and bool(jnp.isnan(updates["w"]).any())


def _fp16_trainer(optimizer):
    return train.Trainer(Regressor(nnx.Rngs(0)), optimizer, loss="mse", precision="fp16")


# One optimizer object for every Trainer below: they share one compiled step. Its scale starts at 2^16, above
# what this model's float16 backward pass holds (~2^12), so the first steps overflow; clipping, accumulation over 2
# micro-batches and the non-finite guard sit inside.
OPTIMIZER = train.dynamic_loss_scale(
    train.build_optimizer("adam", 1e-2, clip_norm=0.5, accumulate_steps=2, skip_nonfinite=True),
    initial_scale=2.0**16,
    growth_interval=3,
)


# slow: its float16 training step costs 2-5 CPU-s to compile on the newest stack; the full leg runs it (and the
# resume test, which shares its compile), the newest leg keeps the rule's own test above
@pytest.mark.slow
def test_an_overflow_is_skipped_halves_the_scale_and_leaves_the_parameters_alone():
    trainer = _fp16_trainer(OPTIMIZER)
    assert trainer.optimizer is OPTIMIZER  # it has loss scaling already: not wrapped again
    batch = {k: v[:B] for k, v in regression_data().items()}
    params = [trainer.params]
    for _ in range(8):
        trainer.train_step(batch)
        params.append(trainer.params)
    rows = trainer.history.steps
    scale, good, finite_seen, last_skipped = 2.0**16, 0, 0, 0
    for i, row in enumerate(rows):  # the rule, replayed step by step
        if row["loss_scale_skipped"] > last_skipped:  # overflow: skipped, counted, scale halved, params untouched
            assert row["nonfinite"] == 1.0 and leaves_equal(params[i + 1], params[i])
            scale, good = scale / 2, 0
        else:  # accumulation over 2: every second finite micro-batch updates the parameters
            finite_seen, good = finite_seen + 1, good + 1
            assert leaves_equal(params[i + 1], params[i]) == (finite_seen % 2 == 1)
            assert np.isfinite(row["grad_norm"]) and row["clipped_grad_norm"] <= 0.5 + 1e-6
            if good == 3:
                scale, good = scale * 2, 0
        assert row["loss_scale"] == scale, (i, rows)
        last_skipped = row["loss_scale_skipped"]
    assert 1 <= last_skipped < len(rows) - 3 and finite_seen >= 3, rows  # both kinds of step happened
    # The guard inside never saw the overflows.
    assert all(r["nonfinite_count"] == 0 for r in rows)
    # The diagnostics report true (unscaled) gradient norms: this model's are O(1) (0.2-1.4 per element in float32
    # at the start); scaled by the 2^12 or more that the first steps used they would be thousands.
    assert all(0.01 < r["grad_norm"] < 20 for r in rows if r["nonfinite"] == 0.0)


@pytest.mark.slow
def test_a_resumed_fp16_run_continues_with_the_saved_loss_scale(tmp_path):
    data = regression_data()
    whole = _fp16_trainer(OPTIMIZER)
    whole.fit(data, steps=6, eval_every=3, batch_size=B, progress=False)
    split = _fp16_trainer(OPTIMIZER)
    split.fit(data, steps=3, eval_every=3, batch_size=B, progress=False, checkpoint=tmp_path / "ckpt")
    resumed = _fp16_trainer(OPTIMIZER)
    resumed.fit(data, steps=6, eval_every=3, batch_size=B, progress=False, checkpoint=tmp_path / "ckpt", resume=True)
    state = optax.tree.get(resumed.opt_state, "loss_scale"), optax.tree.get(resumed.opt_state, "loss_scale_skipped")
    assert int(state[1]) > 0  # the run had overflows to count
    assert leaves_equal(resumed.opt_state, whole.opt_state) and leaves_equal(resumed.params, whole.params)
    assert {leaf.dtype for leaf in jax.tree.leaves(resumed.params)} == {F32}


def test_fp16_without_loss_scaling_gets_it_and_tbptt_is_refused():
    sgd = optax.sgd(0.1)
    trainer = _fp16_trainer(sgd)
    assert trainer.optimizer is not sgd and optax.tree.get(trainer.opt_state, "loss_scale") == 2.0**15
    assert _fp16_trainer(sgd).optimizer is trainer.optimizer  # made once per optimizer: one compile
    with pytest.raises(ValueError, match="truncated BPTT"):
        train.Trainer(Regressor(nnx.Rngs(0)), sgd, tbptt=2, precision="fp16")
