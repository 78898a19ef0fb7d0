"""Tiny models and synthetic data shared by the recurrax.train tests (shared shapes = shared compiles)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from recurrax import nn

B, T, D, H = 4, 6, 2, 8
N = 12  # examples: 3 batches of B
# One optimizer object for the files that import it: a train step is compiled per optimizer object, so
# trainers of the same model and loss share one compile (within a test process).
ADAM = optax.adam(0.02)


class Regressor(nnx.Module):
    """SimpleRNN (or another layer) → dropout → linear head on each example's last valid output."""

    def __init__(self, rngs: nnx.Rngs, *, layer=nn.SimpleRNN, hidden: int = H, dropout: float = 0.0, out: int = 1):
        self.rnn = layer(D, hidden, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.head = nnx.Linear(hidden, out, rngs=rngs)

    def __call__(self, xs, lengths=None):
        ys = self.rnn(xs, lengths=lengths)
        last = ys[:, -1] if lengths is None else jnp.take_along_axis(ys, (lengths - 1)[:, None, None], axis=1)[:, 0]
        return self.head(self.drop(last))


class Streaming(nnx.Module):
    """A streaming model: per-step predictions, takes and returns the carry."""

    def __init__(self, rngs: nnx.Rngs, *, layer=nn.LSTM):
        self.rnn = layer(D, H, rngs=rngs, return_carry=True)
        self.head = nnx.Linear(H, 1, rngs=rngs)

    def __call__(self, xs, initial_carry=None, lengths=None):
        ys, carry = self.rnn(xs, initial_carry=initial_carry, lengths=lengths)
        return self.head(ys), carry


def regression_data(n: int = N, seed: int = 0, *, lengths: bool = False) -> dict[str, np.ndarray]:
    """Target: the sum of the first feature over each example's valid steps."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, T, D)).astype(np.float32)
    data = {"inputs": xs}
    if lengths:
        lens = rng.integers(2, T + 1, size=n).astype(np.int32)
        mask = np.arange(T)[None, :] < lens[:, None]
        data["lengths"] = lens
        data["targets"] = (xs[..., 0] * mask).sum(1, keepdims=True).astype(np.float32)
    else:
        data["targets"] = xs[..., 0].sum(1, keepdims=True).astype(np.float32)
    return data


def classification_data(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    """Two classes: the sign of the summed first feature."""
    data = regression_data(n, seed)
    data["targets"] = (data["targets"][:, 0] > 0).astype(np.int32)
    return data


def streaming_data(n: int = N, seed: int = 0, *, lengths: bool = False) -> dict[str, np.ndarray]:
    """Per-step targets: the running sum of the first feature."""
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, T, D)).astype(np.float32)
    data = {"inputs": xs, "targets": np.cumsum(xs[..., :1], axis=1).astype(np.float32)}
    if lengths:
        data["lengths"] = rng.integers(1, T + 1, size=n).astype(np.int32)
    return data


def leaves_equal(a, b) -> bool:
    """Bit-identical pytrees (keys compared by their raw data)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb, strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        if not np.array_equal(np.asarray(x), np.asarray(y)):
            return False
    return True
