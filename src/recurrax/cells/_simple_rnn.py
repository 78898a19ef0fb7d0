"""The Elman recurrent network (Elman, 1990)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Internals
from recurrax._projected_cell import ProjectedStepCell
from recurrax._types import Array, GateBlocksOrthogonal, Initializer, Params, default_bias_init, default_kernel_init

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimpleRNNCell(ProjectedStepCell):
    """Elman RNN cell: ``h' = act(x W_x + h W_h + b)``, ``act`` tanh or relu.

    The plain recurrent network whose gradients vanish (or explode) through
    time; kept as the baseline that the gated cells improve on. Parameters:
    ``input_kernel[D, H]``, ``recurrent_kernel[H, H]``, ``bias[H]``. Recorded
    internals (``scan(..., record=True)``): the pre-activation
    ``pre = x W_x + h W_h + b`` ``[*B, H]`` (the output is ``act(pre)``).

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

    def projected_update(self, params: Params, carry: Array, projected_x: Array) -> tuple[Array, Array, Internals]:
        dt = projected_x.dtype
        z = projected_x + jnp.matmul(carry.astype(dt), params["recurrent_kernel"].astype(dt))
        h = _ACTIVATIONS[self.activation](z)
        return h.astype(carry.dtype), h, {"pre": z}

    def recurrent_state(self, carry: Array) -> Array:
        return carry
