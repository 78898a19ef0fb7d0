"""Ready-made recurrent layers: ``SimpleRNN``, ``LSTM`` and ``GRU`` as :class:`RNN` subclasses.

Each builds the pure cell (``recurrax.simple_rnn`` / ``lstm`` / ``gru``), wraps
it with recurrent dropout and zoneout when asked, and is otherwise an
:class:`RNN` (same call, same options).
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from recurrax.cells._base import Cell
from recurrax.cells._gru import gru
from recurrax.cells._initializers import Initializer, default_bias_init, default_kernel_init
from recurrax.cells._lstm import lstm
from recurrax.cells._regularization import recurrent_dropout as wrap_recurrent_dropout
from recurrax.cells._regularization import zoneout as wrap_zoneout
from recurrax.cells._simple_rnn import simple_rnn
from recurrax.nn._rnn import RNN


def _regularized(cell: Cell, recurrent_dropout: float, zoneout: Any) -> Cell:
    """``zoneout(recurrent_dropout(cell))``, each only when its rate is non-zero."""
    if recurrent_dropout:
        cell = wrap_recurrent_dropout(cell, recurrent_dropout)
    if not (isinstance(zoneout, numbers.Real) and zoneout == 0):
        cell = wrap_zoneout(cell, zoneout)
    return cell


class SimpleRNN(RNN):
    """An Elman RNN layer, ``h' = act(x W_x + h W_h + b)`` (see :func:`recurrax.simple_rnn`).

    Parameters: ``input_kernel[D, H]``, ``recurrent_kernel[H, H]``, ``bias[H]``.

    Args:
      in_features: ``D``.
      hidden_size: ``H``.
      rngs: ``params`` (and ``dropout`` for recurrent dropout / zoneout) streams.
      activation: ``"tanh"`` or ``"relu"``.
      recurrent_dropout: variational dropout rate on ``h_{t-1}`` (:func:`~recurrax.cells.recurrent_dropout`).
      zoneout: zoneout rate (:func:`~recurrax.cells.zoneout`).
      kernel_init, recurrent_init, bias_init, dtype, param_dtype, carry_dtype: as the cell's.
      **options: :class:`RNN` options (``return_carry``, ``reverse``, ``time_major``, ...).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> nn.SimpleRNN(3, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 3))).shape
      (2, 5, 4)
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        rngs: nnx.Rngs,
        activation: Literal["tanh", "relu"] = "tanh",
        recurrent_dropout: float = 0.0,
        zoneout: float | Any = 0.0,
        kernel_init: Initializer = default_kernel_init,
        recurrent_init: Initializer | None = None,
        bias_init: Initializer = default_bias_init,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        carry_dtype: DTypeLike | None = None,
        **options: Any,
    ):
        cell = simple_rnn(
            hidden_size,
            activation=activation,
            kernel_init=kernel_init,
            recurrent_init=recurrent_init,
            bias_init=bias_init,
            dtype=dtype,
            param_dtype=param_dtype,
            carry_dtype=carry_dtype,
        )
        super().__init__(_regularized(cell, recurrent_dropout, zoneout), in_features, rngs=rngs, **options)


class LSTM(RNN):
    """An LSTM layer (see :class:`recurrax.cells.LSTM` for the math and :func:`recurrax.lstm` for the options).

    Parameters: ``input_kernel[D, 4H]``, ``recurrent_kernel[P, 4H]``, ``bias[4H]``
    (gate order i, f, g, o), plus ``peephole[3, H]``; ``input_norm_scale[4H]``,
    ``recurrent_norm_scale[4H]``, ``cell_norm_scale[H]``, ``cell_norm_bias[H]``
    with ``layer_norm``; ``projection_kernel[H, P]`` with ``proj_size=P``.
    The carry is :class:`~recurrax.cells.LSTMCarry` ``(h[*B, P], c[*B, H])``.

    Args:
      in_features: ``D``.
      hidden_size: ``H``.
      rngs: ``params`` (and ``dropout`` for recurrent dropout / zoneout) streams.
      peephole, layer_norm, proj_size, forget_bias, chrono_max_timescale: the cell's variants.
      recurrent_dropout: variational dropout rate on ``h_{t-1}`` (:func:`~recurrax.cells.recurrent_dropout`).
      zoneout: zoneout rate, or ``LSTMCarry(h=..., c=...)`` rates (:func:`~recurrax.cells.zoneout`).
      kernel_init, recurrent_init, bias_init, dtype, param_dtype, carry_dtype: as the cell's.
      **options: :class:`RNN` options (``return_carry``, ``reverse``, ``time_major``, ...).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> layer = nn.LSTM(3, 8, rngs=nnx.Rngs(0), recurrent_dropout=0.25, return_carry=True)
      >>> ys, carry = layer(jnp.ones((2, 5, 3)))
      >>> ys.shape, carry.c.shape
      ((2, 5, 8), (2, 8))
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        rngs: nnx.Rngs,
        peephole: bool = False,
        layer_norm: bool = False,
        proj_size: int | None = None,
        forget_bias: float = 1.0,
        chrono_max_timescale: float | None = None,
        recurrent_dropout: float = 0.0,
        zoneout: float | Any = 0.0,
        kernel_init: Initializer = default_kernel_init,
        recurrent_init: Initializer | None = None,
        bias_init: Initializer = default_bias_init,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        carry_dtype: DTypeLike | None = None,
        **options: Any,
    ):
        cell = lstm(
            hidden_size,
            peephole=peephole,
            layer_norm=layer_norm,
            proj_size=proj_size,
            forget_bias=forget_bias,
            chrono_max_timescale=chrono_max_timescale,
            kernel_init=kernel_init,
            recurrent_init=recurrent_init,
            bias_init=bias_init,
            dtype=dtype,
            param_dtype=param_dtype,
            carry_dtype=carry_dtype,
        )
        super().__init__(_regularized(cell, recurrent_dropout, zoneout), in_features, rngs=rngs, **options)


class GRU(RNN):
    """A GRU layer (see :class:`recurrax.cells.GRU` for the math and :func:`recurrax.gru` for the options).

    Parameters: ``input_kernel[D, 3H]``, ``recurrent_kernel[H, 3H]``,
    ``input_bias[3H]``, ``recurrent_bias[3H]`` (gate order r, z, n).

    Args:
      in_features: ``D``.
      hidden_size: ``H``.
      rngs: ``params`` (and ``dropout`` for recurrent dropout / zoneout) streams.
      reset_after: PyTorch/cuDNN formulation (default) or Cho et al.'s.
      chrono_max_timescale: chrono initialisation of the update gate.
      recurrent_dropout: variational dropout rate on ``h_{t-1}`` (:func:`~recurrax.cells.recurrent_dropout`).
      zoneout: zoneout rate (:func:`~recurrax.cells.zoneout`).
      kernel_init, recurrent_init, bias_init, dtype, param_dtype, carry_dtype: as the cell's.
      **options: :class:`RNN` options (``return_carry``, ``reverse``, ``time_major``, ...).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from recurrax import nn
      >>> nn.GRU(3, 4, rngs=nnx.Rngs(0), zoneout=0.1)(jnp.ones((2, 5, 3))).shape
      (2, 5, 4)
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        rngs: nnx.Rngs,
        reset_after: bool = True,
        chrono_max_timescale: float | None = None,
        recurrent_dropout: float = 0.0,
        zoneout: float | Any = 0.0,
        kernel_init: Initializer = default_kernel_init,
        recurrent_init: Initializer | None = None,
        bias_init: Initializer = default_bias_init,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        carry_dtype: DTypeLike | None = None,
        **options: Any,
    ):
        cell = gru(
            hidden_size,
            reset_after=reset_after,
            chrono_max_timescale=chrono_max_timescale,
            kernel_init=kernel_init,
            recurrent_init=recurrent_init,
            bias_init=bias_init,
            dtype=dtype,
            param_dtype=param_dtype,
            carry_dtype=carry_dtype,
        )
        super().__init__(_regularized(cell, recurrent_dropout, zoneout), in_features, rngs=rngs, **options)
