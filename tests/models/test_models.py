"""Ready-made models: equal to the same computation written out by hand, with the pure scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import recurrax
from recurrax.models import (
    SequenceClassifier,
    SequenceRegressor,
    backbone_names,
    make_backbone,
    model_for_task,
    read_out,
    register_backbone,
)
from recurrax.nn import _backbones
from recurrax.tasks import adding_problem, copy_task, sentiment

B, T, D, H, DENSE = 3, 6, 3, 5, 4
LENGTHS = np.array([6, 4, 1], np.int32)


def _inputs(seed: int = 0) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (B, T, D), jnp.float32)


@nnx.jit
def _call(model: nnx.Module, xs: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """``model(xs, lengths=lengths)`` in one compile (eager calls compile every op on its own)."""
    return model(xs, lengths=lengths)


def _dense(layer: nnx.Linear, x: jax.Array) -> jax.Array:
    return x @ layer.kernel[...] + layer.bias[...]


def test_classifier_is_the_classic_program_by_default():
    model = nnx.eval_shape(lambda: SequenceClassifier(20, 1, rngs=nnx.Rngs(0)))
    shapes = jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    assert shapes["backbone"]["params"]["input_kernel"] == (20, 4 * 128)
    assert shapes["backbone"]["params"]["recurrent_kernel"] == (128, 4 * 128)
    assert shapes["hidden"] == {"kernel": (128, 64), "bias": (64,)}
    assert shapes["output"] == {"kernel": (64, 1), "bias": (1,)}
    assert isinstance(model.backbone, recurrax.nn.LSTM)
    assert model.dropout.rate == 0.5


def _loop(cell: recurrax.Cell, params, xs: jax.Array) -> jax.Array:
    """The last output of ``cell`` over ``xs[T, D]``, one ``step`` at a time."""
    carry = cell.initial_carry(())
    for x in xs:
        carry, y = cell.step(params, carry, x)
    return y


def test_classifier_equals_a_step_loop_then_dense_layers():
    model = SequenceClassifier(D, 2, cell="lstm", hidden_size=H, dense_size=DENSE, rngs=nnx.Rngs(1))
    model.eval()
    xs = _inputs()
    got = _call(model, xs, jnp.asarray(LENGTHS))
    # Reference: each example on its own, cut to its length, one cell step at a time (one jit).
    pure_cell = model.backbone.cell

    @jax.jit
    def reference(params, hidden, output, xs):
        rows = []
        for b, n in enumerate(LENGTHS):
            h = jax.nn.relu(_loop(pure_cell, params, xs[b, :n]) @ hidden[0] + hidden[1])
            rows.append(h @ output[0] + output[1])
        return jnp.stack(rows)

    layers = [(m.kernel[...], m.bias[...]) for m in (model.hidden, model.output)]
    np.testing.assert_allclose(got, reference(model.backbone.pure_params(), *layers, xs), rtol=1e-5, atol=1e-6)


def test_regressor_reads_the_last_step_linearly():
    model = SequenceRegressor(D, 2, cell=recurrax.gru(H), rngs=nnx.Rngs(3))
    xs = _inputs()
    ys, _ = recurrax.scan(model.backbone.cell, model.backbone.pure_params(), xs)
    np.testing.assert_allclose(_call(model, xs), _dense(model.output, ys[:, -1]), rtol=1e-5, atol=1e-6)
    assert model.hidden is None and model.dropout is None


def test_readouts_against_numpy():
    ys = np.asarray(_inputs())
    lengths = jnp.asarray(LENGTHS)
    last = np.stack([ys[b, n - 1] for b, n in enumerate(LENGTHS)])
    mean = np.stack([ys[b, :n].mean(0) for b, n in enumerate(LENGTHS)])
    np.testing.assert_array_equal(read_out(jnp.asarray(ys), lengths, "last"), last)
    np.testing.assert_allclose(read_out(jnp.asarray(ys), lengths, "mean"), mean, rtol=1e-6)
    np.testing.assert_array_equal(read_out(jnp.asarray(ys), None, "last"), ys[:, -1])
    np.testing.assert_allclose(read_out(jnp.asarray(ys), None, "mean"), ys.mean(1), rtol=1e-6)
    assert read_out(jnp.asarray(ys), lengths, "sequence") is not None


# slow: 1-3 CPU-s on the newest-stack leg, whose budget keeps the cheaper tests of the same code
@pytest.mark.slow
def test_dropout_is_random_in_train_mode_and_off_in_eval_mode():
    model = SequenceClassifier(D, 3, hidden_size=H, dense_size=64, dropout=0.5, rngs=nnx.Rngs(0))
    xs = _inputs()
    a, b = _call(model, xs), _call(model, xs)
    assert not np.array_equal(a, b)
    model.eval()
    c, d = _call(model, xs), _call(model, xs)
    np.testing.assert_array_equal(c, d)
    h = jax.nn.relu(_dense(model.hidden, read_out(model.backbone(xs), None, "last")))
    np.testing.assert_allclose(c, _dense(model.output, h), rtol=1e-5, atol=1e-6)
    assert SequenceClassifier(D, 3, hidden_size=H, dropout=0.0, rngs=nnx.Rngs(0)).dropout is None


def test_per_step_readout_gives_logits_at_every_step():
    data = copy_task(2, copy_length=2, num_symbols=3, num_train=2, num_validation=1, num_test=1)
    model = model_for_task(data.info, hidden_size=H, rngs=nnx.Rngs(0))
    assert isinstance(model, SequenceClassifier) and model.readout == "sequence"
    assert _call(model, jnp.asarray(data.train.inputs)).shape == (2, data.info.seq_len, data.info.num_classes)


def test_model_for_task_picks_the_head():
    adding = adding_problem(5, num_train=2, num_validation=1, num_test=1)
    binary = sentiment(5, num_train=2, num_validation=1, num_test=1)
    regressor = model_for_task(adding.info, cell="gru", hidden_size=H, rngs=nnx.Rngs(0))
    classifier = model_for_task(binary.info, hidden_size=H, dense_size=DENSE, rngs=nnx.Rngs(0))
    assert isinstance(regressor, SequenceRegressor) and regressor.num_outputs == 1
    assert isinstance(classifier, SequenceClassifier) and classifier.num_outputs == 1
    split = binary.train
    out = _call(classifier, jnp.asarray(split.inputs), jnp.asarray(split.lengths))
    assert out.shape == split.targets.shape


def test_registered_backbone_plugs_in_by_name(monkeypatch):
    monkeypatch.setattr(_backbones, "_BACKBONES", dict(_backbones._BACKBONES))

    class Doubler(nnx.Module):
        def __call__(self, xs, *, lengths=None):
            return jnp.concatenate([xs, 2 * xs], axis=-1)

    register_backbone("doubler", lambda d, h, *, rngs: (Doubler(), 2 * d), summary="test")
    assert "doubler" in backbone_names()
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("doubler", lambda d, h, *, rngs: (Doubler(), 2 * d), summary="test")
    model = SequenceRegressor(D, cell="doubler", rngs=nnx.Rngs(0))
    xs = _inputs()
    expected = _dense(model.output, jnp.concatenate([xs[:, -1], 2 * xs[:, -1]], -1))
    np.testing.assert_allclose(_call(model, xs), expected, rtol=1e-6)


def test_builtin_backbones_and_options():
    assert {"lstm", "gru", "rnn"} <= set(backbone_names())
    lstm, features = make_backbone("lstm", D, H, rngs=nnx.Rngs(0), proj_size=2)
    assert features == 2 and lstm(_inputs()).shape == (B, T, 2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SequenceClassifier(D, 2, cell="nope", rngs=nnx.Rngs(0)), "cell must be one of .*lstm"),
        (lambda: SequenceClassifier(D, 2, cell=3, rngs=nnx.Rngs(0)), "cell must be a backbone name"),
        (lambda: SequenceClassifier(0, 2, rngs=nnx.Rngs(0)), "in_features must be a positive int"),
        (lambda: SequenceClassifier(D, 2, hidden_size=2.5, rngs=nnx.Rngs(0)), "hidden_size must be a positive int"),
        (lambda: SequenceClassifier(D, 2, dropout=1.0, rngs=nnx.Rngs(0)), r"dropout must be a rate in \[0, 1\)"),
        (lambda: SequenceClassifier(D, 2, readout="first", rngs=nnx.Rngs(0)), "readout must be one of"),
        (lambda: SequenceRegressor(D, 0, rngs=nnx.Rngs(0)), "num_outputs must be a positive int"),
        (lambda: register_backbone("lstm", None, summary=""), "factory must be callable"),
    ],
)
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_wrong_input_width_is_a_clear_error():
    model = SequenceRegressor(D, hidden_size=H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"xs must have shape \[B, T, 3\], got \(3, 6, 4\)"):
        model(jnp.ones((B, T, 4)))


@pytest.mark.slow
@pytest.mark.parametrize("name", backbone_names())
def test_every_backbone_respects_lengths_and_trains(name):
    """Driven by the registry: a new backbone gets the same checks."""
    model = SequenceClassifier(D, 2, cell=name, hidden_size=H, dense_size=None, rngs=nnx.Rngs(0))
    model.eval()
    xs, lengths = _inputs(), jnp.asarray(LENGTHS)
    valid = jnp.asarray(np.arange(T)[None, :, None] < LENGTHS[:, None, None])
    noisy = jnp.where(valid, xs, 100.0 * _inputs(1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_and_outputs(params, xs):
        logits = nnx.merge(graphdef, params, rest)(xs, lengths=lengths)
        return jnp.mean(jax.nn.log_softmax(logits)[:, 0]), logits

    # One compile: jax.grad of a jitted function compiles its forward and backward passes apart.
    value_and_grad = jax.jit(jax.value_and_grad(loss_and_outputs, (0, 1), has_aux=True))
    (_, logits), (grads, input_grads) = value_and_grad(params, xs)
    assert logits.shape == (B, 2)
    # Padding changes neither the outputs nor, through the gradient, anything learned.
    (_, noisy_logits), _ = value_and_grad(params, noisy)
    np.testing.assert_allclose(noisy_logits, logits, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(input_grads)[~np.broadcast_to(np.asarray(valid), input_grads.shape)] == 0.0)
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0
