"""Linear recurrences that train in parallel: minGRU, minLSTM (Feng et al., 2024) and LRU (Orvieto et al., 2023).

Each is a :class:`~recurrax.cells.LinearCell`: its state follows
``h_t = a_t ⊙ h_{t-1} + b_t`` with ``a_t, b_t`` functions of ``x_t`` alone, so
``recurrax.scan(..., method="parallel")`` runs it with
:func:`jax.lax.associative_scan` (depth O(log T)) and ``method="sequential"``
step by step, with the same outputs and gradients.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Internals
from recurrax._projected_cell import ProjectedStepCell
from recurrax._types import Array, Initializer, Params, chrono_bias, fan_in_uniform, fan_in_uniform_bias
from recurrax._validation import check_choice
from recurrax.cells._pallas_linear import PallasLinearRecurrence

_COMPLEX = {jnp.dtype(jnp.float32): jnp.dtype(jnp.complex64), jnp.dtype(jnp.float64): jnp.dtype(jnp.complex128)}

#: One linear layer's parameters: ``weight`` alone (no bias) or ``(weight, bias)``, ``bias`` maybe ``None``.
Linear = Array | tuple[Array, Array | None]


def positive_activation(x: Array) -> Array:
    """``g(x) = x + 0.5`` for ``x ≥ 0`` else ``σ(x)``: continuous, positive, linear growth (Feng et al., 2024)."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_positive_activation(x: Array) -> Array:
    """``log g(x)``, computed without forming ``g(x)`` where it would underflow."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


@dataclasses.dataclass(frozen=True, kw_only=True)
class _MinRNNCell(ProjectedStepCell, PallasLinearRecurrence):
    """Shared parts of minGRU and minLSTM: one input matmul, gates of ``x`` only."""

    log_space: bool = False
    chrono_max_timescale: float | None = None
    kernel_init: Initializer = fan_in_uniform
    bias_init: Initializer | None = None

    supports_input_projection: ClassVar[bool] = True
    num_blocks: ClassVar[int]
    block_names: ClassVar[tuple[str, ...]]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.chrono_max_timescale is not None and not self.chrono_max_timescale > 2:
            raise ValueError(
                f"{type(self).__name__}: chrono_max_timescale must be > 2 (in time steps), "
                f"got {self.chrono_max_timescale!r}"
            )

    def init(self, key: Array, in_features: int) -> Params:
        H, dt = self.hidden_size, self.param_dtype
        k_in, k_b, k_chrono = jax.random.split(key, 3)
        shape = (self.num_blocks * H,)
        if self.bias_init is None:
            bias = fan_in_uniform_bias(k_b, shape, in_features, dt)
        else:
            bias = self.bias_init(k_b, shape, dt)
        if self.chrono_max_timescale is not None:
            bias = self._chrono_biases(bias, chrono_bias(k_chrono, H, self.chrono_max_timescale, dt))
        return {"input_kernel": self.kernel_init(k_in, (in_features, self.num_blocks * H), dt), "bias": bias}

    def _chrono_biases(self, bias: Array, keep: Array) -> Array:
        """``bias`` with the gates' blocks set so that the state is kept with bias ``keep`` (chrono init)."""
        raise NotImplementedError

    def _fuse_linears(self, linears: Sequence[Linear], layout: str) -> Params:
        """``{"input_kernel", "bias"}`` from one linear layer per block, in the blocks' order."""
        check_choice(layout, "layout", ("torch", "flax"))
        H, dt = self.hidden_size, self.param_dtype
        kernels: list[Array] = []
        biases: list[Array] = []
        for name, linear in zip(self.block_names, linears, strict=True):
            weight, bias = linear if isinstance(linear, tuple) else (linear, None)
            kernel = jnp.asarray(weight)
            if kernel.ndim != 2:
                raise ValueError(f"{name}: the weight must be 2-D, got shape {tuple(kernel.shape)}")
            # torch's nn.Linear computes x Wᵀ + b with W [out, in]; the fused kernel is [in, out].
            kernel = kernel.T if layout == "torch" else kernel
            in_features = kernels[0].shape[0] if kernels else kernel.shape[0]
            if kernel.shape != (in_features, H):
                expected = "[H, D]" if layout == "torch" else "[D, H]"
                raise ValueError(
                    f"{name}: the weight must be {expected} with H={H} and the same D for every block "
                    f"(layout={layout!r}), got shape {tuple(jnp.shape(weight))}"
                )
            b = jnp.zeros((H,), dt) if bias is None else jnp.asarray(bias)
            if b.shape != (H,):
                raise ValueError(f"{name}: the bias must have shape ({H},), got {tuple(b.shape)}")
            kernels.append(kernel.astype(dt))
            biases.append(b.astype(dt))
        return {"input_kernel": jnp.concatenate(kernels, axis=1), "bias": jnp.concatenate(biases)}

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Array:
        return jnp.zeros((*batch_shape, self.hidden_size), self.state_dtype(dtype))

    def project_inputs(self, params: Params, xs: Array) -> Array:
        return self._affine_projection(xs, params["input_kernel"], params["bias"])

    def _blocks(self, projected: Array) -> tuple[Array, ...]:
        # Gates and candidates are formed in the state dtype: they feed the accumulation. One split rather
        # than a slice per block: the gradient of a split is one concatenation, of slices a pad and an add each.
        state = self.state_dtype()
        return tuple(block.astype(state) for block in jnp.split(projected, self.num_blocks, axis=-1))

    def _candidate(self, pre: Array) -> Array:
        return positive_activation(pre) if self.log_space else pre

    def _coefficients(self, projected: Array) -> tuple[Array, Array, Internals]:
        """``a``, ``b`` and the gates and candidate they are made of, by name."""
        raise NotImplementedError

    def _log_coefficients(self, projected: Array) -> tuple[Array, Array]:
        raise NotImplementedError

    def recurrence_coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        a, b, _ = self._coefficients(self.project_inputs(params, xs))
        return a, b

    def parallel_log_space(self) -> bool:
        return self.log_space

    def log_recurrence_coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        """``(log a, log b)``; ``b > 0`` because the candidate passes through ``g``.

        Used by ``recurrax.scan(..., method="parallel")`` when ``log_space``:
        the associative scan then runs in log space (Heinsen, 2023), which does
        not underflow when products of many gates get tiny.
        """
        if not self.log_space:
            raise ValueError(f"{type(self).__name__} was built with log_space=False")
        return self._log_coefficients(self.project_inputs(params, xs))

    def readout(self, params: Params, hs: Array, xs: Array) -> Array:
        # The output is the state itself, in the compute dtype (``xs`` may be raw or projected inputs).
        return hs.astype(self.compute_dtype(xs, params["input_kernel"]))

    def projected_update(self, params: Params, carry: Array, projected_x: Array) -> tuple[Array, Array, Internals]:
        a, b, internals = self._coefficients(projected_x)
        h = a * carry + b
        return h, self.readout(params, h, projected_x), internals


@dataclasses.dataclass(frozen=True, kw_only=True)
class MinGRUCell(_MinRNNCell):
    """minGRU (Feng et al., 2024): a GRU whose gate and candidate see only ``x_t``.

    Math, for one step::

        z  = σ(x W_z + b_z)
        h̃  = x W_h + b_h               (log_space: g(x W_h + b_h) > 0)
        h' = (1 - z) ⊙ h + z ⊙ h̃

    With ``log_space`` the parallel scan works on ``log(1 - z) = -softplus(k)``
    and ``log(z ⊙ h̃) = -softplus(-k) + log g(...)``. Parameters:
    ``input_kernel[D, 2H]`` and ``bias[2H]``, the paper's two linear layers
    fused in the order ``[z | h̃]``: ``input_kernel = [W_z | W_h]``,
    ``bias = [b_z | b_h]``. :meth:`params_from_linears` builds them from the
    two layers. Recorded internals (``scan(..., record=True)``), each
    ``[*B, H]``: the gate ``z`` and the candidate ``h_tilde`` (``h̃``).

    Initialisation: the paper's reference code builds ``linear_z`` and
    ``linear_h`` as PyTorch ``nn.Linear(D, H)`` layers, so kernels and biases
    are ``U(-1/√D, 1/√D)`` by default. ``chrono_max_timescale=T`` sets
    ``b_z = -log(u)``, ``u ~ U(1, T - 1)`` (Tallec & Ollivier, 2018): the keep
    gate ``1 - z = σ(-b_z)`` then starts at ``u / (1 + u)``, a memory of
    ``1 / z = 1 + u`` steps, spread over ``[2, T]``.

    Attributes:
      hidden_size: ``H``, the state and output features.
      log_space: use the positive candidate ``g(·)`` and scan in log space
        with ``method="parallel"`` (the paper's numerically stable form).
      chrono_max_timescale: chrono init of the gate bias ``b_z`` (None: off);
        use about the longest dependency length, in steps (> 2).
      kernel_init: initialiser of ``input_kernel[D, 2H]`` (default ``U(±1/√D)``).
      bias_init: initialiser of ``bias[2H]``; None (default) draws ``U(±1/√D)``,
        as PyTorch's ``nn.Linear``.
      dtype, param_dtype, carry_dtype: compute, storage and state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.min_gru(8)
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> xs = jnp.ones((2, 5, 3))
      >>> scan = jax.jit(recurrax.scan, static_argnames=("cell", "method"))  # one program per cell and method
      >>> ys_seq, _ = scan(cell, params, xs)
      >>> ys_par, _ = scan(cell, params, xs, method="parallel")
      >>> bool(jnp.allclose(ys_seq, ys_par, atol=1e-6))
      True

    References:
      Feng, Tung, Ahmed, Bengio, Hajimirsadeghi (2024), "Were RNNs All We Needed?".
    """

    num_blocks: ClassVar[int] = 2
    block_names: ClassVar[tuple[str, ...]] = ("z", "h")

    def params_from_linears(self, z: Linear, h: Linear, *, layout: Literal["torch", "flax"]) -> Params:
        """The parameters of the paper's two linear layers, ``z = σ(linear_z(x))`` and ``h̃ = linear_h(x)``.

        Args:
          z, h: each layer's ``(weight, bias)``, or its ``weight`` alone (a layer
            without bias, e.g. ``bias=False``); arrays of any kind (numpy, JAX;
            a torch ``nn.Linear`` through :func:`recurrax.interop.from_torch_linear`).
          layout: ``"torch"``: weights ``[H, D]`` as ``nn.Linear.weight``
            (``y = x Wᵀ + b``); ``"flax"``: kernels ``[D, H]`` as
            ``nnx.Linear.kernel`` (``y = x W + b``). Required: when ``D == H``
            the shapes cannot tell them apart.

        Returns ``{"input_kernel": [W_z | W_h] [D, 2H], "bias": [b_z | b_h] [2H]}``
        in ``param_dtype``.

        Example:
          >>> import numpy as np, recurrax
          >>> rng = np.random.default_rng(0)
          >>> w_z, b_z, w_h = rng.normal(size=(4, 3)), rng.normal(size=4), rng.normal(size=(4, 3))
          >>> cell = recurrax.min_gru(4)
          >>> params = cell.params_from_linears(z=(w_z, b_z), h=w_h, layout="torch")
          >>> params["input_kernel"].shape, params["bias"].shape
          ((3, 8), (8,))
        """
        return self._fuse_linears([z, h], layout)

    def _chrono_biases(self, bias: Array, keep: Array) -> Array:
        # 1 - z keeps the state, so b_z = -keep makes 1 - z = σ(keep), the LSTM forget gate's chrono value.
        return bias.at[: self.hidden_size].set(-keep)

    def _coefficients(self, projected: Array) -> tuple[Array, Array, Internals]:
        k, pre = self._blocks(projected)
        keep, z, h_tilde = jax.nn.sigmoid(-k), jax.nn.sigmoid(k), self._candidate(pre)
        return keep, z * h_tilde, {"z": z, "h_tilde": h_tilde}

    def _log_coefficients(self, projected: Array) -> tuple[Array, Array]:
        k, pre = self._blocks(projected)
        return -jax.nn.softplus(k), -jax.nn.softplus(-k) + log_positive_activation(pre)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MinLSTMCell(_MinRNNCell):
    """minLSTM (Feng et al., 2024): normalised forget/input gates that see only ``x_t``.

    Math, for one step::

        f, i = σ(x W_f + b_f), σ(x W_i + b_i)
        f', i' = f / (f + i), i / (f + i)          # time-independent scale
        h̃  = x W_h + b_h                           (log_space: g(x W_h + b_h) > 0)
        h' = f' ⊙ h + i' ⊙ h̃

    The normalised gates are computed as ``f' = σ(-d)``, ``i' = σ(d)`` with
    ``d = softplus(-k_f) - softplus(-k_i)`` (= ``log(i / f)``), which never
    divides by a tiny ``f + i``. Parameters: ``input_kernel[D, 3H]`` and
    ``bias[3H]``, the paper's three linear layers fused in the order
    ``[f | i | h̃]``; :meth:`params_from_linears` builds them from the three.
    Recorded internals (``scan(..., record=True)``), each ``[*B, H]``: the
    normalised gates ``f`` (``f'``) and ``i`` (``i'``), and the candidate ``h_tilde``.

    Initialisation: as the paper's reference code (PyTorch ``nn.Linear(D, H)``
    for ``linear_f``, ``linear_i``, ``linear_h``), kernels and biases are
    ``U(-1/√D, 1/√D)`` by default. ``chrono_max_timescale=T`` sets
    ``b_f = log(u)``, ``b_i = -log(u)``, ``u ~ U(1, T - 1)`` (Tallec &
    Ollivier, 2018): the normalised forget gate then starts at
    ``f' = u / (1 + u)``, a memory of ``1 / (1 - f') = 1 + u`` steps in ``[2, T]``.

    Attributes:
      hidden_size: ``H``, the state and output features.
      log_space: use the positive candidate ``g(·)`` and scan in log space
        with ``method="parallel"`` (the paper's numerically stable form).
      chrono_max_timescale: chrono init of the gate biases ``b_f``, ``b_i``
        (None: off); use about the longest dependency length, in steps (> 2).
      kernel_init: initialiser of ``input_kernel[D, 3H]`` (default ``U(±1/√D)``).
      bias_init: initialiser of ``bias[3H]``; None (default) draws ``U(±1/√D)``,
        as PyTorch's ``nn.Linear``.
      dtype, param_dtype, carry_dtype: compute, storage and state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.min_lstm(8, log_space=True)
      >>> params = cell.init(jax.random.key(0), in_features=3)
      >>> scan = jax.jit(recurrax.scan, static_argnames=("cell", "method"))  # one program per cell and method
      >>> ys, h = scan(cell, params, jnp.ones((2, 5, 3)), method="parallel")
      >>> ys.shape, h.shape
      ((2, 5, 8), (2, 8))

    References:
      Feng, Tung, Ahmed, Bengio, Hajimirsadeghi (2024), "Were RNNs All We Needed?".
    """

    num_blocks: ClassVar[int] = 3
    block_names: ClassVar[tuple[str, ...]] = ("f", "i", "h")

    def params_from_linears(self, f: Linear, i: Linear, h: Linear, *, layout: Literal["torch", "flax"]) -> Params:
        """The parameters of the paper's three linear layers ``linear_f``, ``linear_i``, ``linear_h``.

        As :meth:`MinGRUCell.params_from_linears`: each layer is ``(weight, bias)``
        or ``weight`` alone; ``layout="torch"`` takes weights ``[H, D]``,
        ``"flax"`` kernels ``[D, H]``. Returns ``input_kernel = [W_f | W_i | W_h]``
        ``[D, 3H]`` and ``bias = [b_f | b_i | b_h]`` ``[3H]``.
        """
        return self._fuse_linears([f, i, h], layout)

    def _chrono_biases(self, bias: Array, keep: Array) -> Array:
        H = self.hidden_size
        return bias.at[:H].set(keep).at[H : 2 * H].set(-keep)

    def _gate_log_ratio(self, k_f: Array, k_i: Array) -> Array:
        return jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)

    def _coefficients(self, projected: Array) -> tuple[Array, Array, Internals]:
        k_f, k_i, pre = self._blocks(projected)
        d = self._gate_log_ratio(k_f, k_i)
        f, i, h_tilde = jax.nn.sigmoid(-d), jax.nn.sigmoid(d), self._candidate(pre)
        return f, i * h_tilde, {"f": f, "i": i, "h_tilde": h_tilde}

    def _log_coefficients(self, projected: Array) -> tuple[Array, Array]:
        k_f, k_i, pre = self._blocks(projected)
        d = self._gate_log_ratio(k_f, k_i)
        return -jax.nn.softplus(d), -jax.nn.softplus(-d) + log_positive_activation(pre)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LRUCell(PallasLinearRecurrence):
    """Linear Recurrent Unit (Orvieto et al., 2023): a diagonal complex recurrence.

    Math, for one step (``N = hidden_size`` complex states, ``O`` output features)::

        λ  = exp(-exp(ν_log) + i·exp(θ_log))          # |λ| < 1 for any ν_log
        γ  = exp(γ_log)                                # init √(1 - |λ|²)
        h' = λ ⊙ h + γ ⊙ (x B)                        # B = B_re + i·B_im, [D, N]
        y  = Re(h' C) + D ⊙ x                          # C = C_re + i·C_im, [N, O]

    The exponential parameterisation keeps the recurrence stable throughout
    training; ``γ`` normalises the input so that the state's variance does
    not blow up as ``|λ| → 1``. The skip term ``D ⊙ x`` needs ``D == O``
    (pass ``skip=False`` otherwise). The carry is complex (``complex64`` for a
    ``float32`` state). Recorded internals (``scan(..., record=True)``), each
    ``[*B, N]`` complex: the recurrence's coefficients ``a`` (``λ``) and ``b``
    (``γ ⊙ (x B)``, the input term), as every :class:`~recurrax.cells.LinearCell`
    with the derived step records them.

    Initialisation, as the paper's ``init_lru_parameters`` (its Appendix A):
    ``λ`` uniform on the ring ``r_min ≤ |λ| ≤ r_max`` (uniform in area:
    ``|λ|² ~ U(r_min², r_max²)``) with phase ``θ ~ U(0, max_phase)``;
    ``γ = √(1 - |λ|²)``; ``B ~ N(0, 1/(2D))`` (real and imaginary parts),
    ``C ~ N(0, 1/N)``, ``D ~ N(0, 1)``. The defaults ``r_min=0, r_max=1,
    max_phase=2π`` are that function's (which writes 2π as 6.28): the whole
    unit disk. For long-range tasks the paper uses ``r_min=0.9, r_max=0.999,
    max_phase=π/10``.

    Attributes:
      hidden_size: ``N``, complex state units.
      out_features: ``O``, output features (default ``N``); with ``skip`` it
        must equal the input features.
      r_min, r_max: the ring ``r_min ≤ |λ| ≤ r_max`` that ``λ`` is drawn from.
      max_phase: largest initial phase of ``λ``.
      skip: add the feed-through ``D ⊙ x``.
      dtype, param_dtype, carry_dtype: compute, storage and (real) state dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.lru(16, out_features=4)
      >>> params = cell.init(jax.random.key(0), in_features=4)
      >>> scan = jax.jit(recurrax.scan, static_argnames=("cell", "method"))  # one program per cell and method
      >>> ys, h = scan(cell, params, jnp.ones((2, 5, 4)), method="parallel")
      >>> ys.shape, h.dtype
      ((2, 5, 4), dtype('complex64'))

    References:
      Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu, De (2023),
      "Resurrecting Recurrent Neural Networks for Long Sequences".
    """

    out_features: int | None = None
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    skip: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.out_features is not None and (
            not isinstance(self.out_features, int) or isinstance(self.out_features, bool) or self.out_features <= 0
        ):
            raise ValueError(f"out_features must be a positive int or None, got {self.out_features!r}")
        if not 0.0 <= self.r_min < self.r_max <= 1.0:
            raise ValueError(f"LRU needs 0 <= r_min < r_max <= 1, got r_min={self.r_min}, r_max={self.r_max}")
        if not self.max_phase > 0:
            raise ValueError(f"max_phase must be > 0, got {self.max_phase}")
        state = self.state_dtype()
        if state not in _COMPLEX:
            raise TypeError(f"LRU needs a float32 or float64 state dtype (its complex carry), got {state}")

    @property
    def output_size(self) -> int:
        return self.out_features if self.out_features is not None else self.hidden_size

    def init(self, key: Array, in_features: int) -> Params:
        N, O, dt = self.hidden_size, self.output_size, self.param_dtype
        if self.skip and in_features != O:
            raise ValueError(
                f"LRU's skip term D ⊙ x needs in_features == output size ({O}), got in_features={in_features}; "
                "pass skip=False, set out_features=in_features, or project the inputs first"
            )
        k_nu, k_theta, k_bre, k_bim, k_cre, k_cim, k_d = jax.random.split(key, 7)
        # Sampled in float32 at least, so that the ring init is accurate in any param dtype.
        f32 = jnp.dtype(jnp.float64) if jnp.dtype(dt) == jnp.float64 else jnp.dtype(jnp.float32)
        u1 = jax.random.uniform(k_nu, (N,), f32)
        u2 = jax.random.uniform(k_theta, (N,), f32)
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2))
        theta_log = jnp.log(self.max_phase * u2)
        # |λ|² = exp(-2 exp(ν_log)); γ = √(1 - |λ|²), formed with expm1 for |λ| near 1.
        gamma_log = 0.5 * jnp.log(-jnp.expm1(-2.0 * jnp.exp(nu_log)))
        params = {
            "nu_log": nu_log.astype(dt),
            "theta_log": theta_log.astype(dt),
            "gamma_log": gamma_log.astype(dt),
            "B_re": (jax.random.normal(k_bre, (in_features, N), f32) / math.sqrt(2 * in_features)).astype(dt),
            "B_im": (jax.random.normal(k_bim, (in_features, N), f32) / math.sqrt(2 * in_features)).astype(dt),
            "C_re": (jax.random.normal(k_cre, (N, O), f32) / math.sqrt(N)).astype(dt),
            "C_im": (jax.random.normal(k_cim, (N, O), f32) / math.sqrt(N)).astype(dt),
        }
        if self.skip:
            params["D"] = jax.random.normal(k_d, (O,), f32).astype(dt)
        return params

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Array:
        dt = jnp.dtype(dtype) if dtype is not None else _COMPLEX[self.state_dtype()]
        return jnp.zeros((*batch_shape, self.hidden_size), dt)

    def eigenvalues(self, params: Params) -> Array:
        """The diagonal of the recurrence, ``λ[N]`` (complex, ``|λ| < 1``)."""
        state = self.state_dtype()
        nu = params["nu_log"].astype(state)
        theta = params["theta_log"].astype(state)
        return jnp.exp(jax.lax.complex(-jnp.exp(nu), jnp.exp(theta)))

    def recurrence_coefficients(self, params: Params, xs: Array) -> tuple[Array, Array]:
        state = self.state_dtype()
        dt = self.compute_dtype(xs, params["B_re"])
        x = xs.astype(dt)
        bx_re = jnp.matmul(x, params["B_re"].astype(dt)).astype(state)
        bx_im = jnp.matmul(x, params["B_im"].astype(dt)).astype(state)
        gamma = jnp.exp(params["gamma_log"].astype(state))
        b = jax.lax.complex(gamma * bx_re, gamma * bx_im)
        a = jnp.broadcast_to(self.eigenvalues(params), b.shape)
        return a, b

    def readout(self, params: Params, hs: Array, xs: Array) -> Array:
        dt = self.compute_dtype(xs, params["C_re"])
        # Re(h C) = Re(h) C_re - Im(h) C_im, in real arithmetic.
        y = jnp.matmul(jnp.real(hs).astype(dt), params["C_re"].astype(dt)) - jnp.matmul(
            jnp.imag(hs).astype(dt), params["C_im"].astype(dt)
        )
        if self.skip:
            y = y + params["D"].astype(dt) * xs.astype(dt)
        return y
