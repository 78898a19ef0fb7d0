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
# [colab]: https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/07_precision.ipynb
#
# # Cheaper recurrent models: mixed precision and int8, with the accuracy cost on the table
#
# One GRU classifier on scikit-learn's 8×8 digits read row by row (bundled with
# scikit-learn; MNIST-1D at the full size), trained from the same initial
# weights on the same batches in float32, under the `"bf16"` policy (bfloat16
# matmuls, float32 master weights and carries) and
# quantization-aware in int8; then the float32 model quantized after training:
# int8 weights only, int8 weights and activations (per-step scales), and int8
# with static activation scales calibrated on a few training batches. Each gets
# its test accuracy and its parameters' bytes.
#
# One small run (the committed outputs: a CPU, a few seconds each; accuracy to
# two decimals, since bfloat16 rounding flips a test example or two between
# machines) says what runs, not what it costs: the accuracy verdict is in
# [docs/precision.md](../docs/precision.md) (eight seeds, mean and a 95 %
# interval). Set `FULL = True` for the benchmark's setting (MNIST-1D, GRU 128,
# 12 epochs; a few minutes on a Colab GPU: *Runtime → Change runtime type*). On a CPU,
# bfloat16 is slower than float32 (docs/precision.md says by how much and why).

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
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from IPython.display import Image, display

from recurrax import models, tasks, train
from recurrax.quantize import Quantization, parameter_bytes, quantization_aware_model, quantize

print("backend:", jax.default_backend())

# %% [markdown]
# ## Training in three precisions
#
# `precision="bf16"` is a policy the Trainer applies to every layer of the
# model (`recurrax.nn.apply_precision`); `quantization_aware_model` makes every
# kernel pass through int8 codes in the forward pass, with straight-through
# gradients, while the optimizer keeps updating float32 weights.

# %%
data = tasks.mnist1d(num_samples=5000) if FULL else tasks.sequential_digits("rows")
hidden, epochs = (128, 12) if FULL else (32, 6)


def new_model():
    features = data.train.inputs.shape[-1]
    return models.SequenceClassifier(features, 10, cell="gru", hidden_size=hidden, rngs=nnx.Rngs(0))


def fit(model, precision=None):
    trainer = train.Trainer(
        model, optax.adam(3e-3), loss="softmax_cross_entropy", metrics=["accuracy"], precision=precision
    )
    trainer.fit(data.train, epochs=epochs, batch_size=32, progress=False)
    model.eval()
    return trainer.evaluate(data.test, batch_size=256)["accuracy"]


def accuracy(model):
    return train.Trainer(model, None, loss="softmax_cross_entropy", metrics=["accuracy"]).evaluate(
        data.test, batch_size=256
    )["accuracy"]


float_model = new_model()
results = {"float32": (fit(float_model), parameter_bytes(float_model))}
results["bf16 policy"] = (fit(new_model(), "bf16"), parameter_bytes(float_model))  # float32 masters: same bytes
qat_model = quantization_aware_model(new_model(), Quantization("int8"))
results["int8 QAT"] = (fit(qat_model), parameter_bytes(quantize(qat_model, "int8")))
for name, (acc, _) in results.items():
    print(f"{name:12s} test accuracy {acc:.2f}")

# %% [markdown]
# ## Quantized after training
#
# `quantize` returns a copy of the trained float32 model, called the same way,
# with every kernel stored as int8 codes and a scale per output channel. With
# `activations="int8"` each matmul's inputs pass through codes too: scaled per
# step and example (dynamic), or, given `calibration_data`, at one fixed scale
# per activation observed on those batches (static).

# %%
calibration = data.train.subset(slice(0, 256))
quantized = {
    "int8 weights": quantize(float_model, Quantization("int8")),
    "int8 weights + activations": quantize(float_model, Quantization("int8", activations="int8")),
    "int8, static activations": quantize(
        float_model, Quantization("int8", activations="int8"), calibration_data=calibration
    ),
}
for name, small in quantized.items():
    results[name] = (accuracy(small), parameter_bytes(small))
base = results["float32"][1]
print(f"{'':28s} accuracy  parameter bytes")
for name, (acc, size) in results.items():
    print(f"{name:28s} {acc:8.2f}  {size:>9,} ({base / size:.2f}x smaller)")

# %% [markdown]
# Every kernel shrinks 4×; the float32 biases and the per-channel scales stay,
# so the whole model shrinks a little less, the more so the smaller it is.

# %%
fig, ax = plt.subplots(figsize=(7, 3))
names = list(results)
ax.barh(names, [results[n][0] for n in names], color=["C0", "C1", "C2", "C3", "C3", "C3"])
ax.set_xlim(0, 1)
ax.set_xlabel("test accuracy (one seed: see docs/precision.md for the spread)")
ax.invert_yaxis()
fig.tight_layout()
fig.savefig("precision.png", dpi=80)
plt.close(fig)
display(Image(filename="precision.png"))

# %% [markdown]
# The same from the command line: `recurrax train ... --precision bf16` (or
# `fp16`, `int8-qat`), then `recurrax quantize RUN --int8 [--calibrate N]` and
# `recurrax evaluate RUN --quantized` ([docs/cli.md](../docs/cli.md)).
