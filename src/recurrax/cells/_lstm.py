"""Long short-term memory (Hochreiter & Schmidhuber, 1997), with its common variants."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Internals, Steps
from recurrax._ops import layer_norm
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
from recurrax.cells import _cudnn, _fused, _kernels, _pallas_gated
from recurrax.cells._lstm_sequence import lstm_gate_update, lstm_sequence, lstm_update
from recurrax.cells._pallas_gated import gated_sequence


class LSTMCarry(NamedTuple):
    """LSTM state: ``h[*B, P]`` (``P`` = ``proj_size`` or ``H``) and ``c[*B, H]``."""

    h: Array
    c: Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSTMCell(ProjectedStepCell):
    """LSTM cell with PyTorch's gate order (input, forget, cell, output).

    Math, for one step (``⊙`` elementwise, ``σ`` the logistic sigmoid)::

        i, f, g, o = split(x W_x + h W_h + b)            # [*, 4H]
        i, f, o    = σ(i + p_i⊙c), σ(f + p_f⊙c), σ(o + p_o⊙c')   # p_*: peepholes
        c' = f ⊙ c + i ⊙ tanh(g)
        h' = (o ⊙ tanh(c')) W_r                          # W_r only with proj_size

    With ``layer_norm`` (Ba et al., 2016) ``x W_x`` and ``h W_h`` are each
    layer-normalised with learned gains, and ``c'`` before its ``tanh``.
    Peepholes follow Gers & Schmidhuber (2000); the output projection is the
    LSTMP of Sak et al. (2014), as PyTorch's ``proj_size``. Parameters:
    ``input_kernel[D, 4H]``, ``recurrent_kernel[P, 4H]``, ``bias[4H]``, plus
    ``peephole[3, H]``; ``input_norm_scale[4H]``, ``recurrent_norm_scale[4H]``,
    ``cell_norm_scale[H]``, ``cell_norm_bias[H]`` with ``layer_norm``;
    ``projection_kernel[H, P]`` with ``proj_size=P``. The carry is
    :class:`LSTMCarry`. The plain LSTM (no peepholes, layer norm or
    projection) in one float dtype runs on a fused whole-sequence path
    (:meth:`sequence`), equal to the step loop: the XLA loop, or in float32
    a Pallas kernel or cuDNN (``ScanOptions.kernel``, ``docs/kernels.md``);
    with peepholes, the Pallas kernel only.

    Recorded internals (:meth:`recorded_step`, ``scan(..., record=True)``),
    each ``[*B, H]`` in the state dtype: the gates ``i``, ``f``, ``o`` (after
    the sigmoid), the candidate ``g`` (after the tanh) and the new cell state ``c``.

    Attributes:
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
      >>> cell = recurrax.lstm(8)                      # the same as recurrax.LSTMCell(8)
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> ys, carry = recurrax.scan(cell, params, jnp.ones((2, 5, 3)))
      >>> ys.shape, carry.h.shape
      ((2, 5, 8), (2, 8))
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

    def init(self, key: Array, in_features: int) -> Params:
        H, P, dt = self.hidden_size, self.output_size, self.param_dtype
        k_in, k_rec, k_bias, k_proj, k_peep, k_chrono = jax.random.split(key, 6)
        bias = self.bias_init(k_bias, (4 * H,), dt)
        if self.chrono_max_timescale is not None:
            forget = chrono_bias(k_chrono, H, self.chrono_max_timescale, dt)
            bias = bias.at[H : 2 * H].set(forget).at[:H].set(-forget)
        else:
            bias = bias.at[H : 2 * H].add(jnp.asarray(self.forget_bias, dt))
        params = {
            "input_kernel": self.kernel_init(k_in, (in_features, 4 * H), dt),
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
        bias: Array = params["bias"]
        return z + bias.astype(dt)

    def projected_update(
        self, params: Params, carry: LSTMCarry, projected_x: Array
    ) -> tuple[LSTMCarry, Array, Internals]:
        """The step from projected inputs, with its gates and new cell state (what :meth:`recorded_step` names)."""
        H = self.hidden_size
        dt = projected_x.dtype
        state_dt = carry.c.dtype
        recurrent = jnp.matmul(carry.h.astype(dt), params["recurrent_kernel"].astype(dt))
        if self.layer_norm:
            recurrent = layer_norm(recurrent, params["recurrent_norm_scale"])
        z = projected_x + recurrent
        zi, zf, zg, zo = (z[..., k * H : (k + 1) * H] for k in range(4))
        peephole = params["peephole"].astype(state_dt) if self.peephole else None
        cell_norm = (params["cell_norm_scale"], params["cell_norm_bias"]) if self.layer_norm else None
        h, c, i, f, g, o, _ = lstm_update(zi, zf, zg, zo, carry.c, peephole, cell_norm)
        if self.proj_size is not None:
            h = jnp.matmul(h.astype(dt), params["projection_kernel"].astype(dt)).astype(state_dt)
        return LSTMCarry(h=h, c=c), h.astype(dt), {"i": i, "f": f, "g": g, "o": o, "c": c}

    # --------------------------------------------------------- fused sequence
    def sequence_unsupported(self, params: Params, carry: LSTMCarry, xs: Array, options: ScanOptions) -> str | None:
        overridden = self.overrides_step(LSTMCell)
        if overridden is not None:
            return f"{type(self).__name__} overrides {overridden} (the fused loop computes LSTMCell's step)"
        if self.layer_norm or self.proj_size is not None:
            return "layer norm or proj_size (the fused loop and the kernels run the LSTM without them)"
        if not isinstance(carry, LSTMCarry):
            return "a carry that is not an LSTMCarry"
        reason = _fused.one_float_dtype(self, params, [carry.h, carry.c], xs)
        if reason is not None:
            return reason
        offered = self._kernels(params, carry, xs, options)
        if self.peephole:
            # Only the Pallas kernel runs peepholes: without it the step loop runs them, whatever `fused` is.
            kernel, reason = _kernels.choose(options, offered)
            if kernel == "xla" and reason is not None:
                return f"kernel={options.kernel!r}: {reason}"
            if kernel == "xla":
                return "peepholes (the fused XLA loop runs the plain LSTM; kernel='pallas' runs them)"
            return None
        return _kernels.declined(options, offered)

    def _kernels(self, params: Params, carry: LSTMCarry, xs: Array, options: ScanOptions) -> dict[str, _kernels.Check]:
        """The whole-sequence implementations beside the XLA loop, each with its check (``cells/_kernels.py``)."""
        leaves = [xs, *jax.tree.leaves(params), carry.h, carry.c]

        def pallas(steps: Steps | None) -> str | None:
            return _pallas_gated.unsupported(leaves, options, xs, 4, (carry.h, carry.c))

        if self.peephole:
            return {
                "pallas": pallas,
                "cudnn": lambda steps: "peepholes (cuDNN's LSTM has none)",
            }
        return {
            "pallas": pallas,
            "cudnn": lambda steps: _cudnn.lstm_unsupported(leaves, steps, options.reverse),
        }

    def sequence(
        self, params: Params, carry: LSTMCarry, xs: Array, steps: Steps, options: ScanOptions
    ) -> tuple[Array, LSTMCarry]:
        offered = self._kernels(params, carry, xs, options)
        kernel = _kernels.choose_or_raise(self, options, offered, steps)
        if kernel == "xla":
            hoisted = self.hoists(options)
            ys, (h, c) = lstm_sequence(
                lambda x: self.project_inputs(params, x), params, carry.h, carry.c, xs, steps, options, hoisted
            )
            return ys, LSTMCarry(h=h, c=c)
        if kernel == "cudnn":
            batch_shape = xs.shape[1:-1]
            xs_f, (h0, c0), steps_f = _kernels.flat_batch(xs, (carry.h, carry.c), steps)
            ys, (h, c) = _cudnn.lstm_sequence(params, h0, c0, xs_f, steps_f.valid)
            unflat = _kernels.unflatten
            return unflat(ys, batch_shape), LSTMCarry(h=unflat(h, batch_shape), c=unflat(c, batch_shape))
        ys, (h, c) = gated_sequence(
            lstm_gate_update,
            lambda x: self.project_inputs(params, x),
            params["recurrent_kernel"],
            None,
            (carry.h, carry.c),
            params["peephole"] if self.peephole else None,
            xs,
            steps,
        )
        return ys, LSTMCarry(h=h, c=c)

    # -------------------------------------------------------- recurrent state
    def recurrent_state(self, carry: LSTMCarry) -> Array:
        return carry.h

    def replace_recurrent_state(self, carry: LSTMCarry, h: Array) -> LSTMCarry:
        return carry._replace(h=h)
