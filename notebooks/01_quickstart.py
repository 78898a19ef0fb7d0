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
# [colab]: https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/01_quickstart.ipynb
#
# # recurrax quick start: the classic LSTM program
#
# `LSTM(128) → Dense(64, relu) → Dropout(0.5) → Dense(1, sigmoid)`, binary
# cross-entropy, Adam, batch 32, with validation data: the program every
# recurrent-network tutorial starts with, in recurrax.
#
# The committed outputs come from the small default size (a few seconds on a
# CPU; the test suite re-executes it and compares). Set `FULL = True` below for
# the full-size run: 5,000 reviews of 50 words, 10 epochs (a minute or two on a
# 2-core CPU, less on a Colab GPU: *Runtime → Change runtime type*).

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
import optax
from flax import nnx
from IPython.display import Image, display

from recurrax import models, tasks, train

print("backend:", jax.default_backend(), "| size:", "full" if FULL else "small")

# %% [markdown]
# ## The data
#
# `tasks.sentiment`: synthetic "reviews" of one-hot words with different
# lengths; the label says whether positive words outnumber negative ones. Like
# every `recurrax.tasks` builder it is deterministic by seed, needs no
# download, and returns train / validation / test splits with each example's
# `lengths` and a description.

# %%
if FULL:
    data = tasks.sentiment()  # 50 words, 5,000 / 500 / 1,000 reviews
else:
    data = tasks.sentiment(seq_len=20, num_train=640, num_validation=128, num_test=256)
print(data.info.description)
print("inputs", data.train.inputs.shape, "targets", data.train.targets.shape, "lengths", data.train.lengths.shape)

# %% [markdown]
# ## The model
#
# `models.SequenceClassifier` is exactly `LSTM(128) → Dense(64, relu) →
# Dropout(0.5) → Dense(1)`, read at each review's last word (`lengths`: the
# padded steps after it never reach the output). It returns **logits**: the
# final sigmoid is folded into the loss (`"binary_cross_entropy"` works on
# logits, as `-softplus`), which stays finite where `log(1 - sigmoid(z))` in
# float32 would be `log 0` (every `z >= 17`). `cell="gru"`, `"rnn"`, … swap the
# backbone.

# %%
model = models.SequenceClassifier(
    data.info.in_features, 1, cell="lstm", hidden_size=128, dense_size=64, dropout=0.5, rngs=nnx.Rngs(0)
)
history = train.fit(
    model,
    optax.adam(1e-3),
    data.train,
    loss="binary_cross_entropy",
    metrics=["binary_accuracy"],
    epochs=10 if FULL else 4,
    batch_size=32,
    validation_data=data.validation,
    progress=FULL,  # a bar for the long run; the committed outputs carry no wall-clock text
)
for row in history.to_dict()["epochs"]:
    print(
        f"epoch {row['epoch']:>2}: loss {row['loss']:.4f}  accuracy {row['binary_accuracy']:.3f}  "
        f"validation loss {row['val_loss']:.4f}  validation accuracy {row['val_binary_accuracy']:.3f}"
    )

# %%
display(Image(filename=train.plot_history(history, "history.png")))

# %% [markdown]
# ## Test accuracy and probabilities

# %%
test = train.evaluate(model, data.test, loss="binary_cross_entropy", metrics=["binary_accuracy"])
print(f"test accuracy {test['binary_accuracy']:.3f} (always guessing the majority class: {data.info.baseline:.3f})")

# %% [markdown]
# Probabilities, when you want them, are the sigmoid of the logits:

# %%
probabilities = jax.nn.sigmoid(train.predict(model, data.test))
print("p(positive)", np.round(np.asarray(probabilities[:8, 0]), 3))
print("labels     ", data.test.targets[:8, 0].astype(int))

# %% [markdown]
# The same from the command line, with checkpoints, history and plots:
#
# ```
# recurrax train --task sentiment --cell lstm --hidden 128 --epochs 10 --batch-size 32 --out runs/sentiment
# ```
#
# Next: [why LSTMs](02_vanishing_gradients.ipynb) (vanishing gradients),
# [benchmarks on a GPU/TPU runtime](03_benchmarks.ipynb),
# [PyTorch weights](04_pytorch_interop.ipynb).
