"""Independently recurrent neural network (Li et al., 2018): one recurrent weight per unit."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Internals
from recurrax._projected_cell import ProjectedStepCell
from recurrax._types import Array, Initializer, Params, default_bias_init, default_kernel_init

_ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


@dataclasses.dataclass(frozen=True, kw_only=True)
class IndRNNCell(ProjectedStepCell):
    """IndRNN cell (Li et al., 2018): ``h' = act(x W + u ⊙ h + b)`` with a recurrent *vector* ``u``.

    Each unit sees only its own past, so ``∂h_T/∂h_t = Π u ⊙ act'`` per unit:
    the gradient through time neither mixes units nor needs a matrix power,
    and bounding ``|u|`` bounds it. The paper's constraint, for sequences of
    ``T`` steps with ReLU: ``|u| ≤ γ^{1/T}`` keeps the gradient from growing
    beyond ``γ`` (``γ = 2``: ``recurrent_max_abs = 2 ** (1 / T)``), and
    ``|u| ≥ ε^{1/T}`` keeps a unit's memory from vanishing faster than ``ε``.
    The constraint is applied where ``u`` is used,
    ``u_c = sign(u) · clip(|u|, recurrent_min_abs, recurrent_max_abs)``,
    so the stored weight may leave the range but the recurrence never does
    (and its gradient is zero while it is outside, as a clip's is).

    Parameters: ``input_kernel[D, H]``, ``recurrent_kernel[H]`` (``u``),
    ``bias[H]``. The carry is ``h[*B, H]``. Recorded internals
    (``scan(..., record=True)``): the pre-activation ``pre = x W + u_c ⊙ h + b``
    ``[*B, H]``.

    Attributes:
      hidden_size: ``H``.
      activation: ``"relu"`` (the paper's) or ``"tanh"``.
      recurrent_max_abs: the upper bound on ``|u|`` (None: no bound).
      recurrent_min_abs: the lower bound on ``|u|`` (None: no bound); zeros stay zero.
      kernel_init, bias_init: initialisers of the input kernel and the bias.
      recurrent_init: initialiser of ``u``; default uniform in
        ``[0, recurrent_max_abs]`` (``[0, 1]`` without a bound), as the paper.
      dtype, param_dtype, carry_dtype: compute, storage and state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> T = 100
      >>> cell = recurrax.indrnn(16, recurrent_max_abs=2 ** (1 / T))
      >>> params = cell.init(jax.random.key(0), in_features=2)
      >>> ys, h = recurrax.scan(cell, params, jnp.ones((4, T, 2)))
      >>> ys.shape, bool(jnp.all(jnp.abs(cell.recurrent_weight(params)) <= 2 ** (1 / T)))
      ((4, 100, 16), True)

    References:
      Li, Li, Cook, Zhu, Gao (2018), "Independently Recurrent Neural Network
      (IndRNN): Building A Longer and Deeper RNN", CVPR.
    """

    activation: Literal["relu", "tanh"] = "relu"
    recurrent_max_abs: float | None = None
    recurrent_min_abs: float | None = None
    kernel_init: Initializer = default_kernel_init
    recurrent_init: Initializer | None = None
    bias_init: Initializer = default_bias_init

    supports_input_projection: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        for name in ("recurrent_max_abs", "recurrent_min_abs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise ValueError(f"{name} must be None or a number >= 0, got {value!r}")
        low, high = self.recurrent_min_abs, self.recurrent_max_abs
        if low is not None and high is not None and low > high:
            raise ValueError(f"recurrent_min_abs ({low}) must not exceed recurrent_max_abs ({high})")

    def init(self, key: Array, in_features: int) -> Params:
        H, dt = self.hidden_size, self.param_dtype
        k_in, k_rec, k_b = jax.random.split(key, 3)
        if self.recurrent_init is not None:
            recurrent = self.recurrent_init(k_rec, (H,), dt)
        else:
            high = 1.0 if self.recurrent_max_abs is None else self.recurrent_max_abs
            recurrent = jax.random.uniform(k_rec, (H,), dt, 0.0, high)
        return {
            "input_kernel": self.kernel_init(k_in, (in_features, H), dt),
            "recurrent_kernel": recurrent,
            "bias": self.bias_init(k_b, (H,), dt),
        }

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Array:
        return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

    def recurrent_weight(self, params: Params) -> Array:
        """``u`` with the constraint applied, ``[H]``: what the recurrence multiplies ``h`` by."""
        u: Array = params["recurrent_kernel"]
        if self.recurrent_min_abs is None and self.recurrent_max_abs is None:
            return u
        magnitude = jnp.clip(jnp.abs(u), self.recurrent_min_abs, self.recurrent_max_abs)
        return jnp.sign(u) * magnitude

    def project_inputs(self, params: Params, xs: Array) -> Array:
        return self._affine_projection(xs, params["input_kernel"], params["bias"])

    def projected_update(self, params: Params, carry: Array, projected_x: Array) -> tuple[Array, Array, Internals]:
        dt = projected_x.dtype
        pre = projected_x + self.recurrent_weight(params).astype(dt) * carry.astype(dt)
        h = _ACTIVATIONS[self.activation](pre)
        return h.astype(carry.dtype), h, {"pre": pre}

    def recurrent_state(self, carry: Array) -> Array:
        return carry
