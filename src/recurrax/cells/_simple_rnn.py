"""The Elman recurrent network (Elman, 1990)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Internals
from recurrax._types import Array, GateBlocksOrthogonal, Initializer, Params, default_bias_init, default_kernel_init
from recurrax.cells._matmul_gated import MatmulGatedCell
from recurrax.cells._pallas_gated import Parts

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimpleRNNCell(MatmulGatedCell):
    """Elman RNN cell: ``h' = act(x W_x + h W_h + b)``, ``act`` tanh or relu.

    The plain recurrent network whose gradients vanish (or explode) through
    time; kept as the baseline that the gated cells improve on. Parameters:
    ``input_kernel[D, H]``, ``recurrent_kernel[H, H]``, ``bias[H]``. Recorded
    internals (``scan(..., record=True)``): the pre-activation
    ``pre = x W_x + h W_h + b`` ``[*B, H]`` (the output is ``act(pre)``).
    A :class:`~recurrax.cells.MatmulGatedCell` with one gate: with
    ``kernel="pallas"`` (float32) one Pallas kernel runs the whole sequence.

    Attributes:
      hidden_size: ``H``.
      activation: ``"tanh"`` or ``"relu"``.
      kernel_init, recurrent_init, bias_init: initialisers (the recurrent kernel orthogonal).
      dtype, param_dtype, carry_dtype: compute, storage and state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.simple_rnn(4, activation="relu")
      >>> params = cell.init(jax.random.key(0), in_features=2)
      >>> recurrax.scan(cell, params, jnp.ones((6, 2)))[0].shape
      (6, 4)
    """

    activation: Literal["tanh", "relu"] = "tanh"
    kernel_init: Initializer = default_kernel_init
    recurrent_init: Initializer = GateBlocksOrthogonal(1)
    bias_init: Initializer = default_bias_init

    supports_input_projection: ClassVar[bool] = True
    num_gates: ClassVar[int] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")

    def init(self, key: Array, in_features: int) -> Params:
        H, dt = self.hidden_size, self.param_dtype
        k_in, k_rec, k_b = jax.random.split(key, 3)
        return {
            "input_kernel": self.kernel_init(k_in, (in_features, H), dt),
            "recurrent_kernel": self.recurrent_init(k_rec, (H, H), dt),
            "bias": self.bias_init(k_b, (H,), dt),
        }

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Array:
        return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

    def project_inputs(self, params: Params, xs: Array) -> Array:
        return self._affine_projection(xs, params["input_kernel"], params["bias"])

    def gate_update(self, gx: Parts, hh: Parts, state: Parts, units: Parts) -> tuple[Parts, Internals]:
        z = gx[0] + hh[0]
        return (_ACTIVATIONS[self.activation](z).astype(state[0].dtype),), {"pre": z}

    def recurrent_state(self, carry: Array) -> Array:
        return carry
