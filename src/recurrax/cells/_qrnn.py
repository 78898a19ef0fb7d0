"""Quasi-recurrent neural network (Bradbury et al., 2017): convolutional gates and a linear pooling recurrence."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Internals, Mix
from recurrax._linear_cell import LinearTerms
from recurrax._projected_cell import ProjectedStepCell
from recurrax._types import Array, Initializer, Params, default_bias_init, default_kernel_init
from recurrax.cells._pallas_linear import PallasLinearRecurrence

_POOLINGS = {"f": 2, "fo": 3, "ifo": 4}  # gate blocks: z, f, then o, then i


class QRNNCarry(NamedTuple):
    """QRNN state: the pending convolution sums ``context[*B, k-1, G·H]`` and the pooled cell ``c[*B, H]``.

    ``context[..., m-1, :]`` is what the inputs seen so far contribute to the
    gate pre-activations ``m`` steps ahead (the convolution's partial sums), so
    the carry does not depend on the input width and a reset (zeros) is the
    same as a zero-padded window.
    """

    context: Array
    c: Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class QRNNCell(ProjectedStepCell, PallasLinearRecurrence):
    """QRNN cell (Bradbury et al., 2017): gates from a causal convolution over ``window`` steps, then pooling.

    Math (``*`` a causal convolution of width ``k = window`` over time,
    ``Z, F, O, I`` its gate blocks)::

        z_t = tanh((W_z * X)_t + b_z)      f_t = σ((W_f * X)_t + b_f)
        o_t = σ((W_o * X)_t + b_o)         i_t = σ((W_i * X)_t + b_i)
        c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ z_t       # "f" and "fo" pooling
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ z_t             # "ifo" pooling
        h_t = o_t ⊙ c_t                             # "fo", "ifo";  h_t = c_t for "f"

    ``(W * X)_t = Σ_j x_{t-j} W_j`` for ``j < k``, reading nothing before the
    start of the sequence or of the current episode (``resets``). The gates
    depend on inputs only, so the pooling is a linear recurrence
    ``c_t = a_t ⊙ c_{t-1} + b_t``: ``recurrax.scan(..., method="parallel")``
    runs it with an associative scan, with the same results as the step loop.
    Parameters: ``input_kernel[k, D, G·H]`` (tap ``j`` reads ``x_{t-j}``) and
    ``bias[G·H]``, ``G`` = 2, 3, 4 gate blocks for ``"f"``, ``"fo"``,
    ``"ifo"``. The carry is :class:`QRNNCarry`. Recorded internals
    (``scan(..., record=True)``), each ``[*B, H]``: ``z``, ``f``, ``o`` (not
    with ``"f"`` pooling), ``i`` (``"ifo"`` only) and the pooled state ``c``.

    Zoneout, the paper's regulariser, keeps ``c_{t-1}`` for a random subset of
    units (the same as dropping ``1 - f_t`` there): wrap the cell with
    :func:`~recurrax.cells.zoneout`. There are no recurrent weights, so
    recurrent dropout does not apply.

    Attributes:
      hidden_size: ``H``.
      window: ``k``, the convolution's width in steps (the paper uses 1 or 2).
      pooling: ``"fo"`` (default), ``"f"`` or ``"ifo"``.
      kernel_init, bias_init: initialisers of ``input_kernel`` and ``bias``.
      dtype, param_dtype, carry_dtype: compute, storage and state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.qrnn(8, window=2)
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 6, 3))
      >>> scan = jax.jit(recurrax.scan, static_argnames=("cell", "method"))  # one program per cell and method
      >>> ys_seq, _ = scan(cell, params, xs)
      >>> ys_par, carry = scan(cell, params, xs, method="parallel")
      >>> bool(jnp.allclose(ys_seq, ys_par, atol=1e-6)), carry.context.shape
      (True, (2, 1, 24))

    References:
      Bradbury, Merity, Xiong, Socher (2017), "Quasi-Recurrent Neural Networks", ICLR.
    """

    window: int = 2
    pooling: Literal["f", "fo", "ifo"] = "fo"
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = default_bias_init

    supports_input_projection: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ValueError(f"window must be a positive int, got {self.window!r}")
        if self.pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {sorted(_POOLINGS)}, got {self.pooling!r}")

    @property
    def gate_width(self) -> int:
        """``G·H``: the width of the gate pre-activations."""
        return _POOLINGS[self.pooling] * self.hidden_size

    def init(self, key: Array, in_features: int) -> Params:
        k_in, k_b = jax.random.split(key)
        shape = (self.window, in_features, self.gate_width)
        # One input kernel per tap, each initialised as a dense layer of fan-in D·k.
        kernel = self.kernel_init(k_in, (self.window * in_features, self.gate_width), self.param_dtype)
        return {
            "input_kernel": kernel.reshape(shape),
            "bias": self.bias_init(k_b, (self.gate_width,), self.param_dtype),
        }

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> QRNNCarry:
        dt = self.state_dtype(dtype)
        return QRNNCarry(
            context=jnp.zeros((*batch_shape, self.window - 1, self.gate_width), dt),
            c=jnp.zeros((*batch_shape, self.hidden_size), dt),
        )

    # ----------------------------------------------------------------- step
    def project_inputs(self, params: Params, xs: Array) -> Array:
        """Every tap's contribution of each input, ``xs[..., D] → [..., k·G·H]`` (tap-major)."""
        kernel = params["input_kernel"]
        dt = self.compute_dtype(xs, kernel)
        k, d, width = kernel.shape
        flat = jnp.transpose(kernel, (1, 0, 2)).reshape(d, k * width)
        return jnp.matmul(xs.astype(dt), flat.astype(dt))

    def projected_update(
        self, params: Params, carry: QRNNCarry, projected_x: Array
    ) -> tuple[QRNNCarry, Array, Internals]:
        """One step; also returns its gates and ``c`` (zoneout re-reads the output through ``o``)."""
        taps = projected_x.reshape((*projected_x.shape[:-1], self.window, self.gate_width))
        state = carry.c.dtype
        pending = carry.context.astype(taps.dtype)
        pre = taps[..., 0, :] + pending[..., 0, :] if self.window > 1 else taps[..., 0, :]
        pre = pre + params["bias"].astype(taps.dtype)
        # Contributions to the next k-1 steps: this input's taps 1..k-1 plus what was pending beyond one step.
        later = jnp.concatenate([pending[..., 1:, :], jnp.zeros_like(pending[..., :1, :])], axis=-2)
        context = (taps[..., 1:, :] + later).astype(carry.context.dtype)
        a, b, gates = self._pool_terms(pre, state)
        c = a * carry.c + b
        return QRNNCarry(context=context, c=c), self._output(c, gates.get("o"), taps.dtype), {**gates, "c": c}

    def _pool_terms(self, pre: Array, state: jnp.dtype) -> tuple[Array, Array, Internals]:
        """``a = f``, ``b`` and the gates by name (``z``, ``f``, and ``o``, ``i`` where the pooling has them)."""
        H = self.hidden_size
        blocks = [pre[..., i * H : (i + 1) * H].astype(state) for i in range(_POOLINGS[self.pooling])]
        gates = {"z": jnp.tanh(blocks[0]), "f": jax.nn.sigmoid(blocks[1])}
        if self.pooling != "f":
            gates["o"] = jax.nn.sigmoid(blocks[2])
        if self.pooling == "ifo":
            gates["i"] = jax.nn.sigmoid(blocks[3])
        b = gates["i"] * gates["z"] if self.pooling == "ifo" else (1 - gates["f"]) * gates["z"]
        return gates["f"], b, gates

    @staticmethod
    def _output(c: Array, o: Array | None, dtype: Any) -> Array:
        return (c if o is None else o * c).astype(dtype)

    def zoned_step(
        self, params: Params, carry: QRNNCarry, x: Array, mix: Mix, *, projected: bool = False
    ) -> tuple[QRNNCarry, Array]:
        """Zoneout on ``c`` only (the convolution's pending sums are inputs, not memory); ``h = o ⊙ c``."""
        projected_x = x if projected else self.project_inputs(params, x)
        new, y, internals = self.projected_update(params, carry, projected_x)
        mixed = mix(carry, new)
        zoned = QRNNCarry(context=new.context, c=mixed.c)
        return zoned, self._output(zoned.c, internals.get("o"), y.dtype)

    # ---------------------------------------------------------- linear form
    def linear_state(self, carry: QRNNCarry) -> Array:
        return carry.c

    def linear_lookback(self) -> int:
        """``window - 1``: the convolution's taps read that many earlier steps."""
        return self.window - 1

    def linear_terms(self, params: Params, initial_carry: QRNNCarry, xs: Array, starts: Array) -> LinearTerms:
        k, width = self.window, self.gate_width
        taps = self.project_inputs(params, xs)
        taps = taps.reshape((*taps.shape[:-1], k, width))  # [T, *B, k, G·H]
        num_steps = xs.shape[0]
        since_start = _steps_since_start(starts, num_steps)  # [T, *B] (or broadcastable)
        pre = taps[..., 0, :]
        for j in range(1, k):
            # Tap j reads x_{t-j}, but never across the start of the current episode.
            shifted = jnp.concatenate([jnp.zeros_like(taps[:j, ..., j, :]), taps[:-j, ..., j, :]], axis=0)
            pre = pre + jnp.where((since_start >= j)[..., None], shifted, jnp.zeros_like(shifted))
        if k > 1:
            # The initial carry's pending sums feed the first k-1 steps of every episode.
            pending = initial_carry.context.astype(pre.dtype)
            index = jnp.clip(since_start, 0, k - 2)[..., None, None]
            from_carry = jnp.take_along_axis(jnp.broadcast_to(pending, (num_steps, *pending.shape)), index, axis=-2)
            pre = pre + jnp.where((since_start < k - 1)[..., None], from_carry[..., 0, :], jnp.zeros_like(pre))
        pre = pre + params["bias"].astype(pre.dtype)
        a, b, gates = self._pool_terms(pre, initial_carry.c.dtype)
        return LinearTerms(a, b, (gates.get("o"), taps, since_start, pre.dtype))

    def linear_outputs(
        self, params: Params, initial_carry: QRNNCarry, hs: Array, terms: LinearTerms, last: Array | None
    ) -> tuple[Array, QRNNCarry]:
        o, taps, since_start, dtype = terms.context
        ys = self._output(hs, o, dtype)
        return ys, QRNNCarry(context=self._final_context(initial_carry, taps, since_start, last), c=hs[-1])

    def _final_context(self, initial_carry: QRNNCarry, taps: Array, since_start: Array, last: Array | None) -> Array:
        """The pending sums after each example's last step, as the step loop would leave them."""
        k, width = self.window, self.gate_width
        num_steps = taps.shape[0]
        batch_shape = taps.shape[1:-2]
        pending = initial_carry.context
        if k == 1:
            return jnp.zeros((*batch_shape, 0, width), pending.dtype)
        last = jnp.full(batch_shape, num_steps - 1, jnp.int32) if last is None else last.astype(jnp.int32)
        elapsed = jnp.take_along_axis(jnp.broadcast_to(since_start, (num_steps, *batch_shape)), last[None], axis=0)[0]
        rows = []
        for m in range(1, k):
            total = jnp.zeros((*batch_shape, width), taps.dtype)
            for j in range(m, k):
                # x_{last+m-j} reaches step last+m through tap j, if it is in the last step's episode.
                source = jnp.clip(last + m - j, 0, num_steps - 1)
                tap = jnp.take_along_axis(taps[..., j, :], source[None, ..., None], axis=0)[0]
                total = total + jnp.where((j - m <= elapsed)[..., None], tap, jnp.zeros_like(tap))
            # What the initial carry still holds for step last+m (it started elapsed steps ago).
            index = jnp.clip(elapsed + m, 0, k - 2)
            held = jnp.take_along_axis(pending, index[..., None, None], axis=-2)[..., 0, :].astype(taps.dtype)
            total = total + jnp.where((elapsed + m <= k - 2)[..., None], held, jnp.zeros_like(held))
            rows.append(total)
        return jnp.stack(rows, axis=-2).astype(pending.dtype)


def _steps_since_start(starts: Array, num_steps: int) -> Array:
    """``t - (the last start at or before t)`` for every step; ``starts[T, ...]`` is True at step 0."""
    steps = jnp.arange(num_steps, dtype=jnp.int32).reshape((num_steps,) + (1,) * (starts.ndim - 1))
    last_start = jax.lax.cummax(jnp.where(starts, steps, 0), axis=0)
    return steps - last_start
