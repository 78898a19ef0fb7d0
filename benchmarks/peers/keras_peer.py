"""Keras 3 on the JAX backend: ``keras.layers.LSTM`` / ``GRU``, called statelessly inside ``jax.jit``.

On a GPU, Keras runs these layers on cuDNN through ``jax.experimental.rnn``;
on CPU, on its generic ``lax.scan`` loop. The reported path is read from the
lowered program.

``stateless_call`` + ``jax.value_and_grad`` is Keras's documented way to write a
JAX training step. Needs ``KERAS_BACKEND=jax`` before Keras is first imported.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from benchmarks.common import Config, Impl, jax_impl


def build(cell: str, mode: str, cfg: Config, xs: np.ndarray, **options: Any) -> list[Impl]:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import jax.numpy as jnp
    import keras

    if keras.backend.backend() != "jax":
        raise ImportError(f"keras runs on the {keras.backend.backend()!r} backend; set KERAS_BACKEND=jax")
    keras.utils.set_random_seed(0)
    layer = (keras.layers.LSTM if cell == "lstm" else keras.layers.GRU)(cfg.H, return_sequences=True)
    layer.build((cfg.B, cfg.T, cfg.D))
    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def forward(p: Any, x: Any) -> Any:
        ys, _ = layer.stateless_call(p, non_trainable, x)
        return ys

    # Keras's JAX backend calls cuDNN (jax.experimental.rnn) on a GPU and falls back to its generic
    # lax.scan loop elsewhere; the lowered program says which one it took.
    lowered = jax.jit(forward).lower(trainable, jnp.asarray(xs)).as_text().lower()
    path = (
        "cuDNN via jax.experimental.rnn" if "cudnn" in lowered else "keras backend.rnn -> lax.scan; generic cell step"
    )
    name = f"keras {type(layer).__name__}"
    return [jax_impl(name, "keras", path, forward, trainable, jnp.asarray(xs), mode)]
