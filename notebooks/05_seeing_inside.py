# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)][colab]
#
# *(OWNER/REPO in the link is set by `python notebooks/execute.py` from `Repository`
# under `[project.urls]` in pyproject.toml, which does not name the repository yet.)*
#
# [colab]: https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/05_seeing_inside.ipynb
#
# # Seeing inside: what a trained recurrent model reads, and how it remembers
#
# `recurrax.interpret` on two tasks, with trained models:
#
# 1. **The adding problem** (a known answer): each of `T = 100` steps carries a
#    random value and a marker, and the target is the sum of the two marked
#    values. A model that solved it must rest its output on those two values
#    (attributions), open its input gate at the marked steps and keep what it
#    stored (gate recordings, the forget gate's time constant), and pass
#    gradients back through 50 steps (the recurrent Jacobian's spectrum: tanh RNN
#    vs LSTM).
# 2. **MNIST-1D** (no planted answer): which steps of a 40-step digit a GRU and
#    a CNN (TCN) attend to, and a check that those steps matter: deleting them
#    costs far more accuracy than deleting as many random steps.
#
# Nothing is trained here: training these models takes minutes on a CPU, so the
# notebook loads the parameters that the repository's benchmark scripts keep
# in `benchmarks/results/`:
#
# - `attribution_models.npz`, written by `python -m benchmarks.attribution`:
#   an LSTM(64) with chrono initialisation trained 8,000 Adam steps (cosine
#   schedule), and a tanh RNN(64) trained the same way;
# - `attribution_mnist1d_models.npz`, written by `python -m benchmarks.attribution_mnist1d`:
#   a GRU(128) and a TCN(64) trained 20 epochs, weights rounded to float16, and
#   200 MNIST-1D test examples.
#
# The measured figures of both checks, over more sequences, are in
# docs/interpretability.md and those scripts' records.

# %%
# Where recurrax comes from, the one setting to change (notebooks/README.md):
#   None: the copy that is importable here (a clone installed with `pip install -e ".[tasks]"`);
#   else a pip source: a wheel ("dist/recurrax-0.1.0-py3-none-any.whl"), a clone ("../recurrax"),
#   or the repository's git URL ("git+https://github.com/OWNER/NAME.git", add "@TAG" to pin it).
RECURRAX_SOURCE = None
import importlib.util
import subprocess
import sys
from pathlib import Path

if RECURRAX_SOURCE is not None:
    url = RECURRAX_SOURCE if "://" in RECURRAX_SOURCE else Path(RECURRAX_SOURCE).resolve().as_uri()
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", f"recurrax[tasks] @ {url}"])
elif importlib.util.find_spec("recurrax") is None:
    raise ModuleNotFoundError("recurrax is not installed: set RECURRAX_SOURCE to a wheel, a clone or a git URL")

# %% [markdown]
# The trained parameters live in the repository, not in the installed package:
# this cell finds a clone (this notebook's, or the one recurrax was installed
# from), or clones the repository when `RECURRAX_SOURCE` is a git URL.

# %%
import re

import recurrax


def results_folder():
    here = [Path.cwd(), *Path.cwd().parents, Path(recurrax.__file__).resolve().parents[2]]
    if RECURRAX_SOURCE is not None and "://" not in RECURRAX_SOURCE:
        here.insert(0, Path(RECURRAX_SOURCE).resolve())
    for root in here:
        if (root / "benchmarks" / "results" / "attribution_models.npz").is_file():
            return root / "benchmarks" / "results"
    git = re.fullmatch(r"git\+(.+?)(?:@([^/@]+))?", RECURRAX_SOURCE or "")
    if git is None:
        raise FileNotFoundError("benchmarks/results/ is in the repository: set RECURRAX_SOURCE to a clone or its URL")
    url, ref = git.groups()
    clone = Path("recurrax-repository")
    if not clone.is_dir():
        subprocess.check_call(["git", "clone", "--quiet", url, str(clone)])
        if ref:
            subprocess.check_call(["git", "-C", str(clone), "checkout", "--quiet", ref])
    return clone.resolve() / "benchmarks" / "results"


RESULTS = results_folder()

# %%
import jax
import numpy as np
from flax import nnx, traverse_util
from IPython.display import Image, display

from recurrax import interpret, models, nn, tasks, train


def load(model, arrays, name):
    """Puts the saved parameters ``name/...`` of ``arrays`` into ``model`` (in float32), in eval mode."""
    flat = {
        tuple(int(part) if part.isdigit() else part for part in key.split("/")[1:]): arrays[key].astype(np.float32)
        for key in arrays.files
        if key.startswith(name + "/")
    }
    state = nnx.state(model, nnx.Param)
    state.replace_by_pure_dict(traverse_util.unflatten_dict(flat))
    nnx.update(model, state)
    model.eval()
    return model


def show(figure, name):
    figure.savefig(name, dpi=64)
    display(Image(filename=name))


print("backend:", jax.default_backend())

# %% [markdown]
# ## 1. The adding problem
#
# The models and the test sequences are the benchmark's (`adding_problem(100)`'s
# test split, seed 0); here 200 and 8 of them, to run in seconds (the
# benchmark's record has 1,000 and 100). An untrained LSTM, the same
# initialisation, is the control. Always predicting 1 scores MSE 1/6 ≈ 0.167;
# predicting the second marked value plus 0.5, ignoring the first, scores
# 1/12 ≈ 0.083, which is about where the tanh RNN ends: the second value is
# at most 50 steps from the end, the first up to 100.

# %%
T = 100
adding = tasks.adding_problem(T, infinite=True, num_validation=200, num_test=1000)
saved = np.load(RESULTS / "attribution_models.npz")


def adding_model(cell, **options):
    return models.model_for_task(adding.info, cell=cell, hidden_size=64, rngs=nnx.Rngs(0), **options)


lstm = load(adding_model("lstm", chrono_max_timescale=float(T)), saved, "lstm")
rnn = load(adding_model("rnn"), saved, "rnn")
untrained = adding_model("lstm", chrono_max_timescale=float(T))
untrained.eval()
test = {"inputs": adding.test.inputs[:200], "targets": adding.test.targets[:200]}
for name, model in (("LSTM", lstm), ("tanh RNN", rnn)):
    print(f"{name:>8}: test MSE {train.evaluate(model, test, loss='mse')['loss']:.2e} (200 test sequences)")

# %% [markdown]
# ### Attributions land on the two marked values
#
# `explain(..., method="integrated_gradients")` attributes the prediction to
# every step and feature. The baseline, "the input that counts as nothing
# there", is chosen for the question *what does the output owe the values?*:
# the sequence itself with its markers kept and every value at its mean 0.5
# (docs/interpretability.md and `benchmarks/attribution.py` say why, and what
# the other baselines give). Completeness: the attributions of each sequence
# sum to `f(x) − f(baseline)`.

# %%
inputs = np.asarray(adding.test.inputs[:8])
marked = inputs[..., 1] > 0.5
first = np.arange(T) < T // 2  # the first marker is in the first half, the second in the second
baseline = inputs.copy()
baseline[..., 0] = 0.5

ig = {}
for name, model in (("LSTM", lstm), ("untrained LSTM", untrained)):
    ig[name] = interpret.explain(model, inputs, method="integrated_gradients", baseline=baseline, num_steps=32)
    change = interpret.model_output(model, inputs) - interpret.model_output(model, baseline)
    complete = np.allclose(ig[name].sum((1, 2)), change, rtol=1e-3, atol=1e-5)
    magnitude = np.abs(ig[name])
    total = magnitude.sum((1, 2))
    on_first = (magnitude[..., 0] * (marked & first)).sum(1) / total
    on_second = (magnitude[..., 0] * (marked & ~first)).sum(1) / total
    print(
        f"{name:>14}: {on_first.mean():.3f} of |attribution| on the first marked value, {on_second.mean():.3f} "
        f"on the second (2 of {2 * T} inputs); complete: {complete}"
    )
show(
    interpret.plot_attributions(
        ig["LSTM"], inputs, example=0, feature_names=["value", "marker"], title="trained LSTM, test sequence 0"
    ),
    "adding_attributions.png",
)

# %% [markdown]
# ### How it stores them: the gates at the marked steps
#
# `nn.recording()` collects every recurrent layer's internals per step (the
# LSTM's gates `i f o`, candidate `g`, cell state `c`). What enters the cell
# state at a step is `i ⊙ g`: the trained LSTM writes far more at the marked
# steps than elsewhere, and a few units do the gating, their input gate far
# more open at a marker than elsewhere (the heatmap: units down, steps across).

# %%
with nn.recording() as layers:
    lstm(inputs)
gates = layers[0]  # the one recurrent layer: {"i": [B, T, H], "f": ..., ...}
i_gate, written = np.asarray(gates["i"]), np.abs(np.asarray(gates["i"]) * np.asarray(gates["g"]))
print(f"|i ⊙ g|: {written[marked].mean():.4f} at the marked steps, {written[~marked].mean():.4f} elsewhere")
opening = i_gate[marked].mean(0) - i_gate[~marked].mean(0)  # [H]: how much more each unit's gate opens at a marker
for unit in np.argsort(-opening)[:3]:
    print(
        f"unit {unit:>2}: input gate {i_gate[marked][:, unit].mean():.2f} at the marked steps, "
        f"{i_gate[~marked][:, unit].mean():.2f} elsewhere"
    )
show(interpret.plot_recording(gates, "i", example=0, title="trained LSTM: input gate i, test sequence 0"), "gate_i.png")

# %% [markdown]
# ### The forget gate's time constant
#
# A forget gate `f` keeps `f` of the cell state per step, so it remembers for
# about `1 / (1 − f)` steps. `gate_statistics` reports it per layer (with the
# share of saturated gates and the state's norm); the `GateStatistics`
# callback logs the same into a training run's history. Chrono initialisation
# already spreads the forget gates' time scales up to `T`, so the mean memory
# hardly moves in training: what training changed is where the input gate
# opens (above).

# %%
for name, model in (("untrained", untrained), ("trained", lstm)):
    stats = {key.split("/")[1]: value for key, value in interpret.gate_statistics(model, inputs).items()}
    print(
        f"{name:>9} LSTM: forget gate mean {stats['keep_mean']:.3f}, time constant "
        f"{stats['time_constant']:.0f} steps, saturated gates {stats['saturated_fraction']:.2f}"
    )

# %% [markdown]
# ### Why the LSTM can learn this and the tanh RNN cannot: the recurrent Jacobian
#
# A gradient through time is a product of the Jacobians `∂state_t/∂state_{t−1}`;
# singular values near 1 let it pass, below 1 it vanishes. Along one test
# sequence: the trained LSTM's (state `[h, c]`, 128 directions) against the
# tanh RNN's, trained the same way. The Lyapunov exponent `λ` is the rate of
# the product itself: a gradient reaching back `k` steps changes like
# `e^{λk}`. The LSTM's is close to 0, an integrator that keeps a gradient's
# size over the 50 steps back to the first marker; the tanh RNN's units
# saturated, its singular values sit decades below 1, and its product loses
# orders of magnitude over those 50 steps: the first value is out of reach.

# %%
xs = inputs[:1]  # [1, T, 2]: the LSTM's Jacobians are [1, 100, 128, 128]
spectra = {}
for name, model in (("LSTM", lstm), ("tanh RNN", rnn)):
    cell, params = model.backbone.cell, model.backbone.pure_params()
    sigma = np.asarray(interpret.jacobian_singular_values(interpret.recurrent_jacobians(cell, params, xs)))
    lam = float(np.mean(interpret.lyapunov_exponent(cell, params, xs, key=jax.random.key(0))))
    spectra[name] = sigma
    print(
        f"{name:>8}: median |log σ| {np.median(np.abs(np.log(sigma))):.2f}, σ in [0.5, 2]: "
        f"{np.mean((sigma >= 0.5) & (sigma <= 2)):.0%}, λ = {lam:.3f} (e^50λ = {np.exp(50 * lam):.1e})"
    )
show(interpret.plot_jacobian_spectrum(spectra, title="trained on the adding problem, T = 100"), "spectra.png")

# %% [markdown]
# ## 2. MNIST-1D: where a GRU and a CNN look
#
# Ten 1-D digit templates, shifted, scaled and noised, 40 steps each. The
# benchmark's figure first: integrated gradients (zero baseline, the predicted
# class) of both models on three test examples, made with `explain` on the
# float32 models. Both models rest their prediction on the same parts of each
# digit, the GRU on a few more steps.
#
# ![integrated gradients of the GRU and the TCN](../benchmarks/results/attribution_mnist1d.png)

# %% [markdown]
# ### The deletion check
#
# If the attributions found the steps a model needs, deleting those steps
# (setting them to the baseline, 0) must cost more accuracy than deleting as
# many random steps. Here the steps are ranked by occlusion, the drop of the
# predicted class's logit when one step is set to 0 (forward passes only: a
# second of CPU for both models), on 100 saved test examples; the benchmark's
# record does the same for integrated gradients and occlusion on 500 examples.

# %%
digits = np.load(RESULTS / "attribution_mnist1d_models.npz")
examples, labels = digits["inputs"][:100], digits["labels"][:100]  # [100, 40, 1], [100]


def classifier(cell, hidden_size, name):  # what models.model_for_task builds for MNIST-1D: 1 feature, 10 classes
    return load(models.SequenceClassifier(1, 10, cell=cell, hidden_size=hidden_size, rngs=nnx.Rngs(0)), digits, name)


@nnx.jit  # one compiled forward pass per model, whatever steps are deleted
def logits(model, inputs):
    return model(inputs)


def accuracy(model, inputs):
    return np.mean(np.asarray(logits(model, inputs)).argmax(-1) == labels)


def deleted(order, k):  # each example with its first k steps of order [N, T] set to 0
    keep = np.ones(examples.shape[:2], bool)
    np.put_along_axis(keep, order[:, :k], False, axis=1)
    return examples * keep[..., None]


k = 4
random_order = np.argsort(np.random.default_rng(0).random(examples.shape[:2]), axis=1)
maps = {}
for name, model in (("GRU", classifier("gru", 128, "gru")), ("TCN", classifier("tcn", 64, "tcn"))):
    maps[name] = interpret.explain(model, examples, method="occlusion")
    top = np.argsort(-np.abs(maps[name]).sum(-1), axis=1)  # most attributed step first
    print(
        f"{name}: accuracy {accuracy(model, examples):.2f}; {k} most attributed steps deleted: "
        f"{accuracy(model, deleted(top, k)):.2f}, {k} random steps: {accuracy(model, deleted(random_order, k)):.2f}"
    )
show(interpret.plot_attributions(maps["GRU"], examples, example=0, title="GRU, occlusion, test example 0"), "gru.png")
