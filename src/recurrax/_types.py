"""Names for the shapes of things, and the initialisers that matter for recurrent networks.

Part of the ground floor: cells, convolutions and attention all import it, and
it imports none of them.

Every initialiser follows the ``jax.nn.initializers`` signature
``init(key, shape, dtype) -> Array``, so they can be swapped for any of JAX's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

Array = jax.Array
Params = Any  # a pytree (usually a dict) of arrays
Carry = Any  # a pytree of arrays with leading batch dims ``*B``
Initializer = Callable[[Array, tuple[int, ...], DTypeLike], Array]
# A pytree's structure. jaxlib 0.10 ships no type stubs for its C++ PyTreeDef,
# so mypy can neither compare two of them nor call their methods: the flatten
# helpers below hand it on as Any.
TreeDef = Any


def tree_flatten(tree: Any) -> tuple[list[Any], TreeDef]:
    """``jax.tree.flatten(tree)``, its treedef typed :data:`TreeDef`."""
    return jax.tree.flatten(tree)


def tree_structure(tree: Any) -> TreeDef:
    """``jax.tree.structure(tree)``, typed :data:`TreeDef`."""
    return jax.tree.structure(tree)


default_kernel_init: Initializer = jax.nn.initializers.glorot_uniform()
default_bias_init: Initializer = jax.nn.initializers.zeros
# U(-1/√fan_in, 1/√fan_in) for a kernel [fan_in, out]: PyTorch's nn.Linear weight (kaiming_uniform
# with a=√5), which is what papers whose reference code is PyTorch trained with. Variance 1/(3·fan_in).
fan_in_uniform: Initializer = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def fan_in_uniform_bias(key: jax.Array, shape: tuple[int, ...], fan_in: int, dtype: DTypeLike) -> jax.Array:
    """``U(-1/√fan_in, 1/√fan_in)``: PyTorch's ``nn.Linear`` bias, whose range is set by the kernel's fan-in."""
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


@dataclasses.dataclass(frozen=True)
class GateBlocksOrthogonal:
    """Orthogonal init applied to each gate's ``[H, H]`` block of a ``[H, G·H]`` kernel.

    Saxe et al. (2014): an orthogonal recurrent matrix preserves the norm of the
    state (and of the back-propagated gradient) through time. Initialising the
    fused ``[H, G·H]`` matrix as one orthogonal matrix would only make its rows
    orthonormal; each gate's own map should be norm-preserving. A dataclass
    (not a closure) so that equal cells compare equal and jit does not retrace.
    """

    num_gates: int
    scale: float = 1.0

    def __call__(self, key: jax.Array, shape: tuple[int, ...], dtype: DTypeLike = jnp.float32) -> jax.Array:
        rows, cols = shape
        if cols % self.num_gates:
            raise ValueError(f"recurrent kernel shape {shape} is not {self.num_gates} gate blocks")
        width = cols // self.num_gates
        orthogonal = jax.nn.initializers.orthogonal(self.scale)
        keys = jax.random.split(key, self.num_gates)
        # QR has no bf16/f16 kernel: draw in at least float32, then cast.
        draw_dtype = jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype
        blocks = [orthogonal(k, (rows, width), draw_dtype) for k in keys]
        return jnp.concatenate(blocks, axis=1).astype(dtype)


def chrono_bias(key: jax.Array, hidden_size: int, max_timescale: float, dtype: DTypeLike) -> jax.Array:
    """Chrono initialisation (Tallec & Ollivier, 2018) of a "keep" gate's bias.

    Returns ``log(u)`` with ``u ~ Uniform(1, max_timescale - 1)``: the gate then
    keeps its memory for characteristic times spread up to ``max_timescale``
    steps. For an LSTM the forget bias is this and the input bias its negation.
    """
    if max_timescale <= 2:
        raise ValueError(f"chrono max_timescale must be > 2 (in time steps), got {max_timescale}")
    u = jax.random.uniform(key, (hidden_size,), jnp.float32, 1.0, max_timescale - 1.0)
    return jnp.log(u).astype(dtype)
