"""The plain LSTM on cuDNN, through :func:`jax.experimental.rnn.lstm`, with recurrax's parameters and semantics.

cuDNN's LSTM (``CUDNN_LSTM``, double bias) computes the same gates in the same
order as ``LSTMCell`` (input, forget, cell, output: PyTorch's order, which
``jax.experimental.rnn.lstm_ref`` documents). Per call the parameters are
packed into cuDNN's flat weight vector ``[W_ih, W_hh, b_ih, b_hh]`` with
``W_ih = input_kernelᵀ [4H, D]``, ``W_hh = recurrent_kernelᵀ [4H, H]``,
``b_ih = bias`` and ``b_hh = 0`` (recurrax has one bias); gradients flow back
through the packing to the parameters.

Semantics: cuDNN takes per-example ``seq_lengths``, freezes each example's
state at its own end and writes zero outputs past it, as the engine does, so
the valid steps are a prefix and their count is the length. cuDNN has no
episode resets: a call with ``resets`` is declined. ``reverse=True`` is
declined too: the engine hands a whole-sequence path its inputs reversed
within each length, and on an H200 cuDNN's results on those differed from the
step loop (``benchmarks/results/gpu_kernels.json``) while forwards they agreed
to 3e-7. Length 0 (a traced length clamped to 0) is run as length 1 and then
replaced by the initial carry and zero outputs. Matmul precision is JAX's
default (``jax.experimental.rnn`` lets cuDNN use TF32 unless the default
precision is ``"highest"``).

Only the LSTM: ``jax.experimental.rnn`` has no GRU.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from recurrax._cell import Steps
from recurrax._types import Array, Params

#: The cuDNN LSTM call (tests on CPU replace it with ``jax.experimental.rnn.lstm_ref`` behind the same signature).
rnn_lstm: Any = None


def _rnn() -> Any:
    # Imported on first use, like the Pallas kernels: most processes never ask for cuDNN.
    from jax.experimental import rnn

    return rnn


def unavailable() -> str | None:
    """Why cuDNN cannot run here (None: it can): it needs a CUDA GPU and jaxlib's cuDNN RNN bindings."""
    if jax.default_backend() != "gpu":
        return f"cuDNN needs a CUDA GPU (the backend is {jax.default_backend()!r})"
    # jaxlib's gpu_rnn exists everywhere; its functions come with the CUDA plugin.
    if not hasattr(getattr(_rnn(), "gpu_rnn", None), "compute_rnn_workspace_reserve_space_sizes"):
        return "jaxlib has no cuDNN RNN bindings (the jax-cuda12 plugin's gpu_rnn)"
    version = str(getattr(jax.devices()[0].client, "platform_version", "")).lower()
    if "rocm" in version or "hip" in version:
        # MIOpen orders the LSTM gates differently (jax.experimental.rnn.swap_lstm_gates).
        return "a ROCm GPU (MIOpen's gate order differs from cuDNN's)"
    return None


def lstm_unsupported(leaves: list[Array], steps: Steps | None, reverse: bool = False) -> str | None:
    """Why the cuDNN LSTM cannot run a call on these arrays and masks (None: it can)."""
    reason = unavailable()
    if reason is not None:
        return reason
    if reverse:
        # Seen on an H200 (jax 0.11.2, CUDA 13; benchmarks/results/gpu_kernels.json): forwards with lengths
        # cuDNN matched the step loop to 3e-7, on the engine's reversed inputs its outputs were off by 1.5
        # (relative). Until benchmarks/kernel_check.py's direct-call rows locate the fault, never run it.
        return "reverse=True (cuDNN's results differed from the step loop on a GPU; see docs/kernels.md)"
    if any(jnp.dtype(a.dtype) != jnp.dtype(jnp.float32) for a in leaves):
        return "arrays other than float32 (jax.experimental.rnn runs float32)"
    if steps is not None and steps.resets is not None:
        return "resets (cuDNN's LSTM has no episode boundaries inside a sequence)"
    return None


def pack_lstm_weights(params: Params) -> Array:
    """recurrax LSTM parameters → cuDNN's flat weights ``[W_ih, W_hh, b_ih, b_hh]`` (one layer, one direction)."""
    w_x: Array = params["input_kernel"]
    w_h: Array = params["recurrent_kernel"]
    bias: Array = params["bias"]
    return jnp.concatenate([w_x.T.ravel(), w_h.T.ravel(), bias, jnp.zeros_like(bias)])


def lstm_sequence(
    params: Params, h0: Array, c0: Array, xs: Array, valid: Array | None
) -> tuple[Array, tuple[Array, Array]]:
    """The plain LSTM over time-major ``xs[T, B, D]`` on cuDNN: ``(ys[T, B, H], (h, c))``.

    ``valid`` is ``[T, B]``, a prefix of True per example (or None: every step).
    """
    num_steps, batch, features = xs.shape
    hidden = h0.shape[-1]
    if valid is None:
        lengths = jnp.full((batch,), num_steps, jnp.int32)
    else:
        lengths = jnp.sum(valid, axis=0, dtype=jnp.int32)
    ys, h, c = (rnn_lstm or _rnn().lstm)(
        jnp.swapaxes(xs, 0, 1),
        h0[None],
        c0[None],
        pack_lstm_weights(params),
        jnp.maximum(lengths, 1),
        input_size=features,
        hidden_size=hidden,
        num_layers=1,
        dropout=0.0,
        bidirectional=False,
    )
    empty = (lengths == 0)[:, None]
    h, c = jnp.where(empty, h0, h[0]), jnp.where(empty, c0, c[0])
    ys = jnp.swapaxes(ys, 0, 1)
    if valid is not None:
        ys = jnp.where(valid[..., None], ys, jnp.zeros_like(ys))
    return ys, (h, c)
