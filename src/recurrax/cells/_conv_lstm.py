"""Convolutional LSTM (Shi et al., 2015): an LSTM whose matmuls are convolutions over space."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Internals
from recurrax._projected_cell import ProjectedStepCell
from recurrax._types import Array, Initializer, Params, default_bias_init
from recurrax._validation import check_positive_int
from recurrax.cells._lstm import LSTMCarry

_SPATIAL_LETTERS = "DHW"  # lax dimension-number letters for up to 3 spatial dims

default_conv_lstm_init: Initializer = jax.nn.initializers.lecun_normal()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConvLSTMCell(ProjectedStepCell):
    """ConvLSTM cell (Shi et al., 2015) for 1D or 2D (or 3D) spatial inputs.

    Math, for one step (``*`` a 'SAME' convolution over space, ``⊙`` elementwise)::

        i, f, g, o = split(W_x * X + W_h * H + b)                     # 4 C_h channels
        i, f, o = σ(i + w_i ⊙ C), σ(f + w_f ⊙ C), σ(o + w_o ⊙ C')    # w_*: peepholes
        C' = f ⊙ C + i ⊙ tanh(g)
        H' = o ⊙ tanh(C')

    ``hidden_size`` is the hidden channels ``C_h``. The scan engine takes one
    feature axis, so a frame ``X[*S, C_in]`` (``S = spatial_shape``) travels
    flattened: inputs are ``[*B, prod(S)·C_in]`` (see :meth:`flatten_inputs`),
    outputs ``[*B, prod(S)·C_h]`` (see :meth:`unflatten_outputs`); the carry
    keeps its spatial shape, ``H, C[*B, *S, C_h]``. Parameters:
    ``input_kernel[*k, C_in, 4C_h]``, ``recurrent_kernel[*k, C_h, 4C_h]``,
    ``bias[4C_h]`` (gate order i, f, g, o, as PyTorch's LSTM) and, with
    ``peephole``, ``peephole[3, *S, C_h]`` (the paper's Hadamard peepholes).
    Recorded internals (``scan(..., record=True)``), each ``[*B, *S, C_h]``:
    the gates ``i``, ``f``, ``o``, the candidate ``g`` and the new cell state ``c``.

    Attributes:
      hidden_size: ``C_h``, channels of the hidden and cell states.
      spatial_shape: the frame's spatial size ``S`` (the convolutions keep it).
      kernel_size: one size for every spatial dim, or one per dim.
      peephole: the paper's Hadamard peepholes from the cell state to the gates.
      forget_bias: added to the forget gate's bias at init.
      kernel_init, recurrent_init, bias_init: initialisers.
      dtype, param_dtype, carry_dtype: compute, storage and state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.conv_lstm(4, spatial_shape=(8, 8), kernel_size=3)
      >>> frames = jnp.ones((2, 5, 8, 8, 3))                        # [B, T, H, W, C_in]
      >>> params = cell.init(jax.random.key(0), in_features=8 * 8 * 3)
      >>> ys, carry = recurrax.scan(cell, params, cell.flatten_inputs(frames))
      >>> cell.unflatten_outputs(ys).shape, carry.h.shape
      ((2, 5, 8, 8, 4), (2, 8, 8, 4))

    References:
      Shi, Chen, Wang, Yeung, Wong, Woo (2015), "Convolutional LSTM Network:
      A Machine Learning Approach for Precipitation Nowcasting".
    """

    spatial_shape: tuple[int, ...]
    kernel_size: int | tuple[int, ...] = 3
    peephole: bool = False
    forget_bias: float = 1.0
    kernel_init: Initializer = default_conv_lstm_init
    recurrent_init: Initializer = default_conv_lstm_init
    bias_init: Initializer = default_bias_init

    supports_input_projection: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        spatial = tuple(self.spatial_shape) if isinstance(self.spatial_shape, (tuple, list)) else None
        if spatial is None or not 1 <= len(spatial) <= 3:
            raise ValueError(f"spatial_shape must be a tuple of 1 to 3 sizes, got {self.spatial_shape!r}")
        for i, s in enumerate(spatial):
            check_positive_int(s, f"spatial_shape[{i}]")
        kernel = (self.kernel_size,) * len(spatial) if isinstance(self.kernel_size, int) else self.kernel_size
        kernel = tuple(kernel) if isinstance(kernel, (tuple, list)) else ()
        if len(kernel) != len(spatial):
            raise ValueError(
                f"kernel_size must be an int or one size per spatial dim ({len(spatial)}), got {self.kernel_size!r}"
            )
        for i, k in enumerate(kernel):
            check_positive_int(k, f"kernel_size[{i}]")
        object.__setattr__(self, "spatial_shape", spatial)
        object.__setattr__(self, "kernel_size", kernel)

    # ------------------------------------------------------------------ shapes
    @property
    def num_positions(self) -> int:
        return math.prod(self.spatial_shape)

    @property
    def output_size(self) -> int:
        return self.num_positions * self.hidden_size

    def flatten_inputs(self, frames: Array) -> Array:
        """``frames[..., *S, C_in]`` → ``[..., prod(S)·C_in]`` (what :func:`recurrax.scan` takes)."""
        n = len(self.spatial_shape)
        if tuple(frames.shape[-n - 1 : -1]) != self.spatial_shape:
            raise ValueError(
                f"frames must end with the spatial shape {self.spatial_shape} and a channel axis, "
                f"got shape {tuple(frames.shape)}"
            )
        return frames.reshape((*frames.shape[: -n - 1], -1))

    def unflatten_outputs(self, ys: Array) -> Array:
        """``ys[..., prod(S)·C_h]`` → ``[..., *S, C_h]``."""
        return ys.reshape((*ys.shape[:-1], *self.spatial_shape, self.hidden_size))

    # ---------------------------------------------------------------- contract
    def init(self, key: Array, in_features: int) -> Params:
        if in_features % self.num_positions:
            raise ValueError(
                f"in_features={in_features} is not prod(spatial_shape)={self.num_positions} times the input channels "
                f"(flatten frames [*S, C_in] with cell.flatten_inputs)"
            )
        C_in, C_h, dt = in_features // self.num_positions, self.hidden_size, self.param_dtype
        k_in, k_rec, k_bias, k_peep = jax.random.split(key, 4)
        bias = self.bias_init(k_bias, (4 * C_h,), dt).at[C_h : 2 * C_h].add(jnp.asarray(self.forget_bias, dt))
        kernel = self.kernel_size
        assert isinstance(kernel, tuple)  # __post_init__ made it one size per spatial dim
        params = {
            "input_kernel": self.kernel_init(k_in, (*kernel, C_in, 4 * C_h), dt),
            "recurrent_kernel": self.recurrent_init(k_rec, (*kernel, C_h, 4 * C_h), dt),
            "bias": bias,
        }
        if self.peephole:
            # Small random peepholes rather than zeros: zeros would hide a missing term.
            params["peephole"] = jax.random.uniform(k_peep, (3, *self.spatial_shape, C_h), dt, -0.1, 0.1)
        return params

    def in_features_of(self, params: Params) -> int:
        return int(params["input_kernel"].shape[-2]) * self.num_positions

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> LSTMCarry:
        zeros = jnp.zeros((*batch_shape, *self.spatial_shape, self.hidden_size), self.state_dtype(dtype))
        return LSTMCarry(h=zeros, c=zeros)

    def _conv(self, frames: Array, kernel: Array) -> Array:
        """'SAME' convolution of ``frames[*B, *S, C]`` with ``kernel[*k, C, G]`` → ``[*B, *S, G]``."""
        n = len(self.spatial_shape)
        letters = _SPATIAL_LETTERS[-n:]
        batch_shape = frames.shape[: -n - 1]
        flat = frames.reshape((-1, *frames.shape[-n - 1 :]))
        out = jax.lax.conv_general_dilated(
            flat,
            kernel,
            window_strides=(1,) * n,
            padding="SAME",
            dimension_numbers=(f"N{letters}C", f"{letters}IO", f"N{letters}C"),
        )
        return out.reshape((*batch_shape, *out.shape[1:]))

    def project_inputs(self, params: Params, xs: Array) -> Array:
        dt = self.compute_dtype(xs, params["input_kernel"])
        frames = xs.reshape((*xs.shape[:-1], *self.spatial_shape, -1)).astype(dt)
        z = self._conv(frames, params["input_kernel"].astype(dt)) + params["bias"].astype(dt)
        projected: Array = z.reshape((*xs.shape[:-1], -1))
        return projected

    def projected_update(
        self, params: Params, carry: LSTMCarry, projected_x: Array
    ) -> tuple[LSTMCarry, Array, Internals]:
        C_h, dt, state_dt = self.hidden_size, projected_x.dtype, carry.c.dtype
        zx = projected_x.reshape((*projected_x.shape[:-1], *self.spatial_shape, 4 * C_h))
        z = zx + self._conv(carry.h.astype(dt), params["recurrent_kernel"].astype(dt))
        zi, zf, zg, zo = (z[..., k * C_h : (k + 1) * C_h].astype(state_dt) for k in range(4))
        c_prev = carry.c
        if self.peephole:
            peep = params["peephole"].astype(state_dt)
            zi, zf = zi + peep[0] * c_prev, zf + peep[1] * c_prev
        f = jax.nn.sigmoid(zf)
        kept = f * c_prev
        i, g = jax.nn.sigmoid(zi), jnp.tanh(zg)
        c = kept + i * g
        if self.peephole:
            zo = zo + params["peephole"][2].astype(state_dt) * c
        o = jax.nn.sigmoid(zo)
        h = o * jnp.tanh(c)
        y = h.astype(dt).reshape((*h.shape[: -len(self.spatial_shape) - 1], -1))
        return LSTMCarry(h=h, c=c), y, {"i": i, "f": f, "g": g, "o": o, "c": c}
