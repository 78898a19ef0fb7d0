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
# [colab]: https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/02_vanishing_gradients.ipynb
#
# # Vanishing gradients: tanh RNN vs LSTM vs LRU
#
# Why LSTMs (Hochreiter & Schmidhuber, 1997), and why the linear recurrences
# of today (LRU: Orvieto et al., 2023), seen through the gradient that reaches
# each time step, ‖∂L/∂h_t‖, on the **adding problem**: each step carries a
# random value and a marker, and the target is the sum of the two marked
# values, one in each half of a sequence of `T` steps. Predicting 1 always
# scores MSE 1/6 ≈ 0.167; beating it means carrying the first value across
# about `T / 2` steps.
#
# The committed outputs come from the small default size (`T = 50`, 150
# training steps: seconds on a CPU; the test suite re-executes it and
# compares). That is enough to see the gradients, not to learn the task: set
# `FULL = True` for `T = 100` and 3,000 steps, where the LSTM learns it and
# the other two do not, each for its own reason (below). That takes a minute or
# two on a 2-core CPU; on Colab a GPU runtime (*Runtime → Change runtime type*)
# is faster.

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

FULL = False  # True: the full-size run

# %%
import jax
import numpy as np
from flax import nnx
from IPython.display import Image, display

import recurrax
from recurrax import models, tasks, train

T = 100 if FULL else 50
STEPS = 3000 if FULL else 150
HIDDEN = 32
print("backend:", jax.default_backend(), "| T =", T, "| training steps:", STEPS)

# %% [markdown]
# ## The task and the three models
#
# `infinite=True` gives an endless training source: every batch is freshly
# drawn from the seed and the batch index, so no example is seen twice (and
# resuming a run is exact). Validation and test are fixed sets.
#
# The three backbones, the same readout (a linear layer on the last output):
#
# - **tanh RNN**: `h_t = tanh(W x_t + U h_{t-1} + b)`. Backpropagation
#   multiplies by `Uᵀ diag(1 - h_t²)` at every step, so the gradient shrinks
#   (or grows) by roughly a constant factor per step: exponentially in the
#   distance.
# - **LSTM**: the cell state is updated additively, `c_t = f_t ⊙ c_{t-1} +
#   i_t ⊙ g_t`; with forget gates near 1 the gradient passes almost unchanged.
#   Chrono initialisation (Tallec & Ollivier, 2018) sets the forget biases so
#   that the gates' time scales spread up to `T`.
# - **LRU**: a linear, diagonal, complex recurrence `h_t = λ ⊙ h_{t-1} + B x_t`
#   with `|λ| < 1` learned directly; no saturating nonlinearity inside the
#   recurrence, so the gradient decays like `|λ|^distance`, and `r_min = 0.9`
#   starts every `|λ|` between 0.9 and 1 (the paper's choice for long range).

# %%
adding = tasks.adding_problem(T, num_validation=256, num_test=512, infinite=True)
print(adding.info.description, "| predicting 1 scores MSE", round(adding.info.baseline, 4))

NAMES = {"rnn": "tanh RNN", "lstm": "LSTM", "lru": "LRU"}


def regressor(name):
    if name == "lru":
        return models.SequenceRegressor(2, cell=recurrax.lru(HIDDEN, skip=False, r_min=0.9), rngs=nnx.Rngs(0))
    options = {"chrono_max_timescale": T} if name == "lstm" else {}
    return models.SequenceRegressor(2, cell=name, hidden_size=HIDDEN, rngs=nnx.Rngs(0), **options)


# %% [markdown]
# ## Training, recording the gradient flow
#
# `train.gradient_flow(model, batch)` measures ‖∂L/∂h_t‖ for every step `t` (it
# differentiates with respect to zero perturbations added to the carry, so the
# model is unchanged); `train.GradientFlowRecorder` does that on a fixed batch
# every few steps of `fit`, the first time before the first step.
# Same data, same optimizer (Adam, clipped at global norm 1) for all three.

# %%
flow_batch = {"inputs": adding.validation.inputs[:64], "targets": adding.validation.targets[:64]}
results = {}
for name in NAMES:
    model = regressor(name)
    recorder = train.GradientFlowRecorder(flow_batch, every_steps=STEPS // 15)
    train.fit(
        model,
        train.build_optimizer("adam", 3e-3, clip_norm=1.0),
        adding.train,
        loss="mse",
        steps=STEPS,
        batch_size=32,
        callbacks=[recorder],
        progress=FULL,  # a bar for the long run; the committed outputs carry no wall-clock text
    )
    mse = train.evaluate(model, adding.test, loss="mse")["loss"]
    results[name] = (mse, recorder)
    print(f"{NAMES[name]:>8}: test MSE {mse:.4f}")

# %% [markdown]
# ## At initialisation
#
# The recorder's first measurement is the untrained model. The ratio
# ‖∂L/∂h_0‖ / ‖∂L/∂h_{T-1}‖ says how much of the gradient at the last step
# reaches the first one:

# %%
for name, (_mse, recorder) in results.items():
    flow = recorder.flows[0, 0]  # [T]: the first measurement, the one recurrent layer
    print(f"{NAMES[name]:>8}: ‖∂L/∂h_0‖ / ‖∂L/∂h_T-1‖ = {flow[0] / flow[-1]:.1e}")
at_init = {NAMES[name]: recorder.flows[0] for name, (_mse, recorder) in results.items()}
display(Image(filename=train.plot_gradient_flow(at_init, "flow_at_init.png", title=f"at initialisation, T={T}")))

# %% [markdown]
# ## As training goes
#
# The heatmaps show log10 ‖∂L/∂h_t‖ (x: time step, y: training step), all on
# one colour scale. Watch the left edge, the early steps where the first
# marked value sits: the tanh RNN's gradient there collapses as its units
# saturate, so it cannot learn to carry that value; the LSTM's and the LRU's
# stay within a few orders of magnitude of the last step's.

# %%
for name, (_mse, recorder) in results.items():
    flows = recorder.flows[:, 0]
    print(
        f"{NAMES[name]:>8}: ‖∂L/∂h_0‖ / ‖∂L/∂h_T-1‖ = {flows[0, 0] / flows[0, -1]:.1e} at step 0, "
        f"{flows[-1, 0] / flows[-1, -1]:.1e} at step {recorder.steps[-1]}"
    )
# The three recorders measured at the same steps: one figure, one colour scale.
over_training = {f"{NAMES[name]}, test MSE {mse:.3f}": recorder.flows for name, (mse, recorder) in results.items()}
steps = results["rnn"][1].steps
display(Image(filename=train.plot_gradient_flow(over_training, "flow_training.png", steps=steps, title=f"T={T}")))

# %% [markdown]
# ## Gradient flow is necessary, not sufficient
#
# At the full size the LSTM learns the task and the tanh RNN stays near the
# baseline: its gradient never reaches the first marked value. The LRU stays
# near the baseline too, although its gradient does reach every step: one LRU
# layer is linear in its inputs, so its last state is a weighted sum
# `Σ_t λ^(T-1-t) ⊙ B x_t`, and no readout of a sum can pick out
# `value × marker` at the two marked steps. The LRU paper stacks LRU layers
# with nonlinear MLPs between them, which is what makes such products
# possible; the LSTM's gates multiply inside the recurrence.
#
# Similar runs from the command line (the CLI's LSTM without chrono initialisation), with checkpoints,
# history and plots:
#
# ```
# recurrax train --task adding --seq-len 100 --cell lstm --hidden 32 --steps 3000 --fresh-data \
#     --lr 3e-3 --clip 1.0 --out runs/lstm
# recurrax train --task adding --seq-len 100 --cell rnn --hidden 32 --steps 3000 --fresh-data \
#     --lr 3e-3 --clip 1.0 --out runs/rnn
# ```
