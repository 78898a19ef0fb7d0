"""The residual block that linear recurrences are used in (minGRU, minLSTM, LRU), and a stack of such blocks.

The papers do not use these cells bare. Each recurrence sits in a pre-norm
residual branch, with projections around it, followed by a channel-mixing
MLP (Feng et al., 2024) or a GLU inside the same branch (Orvieto et al.,
2023). :class:`RecurrentBlock` is that block for any cell, its options
declared once; :class:`RecurrentStack` projects the inputs to the model
width, runs ``num_blocks`` blocks and normalises the result: a backbone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._cell import Cell
from recurrax._ops import (
    ACTIVATIONS,
    check_activation,
    compute_dtype,
    dense,
    dropout,
    from_batch_major,
    layer_norm,
    padding_mask,
    split_key,
    stats_dtype,
    zero_padding,
)
from recurrax._options import ScanOptions
from recurrax._scan import scan
from recurrax._types import Array, Initializer, Params, default_kernel_init
from recurrax._validation import (
    check_block_inputs,
    check_fields,
    check_float_dtype,
    check_positive_fields,
    check_positive_int,
    check_rate_fields,
)

Norm = Literal["layer", "rms"]
Mlp = Literal["mlp", "glu"] | None
_EPS = 1e-5


@dataclasses.dataclass(frozen=True, kw_only=True)
class _BlockOptions:
    """The options of a residual recurrent block, shared by the block and the stack."""

    cell: Cell
    norm: Norm = "layer"
    conv_kernel: int | None = None
    gated: bool = False
    output_projection: bool | None = None
    output_glu: bool = False
    mlp: Mlp = "mlp"
    mlp_ratio: int = 4
    activation: str = "gelu"
    dropout_rate: float = 0.0
    scan_options: ScanOptions | None = None
    kernel_init: Initializer = default_kernel_init
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def __post_init__(self) -> None:
        if not isinstance(self.cell, Cell):
            raise TypeError(f"{type(self).__name__}: cell must be a recurrax Cell, got {type(self.cell).__name__}")
        if self.scan_options is not None and not isinstance(self.scan_options, ScanOptions):
            raise TypeError(
                f"{type(self).__name__}: scan_options must be a recurrax.ScanOptions or None, "
                f"got {type(self.scan_options).__name__}"
            )
        check_fields(self)
        check_positive_fields(self, "conv_kernel", "mlp_ratio")
        check_rate_fields(self, "dropout_rate")
        check_activation(self.activation)
        check_float_dtype(self.dtype, "dtype")
        check_float_dtype(self.param_dtype, "param_dtype")
        options = self.options
        if options.time_major or options.reverse:
            raise ValueError(
                f"{type(self).__name__}: scan_options must not set time_major or reverse (the block is causal "
                "and batch-major; pass time_major to apply)"
            )

    @property
    def options(self) -> ScanOptions:
        """How the recurrence is scanned: as given, else ``method="parallel"`` for a linear cell."""
        if self.scan_options is not None:
            return self.scan_options
        return ScanOptions(method="parallel" if self.cell.is_linear else "sequential")

    def block_options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(_BlockOptions)}

    def uses_output_projection(self, features: int) -> bool:
        """Whether the recurrence's output is projected back to ``features`` (always when the widths differ)."""
        if self.output_projection is None:
            return self.cell.output_size != features
        return self.output_projection

    # --------------------------------------------------------------- pieces
    def _init_norm(self, features: int) -> Params:
        params = {"scale": jnp.ones((features,), self.param_dtype)}
        if self.norm == "layer":
            params["bias"] = jnp.zeros((features,), self.param_dtype)
        return params

    def _norm(self, params: Params, x: Array) -> Array:
        if self.norm == "layer":
            return layer_norm(x, params["scale"], params["bias"], _EPS)
        # RMSNorm (Zhang & Sennrich, 2019): no centring, no bias; statistics in at least float32.
        xf = x.astype(stats_dtype(x.dtype))
        scaled = xf * jax.lax.rsqrt(jnp.mean(jnp.square(xf), axis=-1, keepdims=True) + _EPS)
        normalised: Array = scaled.astype(x.dtype) * params["scale"].astype(x.dtype)
        return normalised

    def _init_dense(self, key: Array, fan_in: int, fan_out: int) -> Params:
        return {
            "kernel": self.kernel_init(key, (fan_in, fan_out), self.param_dtype),
            "bias": jnp.zeros((fan_out,), self.param_dtype),
        }

    def _dense(self, params: Params, x: Array) -> Array:
        return dense(x, params["kernel"], params["bias"], x.dtype)


def causal_depthwise_conv(xs: Array, kernel: Array, bias: Array) -> Array:
    """``ys[..., T, D]``, ``ys_t = Σ_j kernel[j] ⊙ xs_{t-K+1+j} + bias`` (zeros before the start).

    A short per-channel convolution over the last ``K`` steps, as Mamba-style
    blocks put before the recurrence; ``K`` shifted products (``K`` is 2–8).
    """
    K, T = kernel.shape[0], xs.shape[-2]
    padded = jnp.pad(xs, [(0, 0)] * (xs.ndim - 2) + [(K - 1, 0), (0, 0)])
    kernel = kernel.astype(xs.dtype)
    ys = bias.astype(xs.dtype) + sum(padded[..., j : j + T, :] * kernel[j] for j in range(K))
    return ys


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecurrentBlock(_BlockOptions):
    """A recurrence in a pre-norm residual block: ``xs[*B, T, F] → ys[*B, T, F]``.

    Math (``N`` the norm, ``R`` the cell scanned over time, ``drop`` dropout)::

        h  = N₁(x)
        u  = conv(h)                           (conv_kernel: causal depthwise, K steps)
        r  = R(u)                              (the cell's own input projection F → width)
        r  = r ⊙ act(h W_g + b_g)              (gated)
        r  = r W_o + b_o                       (output_projection; default: when width ≠ F)
        r  = (a W_1 + b_1) ⊙ σ(a W_2 + b_2),  a = act(r)        (output_glu)
        x' = x + drop(r)
        y  = x' + drop(MLP(N₂(x')))            (mlp: "mlp" W_4 act(W_3 ·), "glu" W_4 (act(W_3 ·) ⊙ W_5 ·), None)

    The minGRU/minLSTM paper's block (Feng et al., 2024) is the default:
    LayerNorm, the recurrence, a residual, then a 4× MLP. The LRU's block
    (Orvieto et al., 2023) is ``output_glu=True, mlp=None`` with an
    ``lru(N, out_features=F)`` cell. ``recurrax.nn.RecurrentBlock`` and the
    backbones ``"min_gru"``, ``"min_lstm"``, ``"lru"`` build these.

    Attributes:
      cell: the recurrence; its ``hidden_size`` is the block's inner width
        (an expansion factor of 2 means ``hidden_size = 2F``).
      norm: ``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm) before each branch.
      conv_kernel: a causal depthwise convolution of this many steps before
        the recurrence (``None``: none).
      gated: multiply the recurrence's output by ``act`` of a projection of
        the normalised input (Griffin/Mamba-style output gate).
      output_projection: project the recurrence's output back to ``F``
        (``None``: exactly when the cell's output size is not ``F``).
      output_glu: ``act`` then a gated linear unit on the branch's output (LRU).
      mlp: the second branch, ``"mlp"``, ``"glu"`` or ``None`` (no second branch).
      mlp_ratio: the MLP's hidden width, as a multiple of ``F``.
      activation: the nonlinearity of the gate, the GLU and the MLP.
      dropout_rate: dropout on each branch's output (only with a ``dropout_key``).
      scan_options: how the cell is scanned (default: ``method="parallel"``
        for a linear cell, else sequential); per-call ``lengths`` go to apply.
      kernel_init: initialiser of the block's own dense kernels (biases are zero).
      dtype, param_dtype: compute and storage dtypes of the block's own layers.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> block = recurrax.RecurrentBlock(cell=recurrax.min_gru(16))  # width 16 = 2 × F
      >>> params = block.init(jax.random.key(0), features=8)
      >>> apply = jax.jit(block.apply)  # one compiled program instead of one per operation
      >>> apply(params, jnp.ones((2, 5, 8)), lengths=jnp.array([5, 3])).shape
      (2, 5, 8)
    """

    def init(self, key: Array, features: int) -> Params:
        """Fresh parameters for a block of width ``features`` (``F``)."""
        check_positive_int(features, "features")
        k_conv, k_cell, k_gate, k_out, k_glu, k_mlp1, k_mlp2, k_mlp3 = jax.random.split(key, 8)
        width = self.cell.output_size
        params: Params = {"norm": self._init_norm(features)}
        if self.conv_kernel is not None:
            params["conv"] = {
                "kernel": jax.random.normal(k_conv, (self.conv_kernel, features), self.param_dtype)
                / jnp.sqrt(jnp.asarray(self.conv_kernel, self.param_dtype)),
                "bias": jnp.zeros((features,), self.param_dtype),
            }
        params["cell"] = self.cell.init(k_cell, features)
        if self.gated:
            params["gate"] = self._init_dense(k_gate, features, width)
        if self.uses_output_projection(features):
            params["out"] = self._init_dense(k_out, width, features)
        elif width != features:
            raise ValueError(
                f"RecurrentBlock: output_projection=False needs the cell's output size ({width}) to equal "
                f"features ({features})"
            )
        if self.output_glu:
            params["glu"] = self._init_dense(k_glu, features, 2 * features)
        if self.mlp is not None:
            hidden = self.mlp_ratio * features
            params["mlp_norm"] = self._init_norm(features)
            params["mlp"] = {
                "hidden": self._init_dense(k_mlp1, features, hidden),
                "out": self._init_dense(k_mlp2, hidden, features),
            }
            if self.mlp == "glu":
                params["mlp"]["value"] = self._init_dense(k_mlp3, features, hidden)
        return params

    def features(self, params: Params) -> int:
        """The block's width ``F``, read from ``params``."""
        return int(params["norm"]["scale"].shape[0])

    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
    ) -> Array:
        """``xs[*B, T, F] → ys[*B, T, F]``; zeros past ``lengths``; dropout only with ``dropout_key``."""
        xs, lengths = check_block_inputs(xs, lengths, features=self.features(params), time_major=time_major)
        dt = compute_dtype(self.dtype, xs, params["norm"]["scale"])
        # Padding may hold NaN or Inf: it is cleaned before any arithmetic reaches it.
        valid = padding_mask(lengths, xs.shape[-2])
        ys = zero_padding(self._run(params, zero_padding(xs, valid).astype(dt), lengths, dropout_key), valid)
        return from_batch_major(ys, time_major)

    def _run(self, params: Params, x: Array, lengths: Array | None, dropout_key: Array | None) -> Array:
        """The block on clean, batch-major ``x[*B, T, F]`` in the compute dtype."""
        k_mix, k_mlp = split_key(dropout_key, 2)
        act = ACTIVATIONS[self.activation]
        h = self._norm(params["norm"], x)
        u = h
        if "conv" in params:
            u = causal_depthwise_conv(h, params["conv"]["kernel"], params["conv"]["bias"])
        r, _ = scan(self.cell, params["cell"], u, lengths=lengths, options=self.options)
        r = r.astype(x.dtype)
        if "gate" in params:
            r = r * act(self._dense(params["gate"], h))
        if "out" in params:
            r = self._dense(params["out"], r)
        if "glu" in params:
            value, gate = jnp.split(self._dense(params["glu"], act(r)), 2, axis=-1)
            r = value * jax.nn.sigmoid(gate)
        x = x + dropout(r, self.dropout_rate, k_mix)
        if self.mlp is None:
            return x
        mlp = params["mlp"]
        h = self._norm(params["mlp_norm"], x)
        hidden = act(self._dense(mlp["hidden"], h))
        if "value" in mlp:
            hidden = hidden * self._dense(mlp["value"], h)
        return x + dropout(self._dense(mlp["out"], hidden), self.dropout_rate, k_mlp)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecurrentStack(_BlockOptions):
    """``num_blocks`` :class:`RecurrentBlock` s: a backbone ``xs[*B, T, D] → ys[*B, T, features]``.

    The inputs are projected to ``features`` (when it differs from ``D``), run
    through the blocks, and normalised (``final_norm``: pre-norm blocks leave
    their sum un-normalised). The block options are the same fields as
    :class:`RecurrentBlock`'s.

    Attributes:
      num_blocks: how many blocks (the depth).
      features: the model width ``F`` (``None``: the input features ``D``).
      final_norm: normalise the last block's output.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> stack = recurrax.RecurrentStack(cell=recurrax.min_gru(8), num_blocks=3, features=8)
      >>> params = stack.init(jax.random.key(0), in_features=2)
      >>> jax.jit(stack.apply)(params, jnp.ones((4, 6, 2))).shape
      (4, 6, 8)
    """

    num_blocks: int = 1
    features: int | None = None
    final_norm: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_fields(self, "num_blocks", "features")

    @property
    def block(self) -> RecurrentBlock:
        return RecurrentBlock(**self.block_options())

    def model_features(self, in_features: int) -> int:
        return in_features if self.features is None else self.features

    def init(self, key: Array, in_features: int) -> Params:
        """Fresh parameters for inputs with ``in_features`` features."""
        check_positive_int(in_features, "in_features")
        F = self.model_features(in_features)
        keys = jax.random.split(key, self.num_blocks + 1)
        params: Params = {}
        if in_features != F:
            params["input"] = self._init_dense(keys[0], in_features, F)
        params["blocks"] = [self.block.init(k, F) for k in keys[1:]]
        if self.final_norm:
            params["final_norm"] = self._init_norm(F)
        return params

    def in_features(self, params: Params) -> int:
        """The input features ``D`` that ``params`` expect."""
        if "input" in params:
            return int(params["input"]["kernel"].shape[0])
        return self.block.features(params["blocks"][0])

    def apply(
        self,
        params: Params,
        xs: Array,
        *,
        lengths: Array | None = None,
        time_major: bool = False,
        dropout_key: Array | None = None,
    ) -> Array:
        """``xs[*B, T, D] → ys[*B, T, features]``; zeros past ``lengths``; dropout only with ``dropout_key``."""
        xs, lengths = check_block_inputs(xs, lengths, features=self.in_features(params), time_major=time_major)
        block_params = params["blocks"]
        dt = compute_dtype(self.dtype, xs, block_params[0]["norm"]["scale"])
        valid = padding_mask(lengths, xs.shape[-2])
        h = zero_padding(xs, valid).astype(dt)
        if "input" in params:
            h = self._dense(params["input"], h)
        block = self.block
        for p, key in zip(block_params, split_key(dropout_key, len(block_params)), strict=True):
            h = block._run(p, h, lengths, key)
        if "final_norm" in params:
            h = self._norm(params["final_norm"], h)
        return from_batch_major(zero_padding(h, valid), time_major)
