"""Gated recurrent unit (Cho et al., 2014), in both of its formulations."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Internals, Steps
from recurrax._options import ScanOptions
from recurrax._projected_cell import ProjectedStepCell
from recurrax._types import (
    Array,
    GateBlocksOrthogonal,
    Initializer,
    Params,
    chrono_bias,
    default_bias_init,
    default_kernel_init,
)
from recurrax.cells import _fused, _kernels, _pallas_gated
from recurrax.cells._gru_sequence import gru_gate_update, gru_sequence, gru_update
from recurrax.cells._pallas_gated import gated_sequence


@dataclasses.dataclass(frozen=True, kw_only=True)
class GRUCell(ProjectedStepCell):
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
    the reset gate's product (Flax's ``GRUCell`` drops it). Parameters:
    ``input_kernel[D, 3H]``, ``recurrent_kernel[H, 3H]``, ``input_bias[3H]``,
    ``recurrent_bias[3H]``. The ``reset_after`` GRU in one float dtype runs on a
    fused whole-sequence path (:meth:`sequence`), equal to the step loop: the
    XLA loop, or in float32 a Pallas kernel (``ScanOptions.kernel``, ``docs/kernels.md``).

    Recorded internals (:meth:`recorded_step`, ``scan(..., record=True)``),
    each ``[*B, H]``: the reset gate ``r``, the update gate ``z`` (the share
    of the old ``h`` kept) and the candidate ``n``.

    Attributes:
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
      >>> params = cell.init(jax.random.key(0), in_features=2)
      >>> ys, h = recurrax.scan(cell, params, jnp.ones((3, 7, 2)))
      >>> ys.shape, h.shape
      ((3, 7, 4), (3, 4))
    """

    reset_after: bool = True
    chrono_max_timescale: float | None = None
    kernel_init: Initializer = default_kernel_init
    recurrent_init: Initializer = GateBlocksOrthogonal(3)
    bias_init: Initializer = default_bias_init

    supports_input_projection: ClassVar[bool] = True

    def init(self, key: Array, in_features: int) -> Params:
        H, dt = self.hidden_size, self.param_dtype
        k_in, k_rec, k_bi, k_bh, k_chrono = jax.random.split(key, 5)
        input_bias = self.bias_init(k_bi, (3 * H,), dt)
        if self.chrono_max_timescale is not None:
            # z is the gate that keeps h, so it plays the LSTM forget gate's role.
            input_bias = input_bias.at[H : 2 * H].set(chrono_bias(k_chrono, H, self.chrono_max_timescale, dt))
        return {
            "input_kernel": self.kernel_init(k_in, (in_features, 3 * H), dt),
            "recurrent_kernel": self.recurrent_init(k_rec, (H, 3 * H), dt),
            "input_bias": input_bias,
            "recurrent_bias": self.bias_init(k_bh, (3 * H,), dt),
        }

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Array:
        return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

    def project_inputs(self, params: Params, xs: Array) -> Array:
        return self._affine_projection(xs, params["input_kernel"], params["input_bias"])

    def projected_update(self, params: Params, carry: Array, projected_x: Array) -> tuple[Array, Array, Internals]:
        return self._update(params, carry, carry, projected_x)

    def _update(
        self, params: Params, recurrent_input: Array, keep: Array, projected_x: Array
    ) -> tuple[Array, Array, Internals]:
        """``h' = (1 - z) ⊙ n + z ⊙ keep`` with the matmuls reading ``recurrent_input``; also ``r``, ``z``, ``n``."""
        H = self.hidden_size
        dt = projected_x.dtype
        w_h = params["recurrent_kernel"].astype(dt)
        b_h = params["recurrent_bias"].astype(dt)
        h_read = recurrent_input.astype(dt)
        xr, xz, xn = (projected_x[..., k * H : (k + 1) * H] for k in range(3))
        if self.reset_after:
            hh = jnp.matmul(h_read, w_h) + b_h
            h, r, z, n = gru_update(xr, xz, xn, hh[..., :H], hh[..., H : 2 * H], hh[..., 2 * H :], keep)
        else:
            hh = jnp.matmul(h_read, w_h[:, : 2 * H]) + b_h[: 2 * H]
            r = jax.nn.sigmoid(xr + hh[..., :H])
            n = jnp.tanh((xn + jnp.matmul(r * h_read, w_h[:, 2 * H :]) + b_h[2 * H :]).astype(keep.dtype))
            z = jax.nn.sigmoid((xz + hh[..., H:]).astype(keep.dtype))
            h = (1 - z) * n + z * keep
        return h, h.astype(dt), {"r": r, "z": z, "n": n}

    # --------------------------------------------------------- fused sequence
    def sequence_unsupported(self, params: Params, carry: Array, xs: Array, options: ScanOptions) -> str | None:
        overridden = self.overrides_step(GRUCell)
        if overridden is not None:
            return f"{type(self).__name__} overrides {overridden} (the fused loop computes GRUCell's step)"
        if not self.reset_after:
            return "reset_after=False (the fused loop runs the reset_after GRU)"
        reason = _fused.one_float_dtype(self, params, [carry], xs)
        return reason if reason is not None else _kernels.declined(options, self._kernels(params, carry, xs, options))

    def _kernels(self, params: Params, carry: Array, xs: Array, options: ScanOptions) -> dict[str, _kernels.Check]:
        """The whole-sequence implementations beside the XLA loop, each with its check (``cells/_kernels.py``).

        No cuDNN: ``jax.experimental.rnn`` runs only the LSTM.
        """
        leaves = [xs, *jax.tree.leaves(params), carry]
        return {"pallas": lambda steps: _pallas_gated.unsupported(leaves, options, xs, 3, (carry,))}

    def sequence(
        self, params: Params, carry: Array, xs: Array, steps: Steps, options: ScanOptions
    ) -> tuple[Array, Array]:
        kernel = _kernels.choose_or_raise(self, options, self._kernels(params, carry, xs, options), steps)
        project = lambda x: self.project_inputs(params, x)  # noqa: E731
        if kernel == "xla":
            return gru_sequence(project, params, carry, xs, steps, options, self.hoists(options))
        w_h, b_h = params["recurrent_kernel"], params["recurrent_bias"]
        ys, (h,) = gated_sequence(gru_gate_update, project, w_h, b_h, (carry,), None, xs, steps)
        return ys, h

    # -------------------------------------------------------- recurrent state
    def recurrent_state(self, carry: Array) -> Array:
        return carry

    def step_reading(
        self, params: Params, carry: Array, x: Array, recurrent_input: Array, *, projected: bool = False
    ) -> tuple[Array, Array]:
        # h is used twice: in the matmuls (which read recurrent_input, e.g. a dropped h, as Gal &
        # Ghahramani and Keras do) and in h' = (1 - z) ⊙ n + z ⊙ h, which keeps the carry's own h
        # (dropping it there would drop the memory itself).
        projected_x = x if projected else self.project_inputs(params, x)
        h, y, _ = self._update(params, recurrent_input, carry, projected_x)
        return h, y
