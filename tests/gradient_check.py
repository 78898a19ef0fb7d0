"""Gradients against finite differences, from one compiled program."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.test_util import check_vjp


def check_gradients(value_and_grad: Callable[..., tuple[jax.Array, Any]], args: tuple[Any, ...], **tolerances) -> None:
    """``jax.test_util.check_grads(loss, args, order=1, modes=["rev"])``, given ``jit(value_and_grad(loss))``.

    ``check_vjp`` compares, in a random direction, the gradient with central
    differences of the loss's values; both come from the one compiled
    ``value_and_grad`` (``argnums`` covering ``args``). Given ``loss`` itself,
    ``check_grads`` compiles three programs (the loss, its forward pass with
    residuals, its backward pass); eagerly, every op and every call compiles.
    """

    def value(*args: Any) -> jax.Array:
        return value_and_grad(*args)[0]

    def vjp(*args: Any) -> tuple[jax.Array, Callable[[Any], Any]]:
        out, grads = value_and_grad(*args)
        # The loss is a real scalar: its vjp scales the gradient by the cotangent.
        return out, lambda cotangent: jax.tree.map(lambda g: np.asarray(g) * cotangent, grads)

    check_vjp(value, vjp, args, **tolerances)
