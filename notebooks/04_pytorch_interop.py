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
# [colab]: https://colab.research.google.com/github/OWNER/REPO/blob/main/notebooks/04_pytorch_interop.ipynb
#
# # PyTorch weights in recurrax
#
# `recurrax.interop` loads the weights of a PyTorch `nn.RNN`, `nn.LSTM` or
# `nn.GRU` and runs them with recurrax's scan engine, equal to PyTorch's own
# outputs to float rounding (docs/interop.md has the whole API):
#
# - `from_torch_state_dict(state_dict, mode=...)`: torch's parameter names and
#   arrays → a `TorchRNN`, **without torch** (an `.npz` of the weights will do);
# - `to_nnx(...)`: straight into `recurrax.nn` layers (Flax NNX), with the
#   `nn.Linear` head that usually follows;
# - `from_torch(module)` / `to_torch(rnn)`: from and back to a live torch module.
#
# The first half needs no PyTorch. The cells of the second half use it where it
# is installed (it is on Colab) and otherwise say so and skip. Everything here
# is small; there is no larger size to choose.

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

# %%
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from IPython.display import Image, display

import recurrax
from recurrax import train

HAVE_TORCH = importlib.util.find_spec("torch") is not None
SKIPPED = "PyTorch is not installed here, so this cell skips (docs/interop.md says how to install the CPU build)."

# %% [markdown]
# ## Without PyTorch: a state dict saved as `.npz`
#
# Where torch is installed, one line saves a module's weights as plain arrays:
#
# ```python
# np.savez("lstm.npz", **{name: t.numpy() for name, t in lstm.state_dict().items()})
# ```
#
# Here the `.npz` is made from random arrays in torch's layout: a 2-layer
# bidirectional LSTM, 3 inputs, 8 hidden units (`weight_ih_l{k}` is
# `[4·hidden, inputs]`, gates in torch's order i, f, g, o; `_reverse` is the
# backward direction).

# %%
rng = np.random.default_rng(0)
shapes = {}
for layer, fan_in in [(0, 3), (1, 16)]:
    for suffix in ["", "_reverse"]:
        shapes[f"weight_ih_l{layer}{suffix}"] = (32, fan_in)
        shapes[f"weight_hh_l{layer}{suffix}"] = (32, 8)
        shapes[f"bias_ih_l{layer}{suffix}"] = (32,)
        shapes[f"bias_hh_l{layer}{suffix}"] = (32,)
np.savez("lstm.npz", **{name: rng.uniform(-0.3, 0.3, size=s).astype(np.float32) for name, s in shapes.items()})

# %% [markdown]
# The sizes, layers, directions and biases are read off the keys and shapes;
# what the weights cannot say is an argument (`mode`, `batch_first`).
# Variable-length batches take `lengths`, like torch's `pack_padded_sequence`.
# A `TorchRNN` is a pytree, so `jax.jit` takes it as an argument and compiles
# the whole call once (called eagerly, JAX compiles each operation on its own).

# %%
state = dict(np.load("lstm.npz"))
rnn = recurrax.interop.from_torch_state_dict(state, mode="LSTM", batch_first=True)
print(rnn.mode, "layers", rnn.num_layers, "bidirectional", rnn.bidirectional, "hidden", rnn.hidden_size)

xs = jnp.asarray(rng.normal(size=(4, 6, 3)), jnp.float32)
lengths = jnp.array([6, 4, 5, 2])


@jax.jit
def apply(rnn, xs, lengths=None):
    return rnn(xs, lengths=lengths)


output, (h_n, c_n) = apply(rnn, xs, lengths)  # torch's shapes
print("output", output.shape, "h_n", h_n.shape, "c_n", c_n.shape)
print("padding is zero:", bool(jnp.all(output[1, 4:] == 0)), bool(jnp.all(output[3, 2:] == 0)))

# %% [markdown]
# ## Into Flax NNX, and training in JAX
#
# `to_nnx` builds the `recurrax.nn` layers holding these weights (a
# `StackedRNN`), here with a linear head of 2 outputs applied at every step
# (torch's `linear(lstm(xs)[0])`). The result is an ordinary NNX model:
# `train.fit` fine-tunes it like any other; `nnx.jit` compiles a call of it.

# %%
head = {"weight": rng.normal(size=(2, 16)).astype(np.float32) / 4, "bias": np.zeros(2, np.float32)}
model = recurrax.interop.to_nnx(state, mode="LSTM", batch_first=True, head=head, rngs=nnx.Rngs(0))
forward = nnx.jit(lambda model, xs, lengths: model(xs, lengths=lengths))
ys = forward(model, xs, lengths)  # [B, T, 2]
same = bool(jnp.allclose(ys, output @ head["weight"].T + head["bias"], atol=1e-5))
print(type(model).__name__, ys.shape, "equals the TorchRNN's output through the head:", same)

# %%
inputs = rng.normal(size=(64, 6, 3)).astype(np.float32)
targets = np.stack([np.cumsum(inputs[..., 0], axis=1), np.cumsum(inputs[..., 1], axis=1)], axis=-1) / 3
history = train.fit(
    model, optax.adam(1e-2), {"inputs": inputs, "targets": targets}, loss="mse", epochs=5, batch_size=16, progress=False
)
print("training loss by epoch:", [round(row["loss"], 4) for row in history.to_dict()["epochs"]])
display(Image(filename=train.plot_history(history, "fine_tuning.png")))

# %% [markdown]
# ## With PyTorch
#
# `from_torch` reads a live module; its result equals torch's forward pass,
# here with variable lengths (torch: `pack_padded_sequence`, then
# `pad_packed_sequence`).

# %% tags=["torch"]
if HAVE_TORCH:
    import torch

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 8, num_layers=2, bidirectional=True, batch_first=True)
    linear = torch.nn.Linear(16, 2)
    rnn = recurrax.interop.from_torch(lstm)

    x = torch.tensor(np.asarray(xs))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.tensor(np.asarray(lengths)), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        out, (h, c) = lstm(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=6)
    output, (h_n, c_n) = apply(rnn, xs, lengths)
    for name, ours, theirs in [("output", output, out), ("h_n", h_n, h), ("c_n", c_n, c)]:
        print(f"{name}: equals torch to 1e-5:", np.allclose(np.asarray(ours), theirs.numpy(), atol=1e-5))
else:
    print(SKIPPED)

# %% [markdown]
# The `.npz` route gives the same weights bit for bit, `to_nnx` takes the
# torch module and its `nn.Linear` head directly, and weights trained in JAX
# go back into the torch module with `to_torch`.

# %% tags=["torch"]
if HAVE_TORCH:
    np.savez("torch_lstm.npz", **{name: t.numpy() for name, t in lstm.state_dict().items()})
    from_npz = recurrax.interop.from_torch_state_dict(dict(np.load("torch_lstm.npz")), mode="LSTM", batch_first=True)
    pairs = zip(jax.tree.leaves(from_npz), jax.tree.leaves(rnn), strict=True)
    print("the .npz route is bit-identical:", all(np.array_equal(a, b) for a, b in pairs))

    model = recurrax.interop.to_nnx(lstm, head=linear, rngs=nnx.Rngs(0))
    with torch.no_grad():
        expected = linear(out).numpy()
    ours = np.asarray(forward(model, xs, lengths))
    print("to_nnx with the head equals torch:", np.allclose(ours, expected, atol=1e-5))

    # A TorchRNN is a pytree: one gradient step in JAX, then the weights go back into the torch module.
    grads = jax.jit(jax.grad(lambda r: jnp.mean(apply(r, xs, lengths)[0] ** 2)))(rnn)
    trained = jax.tree.map(lambda p, g: p - 0.1 * g, rnn, grads)
    recurrax.interop.to_torch(trained, lstm)
    with torch.no_grad():
        out_after, _ = lstm(x)
    ours = np.asarray(apply(trained, xs)[0])
    print("torch now computes the trained weights:", np.allclose(out_after.numpy(), ours, atol=1e-5))
else:
    print(SKIPPED)
