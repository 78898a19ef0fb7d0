"""``apply_precision``: one mixed-precision policy put on every layer of a built NNX model."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from flax import nnx

from recurrax._precision import Precision, precision_policy

M = TypeVar("M", bound=nnx.Module)


def apply_precision(model: M, precision: str | Precision) -> M:
    """Puts ``precision`` on every layer of ``model`` (in place) and returns the model.

    One walk over the module graph, whatever built the model (a
    ``recurrax.models`` classifier, a backbone, a stack, the user's own
    module), so that no constructor has to forward dtype keywords:

    * each module attribute that is a frozen dataclass description (a
      recurrax cell, block, attention or convolution spec) gets the policy's
      ``param_dtype``, compute ``dtype`` and ``carry_dtype`` through
      :meth:`~recurrax.Precision.configure`, nested descriptions included;
    * each module with ``dtype`` and ``param_dtype`` attributes of its own
      (Flax's ``nnx.Linear``, ``nnx.LayerNorm``, ``nnx.Conv``, …) gets the
      compute and parameter dtypes;
    * every real floating ``nnx.Param`` is cast to ``param_dtype`` (the
      master weights the optimizer updates and checkpoints hold).

    Applying the same policy twice changes nothing. The output dtype is the
    Trainer's to apply (``Trainer(..., precision=...)`` casts predictions to it
    before the loss), or ``precision.cast_to_output(model(xs))``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> layer = nn.apply_precision(nn.LSTM(3, 8, rngs=nnx.Rngs(0)), "bf16")
      >>> layer.cell.dtype, layer.params["input_kernel"].dtype, layer(jnp.ones((2, 5, 3))).dtype
      ('bfloat16', dtype('float32'), dtype(bfloat16))
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    policy = precision_policy(precision)
    for _, module in nnx.iter_modules(model):
        for name, value in list(vars(module).items()):
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                configured = policy.configure(value)
                if configured is not value:
                    setattr(module, name, configured)
        if hasattr(module, "dtype") and hasattr(module, "param_dtype"):
            module.dtype = policy.compute_dtype
            module.param_dtype = policy.param_dtype
    nnx.update(model, policy.cast_to_param(nnx.state(model, nnx.Param)))
    return model
