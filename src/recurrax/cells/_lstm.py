"""Long short-term memory (Hochreiter & Schmidhuber, 1997), with its common variants."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

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

_LAYER_NORM_EPS = 1e-5


class LSTMCarry(NamedTuple):
    """LSTM state: ``h[*B, P]`` (``P`` = ``proj_size`` or ``H``) and ``c[*B, H]``."""

    h: Array
    c: Array


def layer_norm(x: Array, scale: Array, bias: Array | None = None, eps: float = _LAYER_NORM_EPS) -> Array:
    """Normalises the last axis of ``x`` (statistics in at least float32)."""
    stats_dtype = jnp.float32 if jnp.finfo(x.dtype).bits < 32 else x.dtype
    xf = x.astype(stats_dtype)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    y = ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype) * scale.astype(x.dtype)
    return y if bias is None else y + bias.astype(x.dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSTM(Cell):
    """LSTM cell with PyTorch's gate order (input, forget, cell, output).

    Math, for one step (``⊙`` elementwise, ``σ`` the logistic sigmoid)::

        i, f, g, o = split(x W_x + h W_h + b)            # [*, 4H]
        i, f, o    = σ(i + p_i⊙c), σ(f + p_f⊙c), σ(o + p_o⊙c')   # p_*: peepholes
        c' = f ⊙ c + i ⊙ tanh(g)
        h' = (o ⊙ tanh(c')) W_r                          # W_r only with proj_size

    With ``layer_norm`` (Ba et al., 2016) ``x W_x`` and ``h W_h`` are each
    layer-normalised with learned gains, and ``c'`` before its ``tanh``.
    Peepholes follow Gers & Schmidhuber (2000); the output projection is the
    LSTMP of Sak et al. (2014), as PyTorch's ``proj_size``.
    """

    peephole: bool = False
    layer_norm: bool = False
    proj_size: int | None = None
    forget_bias: float = 1.0
    chrono_max_timescale: float | None = None
    kernel_init: Initializer = default_kernel_init
    recurrent_init: Initializer = GateBlocksOrthogonal(4)
    bias_init: Initializer = default_bias_init

    supports_input_projection: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.proj_size is not None and (
            not isinstance(self.proj_size, int) or not 0 < self.proj_size < self.hidden_size
        ):
            raise ValueError(f"proj_size must be an int in (0, hidden_size={self.hidden_size}), got {self.proj_size!r}")

    @property
    def output_size(self) -> int:
        return self.proj_size if self.proj_size is not None else self.hidden_size

    def init(self, key: Array, input_size: int) -> Params:
        H, P, dt = self.hidden_size, self.output_size, self.param_dtype
        k_in, k_rec, k_bias, k_proj, k_peep, k_chrono = jax.random.split(key, 6)
        bias = self.bias_init(k_bias, (4 * H,), dt)
        if self.chrono_max_timescale is not None:
            forget = chrono_bias(k_chrono, H, self.chrono_max_timescale, dt)
            bias = bias.at[H : 2 * H].set(forget).at[:H].set(-forget)
        else:
            bias = bias.at[H : 2 * H].add(jnp.asarray(self.forget_bias, dt))
        params = {
            "input_kernel": self.kernel_init(k_in, (input_size, 4 * H), dt),
            "recurrent_kernel": self.recurrent_init(k_rec, (P, 4 * H), dt),
            "bias": bias,
        }
        if self.peephole:
            # Small random peepholes rather than zeros: zeros would hide a missing term.
            params["peephole"] = jax.random.uniform(k_peep, (3, H), dt, -0.1, 0.1)
        if self.layer_norm:
            params["input_norm_scale"] = jnp.ones((4 * H,), dt)
            params["recurrent_norm_scale"] = jnp.ones((4 * H,), dt)
            params["cell_norm_scale"] = jnp.ones((H,), dt)
            params["cell_norm_bias"] = jnp.zeros((H,), dt)
        if self.proj_size is not None:
            params["projection_kernel"] = self.kernel_init(k_proj, (H, P), dt)
        return params

    def input_size(self, params: Params) -> int:
        return int(params["input_kernel"].shape[0])

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> LSTMCarry:
        dt = self.state_dtype(dtype)
        return LSTMCarry(
            h=jnp.zeros((*batch_shape, self.output_size), dt),
            c=jnp.zeros((*batch_shape, self.hidden_size), dt),
        )

    def project_inputs(self, params: Params, xs: Array) -> Array:
        dt = self.compute_dtype(xs, params["input_kernel"])
        z = jnp.matmul(xs.astype(dt), params["input_kernel"].astype(dt))
        if self.layer_norm:
            z = layer_norm(z, params["input_norm_scale"])
        return z + params["bias"].astype(dt)

    def step_projected(self, params: Params, carry: LSTMCarry, projected_x: Array) -> tuple[LSTMCarry, Array]:
        H = self.hidden_size
        dt = projected_x.dtype
        state_dt = carry.c.dtype
        recurrent = jnp.matmul(carry.h.astype(dt), params["recurrent_kernel"].astype(dt))
        if self.layer_norm:
            recurrent = layer_norm(recurrent, params["recurrent_norm_scale"])
        z = projected_x + recurrent
        zi, zf, zg, zo = (z[..., k * H : (k + 1) * H] for k in range(4))
        c_prev = carry.c
        if self.peephole:
            peep = params["peephole"].astype(state_dt)
            zi = zi.astype(state_dt) + peep[0] * c_prev
            zf = zf.astype(state_dt) + peep[1] * c_prev
        i = jax.nn.sigmoid(zi).astype(state_dt)
        f = jax.nn.sigmoid(zf).astype(state_dt)
        g = jnp.tanh(zg).astype(state_dt)
        c = f * c_prev + i * g
        if self.peephole:
            zo = zo.astype(state_dt) + params["peephole"][2].astype(state_dt) * c
        o = jax.nn.sigmoid(zo).astype(state_dt)
        c_out = layer_norm(c, params["cell_norm_scale"], params["cell_norm_bias"]) if self.layer_norm else c
        h = o * jnp.tanh(c_out)
        if self.proj_size is not None:
            h = jnp.matmul(h.astype(dt), params["projection_kernel"].astype(dt)).astype(state_dt)
        return LSTMCarry(h=h, c=c), h.astype(dt)

    def step(self, params: Params, carry: LSTMCarry, x: Array) -> tuple[LSTMCarry, Array]:
        return self.step_projected(params, carry, self.project_inputs(params, x))


def lstm(
    hidden_size: int,
    *,
    peephole: bool = False,
    layer_norm: bool = False,
    proj_size: int | None = None,
    forget_bias: float = 1.0,
    chrono_max_timescale: float | None = None,
    kernel_init: Initializer = default_kernel_init,
    recurrent_init: Initializer | None = None,
    bias_init: Initializer = default_bias_init,
    dtype: DTypeLike | None = None,
    param_dtype: DTypeLike = jnp.float32,
    carry_dtype: DTypeLike | None = None,
) -> LSTM:
    """An LSTM cell (see :class:`LSTM` for the math).

    Args:
      hidden_size: ``H``, units of the cell state.
      peephole: add the cell state to the gates (Gers & Schmidhuber, 2000).
      layer_norm: layer-normalised gates and cell (Ba et al., 2016).
      proj_size: project ``h`` to ``P < H`` features (LSTMP, PyTorch's ``proj_size``).
      forget_bias: added to the forget gate's bias at init (Jozefowicz et al., 2015).
      chrono_max_timescale: chrono init of forget/input biases (Tallec & Ollivier,
        2018); overrides ``forget_bias``. Use about the longest dependency length.
      kernel_init, recurrent_init, bias_init: initialisers; the recurrent kernel
        defaults to an orthogonal matrix per gate.
      dtype, param_dtype, carry_dtype: compute, storage and state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> ys, carry = recurrax.scan(cell, params, jnp.ones((2, 5, 3)))
      >>> ys.shape, carry.h.shape
      ((2, 5, 8), (2, 8))
    """
    return LSTM(
        hidden_size=hidden_size,
        peephole=peephole,
        layer_norm=layer_norm,
        proj_size=proj_size,
        forget_bias=forget_bias,
        chrono_max_timescale=chrono_max_timescale,
        kernel_init=kernel_init,
        recurrent_init=recurrent_init or GateBlocksOrthogonal(4),
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=param_dtype,
        carry_dtype=carry_dtype,
    )
