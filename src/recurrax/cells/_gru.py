"""Gated recurrent unit (Cho et al., 2014), in both of its formulations."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax.cells._base import Array, Cell, Params
from recurrax.cells._initializers import (
    GateBlocksOrthogonal,
    Initializer,
    chrono_bias,
    default_bias_init,
    default_kernel_init,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GRU(Cell):
    """GRU cell with PyTorch's gate order (reset, update, new).

    Math, for one step::

        r = σ(x W_xr + b_xr + h W_hr + b_hr)
        z = σ(x W_xz + b_xz + h W_hz + b_hz)
        n = tanh(x W_xn + b_xn + r ⊙ (h W_hn + b_hn))      # reset_after=True
        n = tanh(x W_xn + b_xn + (r ⊙ h) W_hn + b_hn)      # reset_after=False
        h' = (1 - z) ⊙ n + z ⊙ h

    ``reset_after=True`` is the formulation of PyTorch, Keras and cuDNN;
    ``reset_after=False`` is Cho et al. (2014). Both keep the recurrent bias
    ``b_h`` separate from the input bias ``b_x`` because ``b_hn`` sits inside
    the reset gate's product (Flax's ``GRUCell`` drops it).
    """

    reset_after: bool = True
    chrono_max_timescale: float | None = None
    kernel_init: Initializer = default_kernel_init
    recurrent_init: Initializer = GateBlocksOrthogonal(3)
    bias_init: Initializer = default_bias_init

    supports_input_projection: ClassVar[bool] = True

    def init(self, key: Array, input_size: int) -> Params:
        H, dt = self.hidden_size, self.param_dtype
        k_in, k_rec, k_bi, k_bh, k_chrono = jax.random.split(key, 5)
        input_bias = self.bias_init(k_bi, (3 * H,), dt)
        if self.chrono_max_timescale is not None:
            # z is the gate that keeps h, so it plays the LSTM forget gate's role.
            input_bias = input_bias.at[H : 2 * H].set(chrono_bias(k_chrono, H, self.chrono_max_timescale, dt))
        return {
            "input_kernel": self.kernel_init(k_in, (input_size, 3 * H), dt),
            "recurrent_kernel": self.recurrent_init(k_rec, (H, 3 * H), dt),
            "input_bias": input_bias,
            "recurrent_bias": self.bias_init(k_bh, (3 * H,), dt),
        }

    def input_size(self, params: Params) -> int:
        return int(params["input_kernel"].shape[0])

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Array:
        return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

    def project_inputs(self, params: Params, xs: Array) -> Array:
        return self._affine_projection(xs, params["input_kernel"], params["input_bias"])

    def step_projected(self, params: Params, carry: Array, projected_x: Array) -> tuple[Array, Array]:
        H = self.hidden_size
        dt = projected_x.dtype
        w_h = params["recurrent_kernel"].astype(dt)
        b_h = params["recurrent_bias"].astype(dt)
        h_prev = carry.astype(dt)
        xr, xz, xn = (projected_x[..., k * H : (k + 1) * H] for k in range(3))
        if self.reset_after:
            hh = jnp.matmul(h_prev, w_h) + b_h
            r = jax.nn.sigmoid(xr + hh[..., :H])
            z = jax.nn.sigmoid(xz + hh[..., H : 2 * H])
            n = jnp.tanh(xn + r * hh[..., 2 * H :])
        else:
            hh = jnp.matmul(h_prev, w_h[:, : 2 * H]) + b_h[: 2 * H]
            r = jax.nn.sigmoid(xr + hh[..., :H])
            z = jax.nn.sigmoid(xz + hh[..., H:])
            n = jnp.tanh(xn + jnp.matmul(r * h_prev, w_h[:, 2 * H :]) + b_h[2 * H :])
        state_dt = carry.dtype
        z = z.astype(state_dt)
        h = (1 - z) * n.astype(state_dt) + z * carry
        return h, h.astype(dt)

    def step(self, params: Params, carry: Array, x: Array) -> tuple[Array, Array]:
        return self.step_projected(params, carry, self.project_inputs(params, x))


def gru(
    hidden_size: int,
    *,
    reset_after: bool = True,
    chrono_max_timescale: float | None = None,
    kernel_init: Initializer = default_kernel_init,
    recurrent_init: Initializer | None = None,
    bias_init: Initializer = default_bias_init,
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    carry_dtype: DTypeLike | None = None,
) -> GRU:
    """A GRU cell (see :class:`GRU` for the math).

    Args:
      hidden_size: ``H``.
      reset_after: apply the reset gate after the recurrent matmul (PyTorch,
        Keras, cuDNN; default) or before it (Cho et al., 2014).
      chrono_max_timescale: chrono init of the update gate's bias (Tallec &
        Ollivier, 2018).
      kernel_init, recurrent_init, bias_init: initialisers; the recurrent kernel
        defaults to an orthogonal matrix per gate.
      dtype, param_dtype, carry_dtype: compute, storage and state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.gru(4)
      >>> params = cell.init(jax.random.key(0), input_size=2)
      >>> ys, h = recurrax.scan(cell, params, jnp.ones((3, 7, 2)))
      >>> ys.shape, h.shape
      ((3, 7, 4), (3, 4))
    """
    return GRU(
        hidden_size=hidden_size,
        reset_after=reset_after,
        chrono_max_timescale=chrono_max_timescale,
        kernel_init=kernel_init,
        recurrent_init=recurrent_init or GateBlocksOrthogonal(3),
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=param_dtype,
        carry_dtype=carry_dtype,
    )
