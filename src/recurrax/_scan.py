"""The one scan engine that runs any cell over a sequence.

It knows no concrete cell: it asks the cell what it can do (a whole-sequence
implementation, an input projection, a linear-recurrence form) and falls back
to the cell's step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, overload

import jax
import jax.numpy as jnp
import numpy as np

from recurrax._cell import Cell, Steps
from recurrax._linear_cell import LinearCell
from recurrax._ops import padding_mask, tree_where, zero_padding
from recurrax._options import ScanOptions, accepts_scan_options
from recurrax._parallel import parallel_scan, per_step_form
from recurrax._params import check_params
from recurrax._types import Array, Carry, Params
from recurrax._validation import check_initial_carry, check_lengths, check_mask_like, check_sequence

StepFunction = Callable[[Carry, Array], tuple[Carry, Array]]
#: What ``scan(..., record=True)`` adds: each recorded internal by name, leaves ``[*B, T, ...]``.
Records = dict[str, Array]
ScanResult = (
    tuple[Array, Carry]
    | tuple[Array, Carry, Carry]
    | tuple[Array, Carry, Records]
    | tuple[Array, Carry, Carry, Records]
)


# The overloads give `ys, carry = scan(...)`, `ys, carry, carries = scan(..., return_carries=True)`,
# `ys, carry, records = scan(..., record=True)` and `ys, carry, carries, records` (both) each their
# own tuple type, so that unpacking any of them checks.
@overload
def scan(
    cell: Cell | StepFunction,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = ...,
    lengths: Array | None = ...,
    resets: Array | None = ...,
    return_carries: Literal[False] = ...,
    carry_perturbation: Carry | None = ...,
    record: Literal[False] = ...,
    options: ScanOptions | None = ...,
    **scan_options: Any,
) -> tuple[Array, Carry]: ...


@overload
def scan(
    cell: Cell | StepFunction,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = ...,
    lengths: Array | None = ...,
    resets: Array | None = ...,
    return_carries: Literal[True],
    carry_perturbation: Carry | None = ...,
    record: Literal[False] = ...,
    options: ScanOptions | None = ...,
    **scan_options: Any,
) -> tuple[Array, Carry, Carry]: ...


@overload
def scan(
    cell: Cell | StepFunction,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = ...,
    lengths: Array | None = ...,
    resets: Array | None = ...,
    return_carries: Literal[False] = ...,
    carry_perturbation: Carry | None = ...,
    record: Literal[True],
    options: ScanOptions | None = ...,
    **scan_options: Any,
) -> tuple[Array, Carry, Records]: ...


@overload
def scan(
    cell: Cell | StepFunction,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = ...,
    lengths: Array | None = ...,
    resets: Array | None = ...,
    return_carries: Literal[True],
    carry_perturbation: Carry | None = ...,
    record: Literal[True],
    options: ScanOptions | None = ...,
    **scan_options: Any,
) -> tuple[Array, Carry, Carry, Records]: ...


@overload
def scan(
    cell: Cell | StepFunction,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = ...,
    lengths: Array | None = ...,
    resets: Array | None = ...,
    return_carries: bool = ...,
    carry_perturbation: Carry | None = ...,
    record: bool = ...,
    options: ScanOptions | None = ...,
    **scan_options: Any,
) -> ScanResult: ...


@accepts_scan_options
def scan(
    cell: Cell | StepFunction,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    lengths: Array | None = None,
    resets: Array | None = None,
    return_carries: bool = False,
    carry_perturbation: Carry | None = None,
    record: bool = False,
    options: ScanOptions | None = None,
    **scan_options: Any,
) -> ScanResult:
    """Runs ``cell`` over the time axis of ``xs``; equal to this Python loop::

        def scan(cell, params, xs, initial_carry, lengths, resets, reverse):
            for b in batch:                           # every example on its own
                carry = initial_carry[b]
                steps = range(lengths[b])             # only the valid steps
                for t in (reversed(steps) if reverse else steps):
                    # resets[b, t] marks the first step of an episode; backwards,
                    # an episode is entered at its last step instead.
                    if (resets[b, t + 1] if reverse else resets[b, t]):
                        carry = initial_carry[b]
                    carry, ys[b, t] = cell.step(params, carry, xs[b, t])
                ys[b, lengths[b]:] = 0                # padding outputs are zero
                final_carry[b] = carry                # the carry at b's own end
            return ys, final_carry

    Shapes:
      xs: ``[*B, T, D]`` (``*B``: any batch dims, possibly none), or ``[T, *B, D]`` with ``time_major``.
      lengths: ``[*B]`` integers in ``[1, T]``; default: all ``T``.
      resets: ``[*B, T]`` (``[T, *B]`` time-major) booleans.
      returns: ``ys`` ``[*B, T, O]`` (``[T, *B, O]``) and the final carry
        (leaves ``[*B, ...]``); with ``return_carries`` also the carry after
        every step, leaves ``[*B, T, ...]`` (``[T, *B, ...]``), in ``xs``'s
        order; with ``record`` last the records, ``{name: [*B, T, ...]}``
        (``[T, *B, ...]``), in ``xs``'s order and zero past ``lengths``.

    How the loop runs is the cell's to offer and ``options``' to choose
    (:class:`~recurrax.ScanOptions`, or its fields as keywords): the cell's
    whole-sequence implementation when it has one (``fused``), its input
    projection hoisted out of the loop (``hoist_input_projection``), an
    associative scan of its linear-recurrence form (``method="parallel"``),
    ``unroll``, ``remat``, ``reverse`` and ``time_major`` — always with the
    loop's results.

    Args:
      cell: a :class:`~recurrax.Cell`, or any ``step(carry, x) -> (carry, y)``
        function (then ``params`` is ignored and ``initial_carry`` is required,
        unless the function has Flax's ``initialize_carry(input_shape, rngs)``,
        as ``flax.nnx`` cells do: their default zero carry is used).
      params: the cell's parameters, as made by ``cell.init``; checked against
        what ``init`` makes for ``xs``'s features (structure and shapes).
      xs: the input sequence (floating dtype).
      initial_carry: the carry at the first step (default ``cell.initial_carry``).
      lengths: valid length of each example; the carry freezes after it.
        What ``xs`` holds past it never reaches an output or a gradient (NaN
        and Inf included: PyTorch's packed-sequence semantics). Concrete
        lengths outside ``[1, T]`` are refused; traced ones (under ``jit``) are
        clamped to ``[0, T]`` (0: the initial carry and zero outputs) and
        checked when the caller wraps its function in
        ``checkify.checkify(f, errors=checkify.user_checks)``.
      resets: where the carry restarts from ``initial_carry`` (episode starts).
      return_carries: also return the carry after every step (step loop only).
      carry_perturbation: a pytree shaped like the stacked carries whose entry
        ``t`` is added to the carry that step ``t`` receives. Zeros change
        nothing, but the gradient with respect to entry ``t`` is ∂L/∂(the state
        entering step t), through every later output and the final carry —
        gradient flow through time, without changing the model.
      record: also return the cell's named internals at every step (gates,
        cell state, coefficients: :meth:`~recurrax.Cell.recorded_step`; the
        names are in each cell's docstring). It runs the step loop whatever
        ``method`` and ``fused`` say (``fused=True`` raises), with the same
        ``ys`` and carry as without it. Off, the program is the one without
        recording. Needs a :class:`~recurrax.Cell`.
      options: how to run it (:class:`~recurrax.ScanOptions`); the keywords
        ``time_major``, ``reverse``, ``unroll``, ``remat``, ``method``,
        ``hoist_input_projection`` and ``fused`` override its fields.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> cell = recurrax.lstm(16)
      >>> params = cell.init(jax.random.key(0), in_features=4)
      >>> xs = jnp.ones((2, 10, 4))
      >>> ys, carry = recurrax.scan(cell, params, xs, lengths=jnp.array([10, 6]))
      >>> bool(jnp.all(ys[1, 6:] == 0))
      True
    """
    options = ScanOptions.resolve(options, scan_options)
    is_cell = isinstance(cell, Cell)
    cell_obj = cell if isinstance(cell, Cell) else None  # narrowed once, for the type checker
    if not is_cell and not callable(cell):
        raise TypeError(f"cell must be a recurrax Cell or a step(carry, x) function, got {type(cell).__name__}")
    if options.method == "parallel" and not (cell_obj is not None and cell_obj.is_linear):
        raise ValueError(
            f"method='parallel' needs a linear-recurrence cell (LinearCell), got {type(cell).__name__}; "
            "use method='sequential'"
        )
    if record:
        if cell_obj is None:
            raise TypeError(
                f"record=True needs a recurrax Cell (it records the cell's named internals), got "
                f"{type(cell).__name__}; a plain step function can return what it wants to see in its outputs"
            )
        if options.fused:
            raise ValueError("fused=True, but record=True runs the step loop (the fused path records nothing)")
        # Recording runs the cell's recorded step in the loop: never the parallel or fused paths.
        options = options.replace(method="sequential", fused=False)
    call = prepare_call(cell, params, xs, initial_carry, lengths, resets, options)
    xs_tm, steps, initial_carry, lengths = call.xs, call.steps, call.initial_carry, call.lengths

    perturbation_tm = None
    if carry_perturbation is not None:
        if options.method == "parallel":
            raise ValueError("carry_perturbation needs method='sequential'")
        perturbation_tm = call.to_running_order(carry_perturbation)

    carries_tm = records_tm = None
    if options.method == "parallel":
        assert isinstance(cell, LinearCell)
        last = None if lengths is None else lengths - 1
        ys_tm, final_carry, carries_tm = parallel_scan(
            cell, params, xs_tm, initial_carry, steps, last,
            default_carry=call.default_carry, time_axis=call.time_axis, options=options,
        )  # fmt: skip
    elif cell_obj is not None and _use_sequence(
        cell_obj, params, initial_carry, xs_tm, options, perturbation_tm, return_carries
    ):
        ys_tm, final_carry = cell_obj.sequence(params, initial_carry, xs_tm, steps, options)
    else:
        if options.fused and cell_obj is None:
            raise ValueError("fused=True needs a recurrax Cell, got a plain step function")
        hoisted = cell_obj is not None and cell_obj.hoists(options)
        step: StepFunction | RecordedStep
        if cell_obj is not None and record:
            step = _recorded_step_function(cell_obj, params, hoisted)
        else:
            step = _step_function(cell, params, hoisted) if isinstance(cell, Cell) else cell
        if cell_obj is not None and hoisted:
            xs_tm = cell_obj.project_inputs(params, xs_tm)
        ys_tm, final_carry, carries_tm, records_tm = _sequential_scan(
            step, xs_tm, initial_carry, steps, perturbation_tm, options, keep_carries=return_carries, record=record
        )

    ys = call.restore(ys_tm)
    if return_carries and record:
        return ys, final_carry, call.restore(carries_tm), call.restore(records_tm)
    if record:
        return ys, final_carry, call.restore(records_tm)
    if return_carries:
        return ys, final_carry, call.restore(carries_tm)
    return ys, final_carry


@dataclasses.dataclass(frozen=True)
class PreparedCall:
    """One call's inputs, checked and in the engine's running order (:func:`prepare_call`).

    Attributes:
      xs: the inputs, time-major ``[T, *B, D]`` (unless ``keep_layout``), reversed within each length for ``reverse``.
      steps: the padding mask and the episode starts, in the same layout and order.
      initial_carry: the carry at the first step (the cell's default when the caller gave none).
      default_carry: whether ``initial_carry`` is the cell's default.
      lengths: the checked ``lengths[*B]``, or None.
      batch_shape: ``*B``.
      keep_layout: the arrays keep the caller's layout (time-major input, or a
        per-step linear cell scanned in parallel forwards, which needs no transpose).
      time_axis: where time is in ``xs`` and ``steps``' masks.
      reverse_index: ``[T, *B]``, the gather that reverses each example's valid steps (None: forwards).
    """

    xs: Array
    steps: Steps
    initial_carry: Carry
    default_carry: bool
    lengths: Array | None
    batch_shape: tuple[int, ...]
    keep_layout: bool
    time_axis: int
    reverse_index: Array | None

    def _to_time_major(self, tree: Any) -> Any:
        axis = len(self.batch_shape)
        return tree if self.keep_layout else jax.tree.map(lambda a: jnp.moveaxis(a, axis, 0), tree)

    def to_running_order(self, tree: Any) -> Any:
        """A pytree with leaves in the caller's layout (``[*B, T, ...]``), as ``xs`` is here."""
        tree = self._to_time_major(tree)
        return tree if self.reverse_index is None else _gather_time(tree, self.reverse_index)

    def restore(self, tree: Any) -> Any:
        """The inverse of :meth:`to_running_order`: results back in the caller's layout and order."""
        if self.reverse_index is not None:
            tree = _gather_time(tree, self.reverse_index)
        axis = len(self.batch_shape)
        return tree if self.keep_layout else jax.tree.map(lambda a: jnp.moveaxis(a, 0, axis), tree)


def prepare_call(
    cell: Cell | StepFunction,
    params: Params,
    xs: Array,
    initial_carry: Carry | None,
    lengths: Array | None,
    resets: Array | None,
    options: ScanOptions,
) -> PreparedCall:
    """Checks a call's inputs and puts them in running order: what every path of the engine starts from."""
    cell_obj = cell if isinstance(cell, Cell) else None
    time_major = options.time_major
    xs = check_sequence(xs, "xs", time_major=time_major, features=None)
    num_steps = xs.shape[0 if time_major else xs.ndim - 2]
    batch_shape = tuple(xs.shape[1:-1] if time_major else xs.shape[:-2])
    if cell_obj is not None:
        check_params(cell_obj, params, xs.shape[-1])

    default_carry = initial_carry is None
    if default_carry:
        initial_carry = _default_carry(cell, batch_shape, xs.shape[-1])
    elif cell_obj is not None:
        check_initial_carry(initial_carry, cell_obj.initial_carry(batch_shape), batch_shape)
    if lengths is not None:
        lengths = check_lengths(lengths, batch_shape, num_steps)
        # Padding is garbage by definition (NaN, Inf, 1e30 all occur). Zeroing it
        # here, before any arithmetic, keeps it out of values and gradients alike:
        # masking a cell's result later still differentiates through NaN * 0.
        xs = zero_padding(xs, padding_mask(lengths, num_steps, time_major=time_major))
    if resets is not None:
        resets = check_mask_like(resets, "resets", batch_shape, num_steps, time_major)

    # Inside, everything is time-major: the loop runs over the leading axis. One
    # exception: a linear cell in the per-step form, scanned in parallel and
    # forwards, reads each step alone, so its associative scan runs along the
    # caller's own time axis, with no transposes before and after it; the
    # `_tm` names below then hold batch-major arrays.
    keep_layout = time_major or (
        options.method == "parallel" and not options.reverse and isinstance(cell, LinearCell) and per_step_form(cell)
    )

    def to_time_major(tree: Any) -> Any:
        return tree if keep_layout else jax.tree.map(lambda a: jnp.moveaxis(a, len(batch_shape), 0), tree)

    xs_tm = to_time_major(xs)
    resets_tm = None if resets is None else to_time_major(resets)
    valid_tm = padding_mask(lengths, num_steps, time_major=time_major or not keep_layout)

    reverse_index = None
    if options.reverse:
        reverse_index = _reverse_within_lengths_index(num_steps, batch_shape, lengths)
        xs_tm = _gather_time(xs_tm, reverse_index)
        if resets_tm is not None:
            # Backwards, the carry restarts at each episode's last step: where
            # the next step starts an episode. (At an example's last valid step
            # the scan starts from the initial carry anyway.)
            shifted = jnp.concatenate([resets_tm[1:], jnp.zeros_like(resets_tm[:1])], axis=0)
            resets_tm = _gather_time(shifted, reverse_index)
    steps = Steps(valid=valid_tm, resets=resets_tm)
    time_axis = 0 if time_major or not keep_layout else len(batch_shape)
    return PreparedCall(
        xs_tm, steps, initial_carry, default_carry, lengths, batch_shape, keep_layout, time_axis, reverse_index
    )


def _default_carry(cell: Cell | StepFunction, batch_shape: tuple[int, ...], features: int) -> Carry:
    if isinstance(cell, Cell):
        return cell.initial_carry(batch_shape)
    initialize = getattr(cell, "initialize_carry", None)  # Flax's cell protocol (nnx.RNNCellBase)
    if initialize is None:
        raise ValueError("initial_carry is required when cell is a plain step function")
    # Flax draws the carry from an rng stream; its default (zeros) ignores the key, so a fixed one will do.
    return initialize((*batch_shape, features), lambda: jax.random.key(0))


def _step_function(cell: Cell, params: Params, hoisted: bool) -> StepFunction:
    if hoisted:

        def projected_step(carry: Carry, x: Array) -> tuple[Carry, Array]:
            return cell.step_projected(params, carry, x)

        return projected_step

    def step(carry: Carry, x: Array) -> tuple[Carry, Array]:
        return cell.step(params, carry, x)

    return step


RecordedStep = Callable[[Carry, Array], tuple[Carry, Array, Records]]


def _recorded_step_function(cell: Cell, params: Params, hoisted: bool) -> RecordedStep:
    def step(carry: Carry, x: Array) -> tuple[Carry, Array, Records]:
        return cell.recorded_step(params, carry, x, projected=hoisted)

    return step


def _use_sequence(
    cell: Cell,
    params: Params,
    initial_carry: Carry,
    xs_tm: Array,
    options: ScanOptions,
    carry_perturbation: Carry | None,
    return_carries: bool,
) -> bool:
    """Asks the cell whether its whole-sequence implementation runs this call; ``fused=True`` raises if not."""
    if options.fused is False:
        return False
    reasons = []
    if options.hoist_input_projection is False and cell.supports_input_projection:
        reasons.append("hoist_input_projection=False")
    if carry_perturbation is not None:
        reasons.append("carry_perturbation")
    if return_carries:
        reasons.append("return_carries=True")
    if not reasons:
        reason = cell.sequence_unsupported(params, initial_carry, xs_tm, options)
        if reason is not None:
            reasons.append(f"{type(cell).__name__}: {reason}")
    if reasons and options.fused:
        raise ValueError(f"fused=True, but the whole-sequence path does not support {'; '.join(reasons)}")
    return not reasons


def _sequential_scan(
    step: StepFunction | RecordedStep,
    xs_tm: Array,
    initial_carry: Carry,
    steps: Steps,
    perturbation_tm: Carry | None,
    options: ScanOptions,
    *,
    keep_carries: bool,
    record: bool = False,
) -> tuple[Array, Carry, Carry | None, Records | None]:
    def body(carry: Carry, inputs: tuple[Any, ...]) -> tuple[Carry, Any]:
        x, valid, reset, perturbation = inputs
        if perturbation is not None:
            carry = jax.tree.map(jnp.add, carry, perturbation)
        start = carry if reset is None else tree_where(reset, initial_carry, carry)
        internals = None
        if record:
            new_carry, y, internals = step(start, x)  # type: ignore[misc]
        else:
            new_carry, y = step(start, x)  # type: ignore[misc]
        if valid is not None:
            # Past an example's end its carry freezes and its outputs (and records) are zero.
            new_carry = tree_where(valid, new_carry, carry)
            y = tree_where(valid, y, jax.tree.map(jnp.zeros_like, y))
            if internals is not None:
                internals = tree_where(valid, internals, jax.tree.map(jnp.zeros_like, internals))
        return new_carry, (y, new_carry if keep_carries else None, internals)

    if options.remat:
        body = jax.checkpoint(body)
    final_carry, (ys, carries, records) = jax.lax.scan(
        body, initial_carry, (xs_tm, steps.valid, steps.resets, perturbation_tm), unroll=options.steps_per_iteration()
    )
    return ys, final_carry, carries, records


def _reverse_within_lengths_index(num_steps: int, batch_shape: tuple[int, ...], lengths: Array | None) -> Array:
    """Index ``[T, *B]`` that reverses each example's first ``lengths[b]`` steps.

    It is its own inverse, so the same gather puts outputs back in place.
    """
    if lengths is None:
        forward = np.arange(num_steps, dtype=np.int32).reshape((num_steps,) + (1,) * len(batch_shape))
        return jnp.broadcast_to(jnp.asarray(num_steps - 1 - forward), (num_steps, *batch_shape))
    steps = jnp.arange(num_steps, dtype=lengths.dtype).reshape((num_steps,) + (1,) * len(batch_shape))
    return jnp.where(padding_mask(lengths, num_steps, time_major=True), lengths[None] - 1 - steps, steps)


def _gather_time(tree: Any, index: Array) -> Any:
    def gather(a: Array) -> Array:
        idx = index.reshape(index.shape + (1,) * (a.ndim - index.ndim))
        return jnp.take_along_axis(a, idx, axis=0)

    return jax.tree.map(gather, tree)
