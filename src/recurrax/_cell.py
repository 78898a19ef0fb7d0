"""The cell contract: a recurrent cell is a few pure functions over pytrees, and it says what it can do fast.

Shapes, used throughout recurrax:
  ``*B``  any number of leading batch dimensions (possibly none),
  ``T``   sequence length, ``D`` input features, ``H`` hidden units.

A cell is an immutable description (hyper-parameters only). Its parameters are
a plain pytree made by :meth:`Cell.init`; its state ("carry") is a pytree made
by :meth:`Cell.initial_carry`; one time step is :meth:`Cell.step`. Everything
else is optional, and the scan engine *asks* the cell for it — it never looks
at a cell's type:

* an input projection for all steps at once (:meth:`Cell.project_inputs`,
  :meth:`Cell.step_projected`, :meth:`Cell.hoists_by_default`);
* a whole-sequence implementation (:meth:`Cell.sequence`, with
  :meth:`Cell.sequence_unsupported` saying when it cannot run a call);
* a linear-recurrence form (:class:`LinearCell`), which the engine runs with
  an associative scan;
* the recurrent state the regularisation wrappers act on
  (:meth:`Cell.recurrent_state`, :meth:`Cell.step_reading`, :meth:`Cell.zoned_step`);
* named internals per step, for ``scan(..., record=True)`` (:meth:`Cell.recorded_step`).

A cell that is an input projection then one update says so by subclassing
:class:`~recurrax.cells.ProjectedStepCell`, which derives its step, projected
step and recorded step from those two.

Part of the ground floor: the concrete cells (``recurrax.cells``), the
streaming convolution (``recurrax.conv``) and the engine build on it.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from recurrax._options import ScanOptions
from recurrax._params import params_in_features, search_in_features
from recurrax._types import Array, Carry, Params
from recurrax._validation import check_fields, check_float_dtype, check_init_arguments

#: A cell's named internals of one step (gates, cell state, coefficients), leaves ``[*B, ...]``.
Internals = dict[str, Array]

_LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


class Steps(NamedTuple):
    """Per-step masks that a whole-sequence implementation receives, time-major ``[T, *B]``.

    Both are in the order the cell runs the steps (reversed within each
    example's length when ``reverse=True``); either is ``None`` when absent.

    Attributes:
      valid: False past each example's end: there the carry stays as it was and
        the output is zero.
      resets: True where the carry restarts from the initial carry before the step.
    """

    valid: Array | None
    resets: Array | None


Mix = Callable[[Carry, Carry], Carry]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cell(abc.ABC):
    """Base class of every recurrent cell.

    Three dtypes are explicit:
      * ``param_dtype`` — how :meth:`init` stores parameters;
      * ``dtype`` — the compute dtype of matmuls and gates (``None``: the
        promotion of the input and parameter dtypes);
      * ``carry_dtype`` — the dtype of the recurrent state, where errors
        accumulate over time (``None``: float32 when computing in bf16/f16,
        else the compute dtype).

    Subclasses implement :meth:`init`, :meth:`initial_carry` and :meth:`step`;
    the rest of the methods are optional abilities with working defaults (see
    ``docs/architecture.md``, "Adding a cell" and "Making your cell fast").
    An initialiser field given as ``None`` takes its declared default.
    """

    hidden_size: int = dataclasses.field(kw_only=False)
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    carry_dtype: DTypeLike | None = None

    #: the cell implements :meth:`project_inputs` and :meth:`step_projected`.
    supports_input_projection: ClassVar[bool] = False
    #: the cell is a :class:`LinearCell` (the engine may scan it in parallel).
    is_linear: ClassVar[bool] = False
    #: the carry holds randomness drawn once per sequence (recurrent dropout and zoneout wrappers).
    stochastic: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "init" in cls.__dict__:
            cls.init = _accept_input_size_keyword(cls.__dict__["init"])  # type: ignore[method-assign]
        if "input_size" in cls.__dict__:
            warnings.warn(
                f"{cls.__name__} defines input_size(params), which recurrax no longer calls (the engine checks "
                "parameters against init's shapes); remove it",
                DeprecationWarning,
                stacklevel=2,
            )

    def __post_init__(self) -> None:
        if not isinstance(self.hidden_size, int) or isinstance(self.hidden_size, bool):
            raise TypeError(
                f"hidden_size must be a positive int, got {type(self.hidden_size).__name__} {self.hidden_size!r}"
            )
        if self.hidden_size <= 0:
            raise ValueError(f"hidden_size must be a positive int, got {self.hidden_size}")
        check_fields(self)
        for name in ("dtype", "param_dtype", "carry_dtype"):
            check_float_dtype(getattr(self, name), name, allow_complex=True)
        for field in dataclasses.fields(self):
            if field.name.endswith("_init") and getattr(self, field.name) is None:
                object.__setattr__(self, field.name, field.default)

    # ----------------------------------------------------------------- contract
    @abc.abstractmethod
    def init(self, key: Array, in_features: int) -> Params:
        """Returns a fresh parameter pytree for inputs of ``in_features`` features."""

    @abc.abstractmethod
    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype: DTypeLike | None = None) -> Carry:
        """Returns the zero state with leaves of shape ``(*batch_shape, ...)``."""

    @abc.abstractmethod
    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One time step: ``x[*B, D]`` and ``carry`` → ``(carry, y[*B, output_size])``."""

    @property
    def output_size(self) -> int:
        """Features of ``y``; ``hidden_size`` unless the cell projects its output."""
        return self.hidden_size

    # ------------------------------------------------- optional: input projection
    def project_inputs(self, params: Params, xs: Array) -> Array:
        """Applies the input matmul to any number of steps: ``xs[..., D] → [..., G]``."""
        raise NotImplementedError(f"{type(self).__name__} has no separable input projection")

    def step_projected(self, params: Params, carry: Carry, projected_x: Array) -> tuple[Carry, Array]:
        """:meth:`step` on an input already passed through :meth:`project_inputs`."""
        raise NotImplementedError(f"{type(self).__name__} has no separable input projection")

    def hoists_by_default(self) -> bool:
        """Whether the engine applies :meth:`project_inputs` before the loop when the caller does not say.

        Not on CPU: there the matmul inside the step was faster for every cell
        and mode measured but minGRU training (no ``[T, B, G·H]`` buffer;
        ``benchmarks/README.md``). Elsewhere yes: on an H200 the hoisted loop
        won every block (``benchmarks/results/gpu.md``).
        """
        return self.supports_input_projection and jax.default_backend() != "cpu"

    def hoists(self, options: ScanOptions) -> bool:
        """Whether a scan with ``options`` applies the input projection before the loop.

        The caller's ``hoist_input_projection``, else :meth:`hoists_by_default`.
        The step loop and the fused loops both decide it here.
        """
        if options.hoist_input_projection is None:
            return self.hoists_by_default()
        if options.hoist_input_projection and not self.supports_input_projection:
            raise ValueError(f"hoist_input_projection=True but {type(self).__name__} has no input projection")
        return options.hoist_input_projection

    # ------------------------------------------------------ optional: recording
    def recorded_step(
        self, params: Params, carry: Carry, x: Array, *, projected: bool = False
    ) -> tuple[Carry, Array, Internals]:
        """One step and its named internals: ``(carry, y, {name: [*B, ...]})``.

        What ``recurrax.scan(..., record=True)`` calls at every step
        (``projected``: ``x`` went through :meth:`project_inputs` first). The
        default records nothing. A cell that records computes its step and its
        internals in one place and has :meth:`step` drop the dict, so the two
        cannot diverge and a step that records nothing computes nothing more:
        every recorded value is one the step needs anyway. A subclass that
        overrides the step falls back to this default (its internals are its own).
        """
        new, y = self.step_projected(params, carry, x) if projected else self.step(params, carry, x)
        return new, y, {}

    def _own_step(self, base: type[Any]) -> bool:
        """Whether this cell steps with ``base``'s own step (not a subclass's override): then ``base`` may record."""
        return type(self).step is base.step and type(self).step_projected is base.step_projected

    # ----------------------------------------------- optional: whole-sequence path
    def sequence(
        self, params: Params, carry: Carry, xs: Array, steps: Steps, options: ScanOptions
    ) -> tuple[Array, Carry]:
        """Runs the whole time-major sequence ``xs[T, *B, D]`` at once: ``(ys[T, *B, O], final_carry)``.

        The fast path a cell may offer (its own loop with a ``custom_jvp``, a
        cuDNN call, a Pallas kernel). It must equal the engine's step loop:
        past ``steps.valid`` the carry freezes and ``ys`` is zero, and at
        ``steps.resets`` the carry restarts from ``carry`` (the initial carry).
        ``xs`` is already in running order (reversed for ``options.reverse``);
        ``options`` carries ``unroll``, ``remat`` and ``hoist_input_projection``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no whole-sequence implementation")

    def sequence_unsupported(self, params: Params, carry: Carry, xs: Array, options: ScanOptions) -> str | None:
        """Why :meth:`sequence` cannot run this call exactly (``None``: it can).

        The default accepts every call when the class implements
        :meth:`sequence`. Override it to decline dtypes or variants the fast
        path does not cover; the engine then falls back to the step loop (or,
        with ``fused=True``, raises with this reason).
        """
        if type(self).sequence is Cell.sequence:
            return f"{type(self).__name__} has no whole-sequence implementation"
        return None

    def overrides_step(self, base: type[Cell]) -> str | None:
        """The step method a subclass of ``base`` overrides, if any (its fast path then no longer applies)."""
        for name in ("step", "step_projected", "project_inputs", "initial_carry"):
            if getattr(type(self), name) is not getattr(base, name):
                return name
        return None

    # --------------------------------------------- optional: the recurrent state
    def recurrent_state(self, carry: Carry) -> Array:
        """The state ``h[*B, P]`` that the next step reads through its recurrent weights and outputs.

        What recurrent dropout drops and zoneout mixes. Cells without one (whose
        gates see only ``x``, or whose output is not its state) keep the default,
        which refuses.
        """
        raise NotImplementedError(
            f"{type(self).__name__} exposes no recurrent state h (the state its recurrent weights read and it "
            "outputs); recurrent dropout and zoneout need one"
        )

    def replace_recurrent_state(self, carry: Carry, h: Array) -> Carry:
        """``carry`` with its recurrent state replaced by ``h`` (the inverse of :meth:`recurrent_state`)."""
        if isinstance(carry, jax.Array | jnp.ndarray) or hasattr(carry, "shape"):
            return h
        raise NotImplementedError(f"{type(self).__name__} must implement replace_recurrent_state")

    def step_reading(
        self, params: Params, carry: Carry, x: Array, recurrent_input: Array, *, projected: bool = False
    ) -> tuple[Carry, Array]:
        """One step whose recurrent weights read ``recurrent_input`` instead of the carry's state (recurrent dropout).

        The default replaces the state in the carry; a cell that also uses its
        state outside the recurrent weights (the GRU's ``z ⊙ h``) overrides it.
        """
        read = self.replace_recurrent_state(carry, recurrent_input)
        return self.step_projected(params, read, x) if projected else self.step(params, read, x)

    def zoned_step(
        self, params: Params, carry: Carry, x: Array, mix: Mix, *, projected: bool = False
    ) -> tuple[Carry, Array]:
        """One step whose new carry is ``mix(previous, candidate)`` (zoneout); returns ``(carry, y)``.

        The default mixes the whole carry and outputs the mixed recurrent state.
        """
        new, y = self.step_projected(params, carry, x) if projected else self.step(params, carry, x)
        mixed = mix(carry, new)
        return mixed, self.recurrent_state(mixed).astype(y.dtype)

    # ------------------------------------------------------ optional: randomness
    def random_initial_carry(self, batch_shape: tuple[int, ...], key: Array | None) -> Carry:
        """The initial carry with this sequence's randomness drawn from ``key`` (a :attr:`stochastic` cell's)."""
        return self.initial_carry(batch_shape)

    def with_deterministic(self, deterministic: bool) -> Cell:
        """This cell in evaluation (True) or training (False) mode; a cell without randomness is itself."""
        return self

    # ------------------------------------------------------------------ dtypes
    def compute_dtype(self, *arrays: Any) -> jnp.dtype:
        """The dtype that matmuls and gates use for these inputs."""
        if self.dtype is not None:
            return jnp.dtype(self.dtype)
        return jnp.result_type(*arrays, self.param_dtype)

    def state_dtype(self, dtype: DTypeLike | None = None) -> jnp.dtype:
        """The dtype of the carry (the recurrence's accumulation dtype)."""
        if dtype is not None:
            return jnp.dtype(dtype)
        if self.carry_dtype is not None:
            return jnp.dtype(self.carry_dtype)
        compute = jnp.dtype(self.dtype) if self.dtype is not None else jnp.dtype(self.param_dtype)
        return jnp.dtype(jnp.float32) if compute in _LOW_PRECISION else compute

    def _affine_projection(self, xs: Array, kernel: Array, bias: Array) -> Array:
        """``xs · kernel + bias`` in the compute dtype: the input projection of the dense cells."""
        dt = self.compute_dtype(xs, kernel)
        return jnp.matmul(xs.astype(dt), kernel.astype(dt)) + bias.astype(dt)

    def in_features_of(self, params: Params) -> int | None:
        """The input width these parameters were made for (None: none found); see :func:`params_in_features`.

        Only for messages and the deprecated :meth:`input_size`: the engine checks
        parameters against :meth:`init`'s shapes instead. The default searches the
        widths that appear in the parameters' shapes; a cell whose width is not one
        of them (a ConvLSTM's is positions × channels) says it directly.
        """
        return search_in_features(self, params)

    # -------------------------------------------------------------- deprecated
    def input_size(self, params: Params) -> int:
        """Deprecated: the input features ``D`` that ``params`` were made for (see :func:`params_in_features`)."""
        warnings.warn(
            "Cell.input_size(params) is deprecated; recurrax.params_in_features(cell, params) finds D",
            DeprecationWarning,
            stacklevel=2,
        )
        found = params_in_features(self, params)
        if found is None:
            raise ValueError(f"no input width makes {type(self).__name__}.init produce these parameters")
        return found


def _accept_input_size_keyword(init: Callable[..., Params]) -> Callable[..., Params]:
    """Wraps a cell's ``init``: checks its arguments, and keeps the old keyword ``input_size=`` working (warned)."""
    if getattr(init, "_accepts_input_size", False):
        return init

    @functools.wraps(init)
    def wrapper(self: Cell, key: Array, *args: Any, **kwargs: Any) -> Params:
        if "input_size" in kwargs:
            warnings.warn(
                "init(key, input_size=...) is deprecated; the size keyword is in_features=",
                DeprecationWarning,
                stacklevel=2,
            )
            if args or "in_features" in kwargs:
                raise TypeError("give the input width once, as in_features")
            kwargs["in_features"] = kwargs.pop("input_size")
        check_init_arguments(key, args[0] if args else kwargs.get("in_features"))
        return init(self, key, *args, **kwargs)

    wrapper._accepts_input_size = True  # type: ignore[attr-defined]
    return wrapper
