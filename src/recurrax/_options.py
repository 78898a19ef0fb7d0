"""``ScanOptions``: how the engine runs a cell over a sequence, as one object that travels through every layer.

Per-call data (``lengths``, ``resets``, ``initial_carry``) are arguments of
each call; the static choices below are set once — on a layer, a stack, a
backbone — and handed down unchanged. Every public function that runs the
engine takes ``options=ScanOptions(...)`` and, for convenience, the same
fields as keywords (:func:`accepts_scan_options` lists them in its signature).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import jax

from recurrax._validation import check_choice

METHODS: tuple[str, ...] = ("sequential", "parallel")
Method = Literal["sequential", "parallel"]
KERNELS: tuple[str, ...] = ("auto", "xla", "pallas", "cudnn")
Kernel = Literal["auto", "xla", "pallas", "cudnn"]

#: Backend → loop steps per iteration when ``ScanOptions.unroll`` is None. Only measured backends are here:
#: on an H200 (``benchmarks/results/gpu_levers.md``, LSTM training at (B,T,D,H) = (64,256,128,256)) the
#: fused loop took 7.2 ms at 1, 5.5 at 2, 4.8 at 4 and 4.2 at 8 steps per iteration, the plain hoisted loop
#: 10.2 and 4.9 ms at 1 and 8: each iteration of an XLA while loop on a GPU costs its launches and a
#: predicate read. On CPU 1 stays (unrolling copied a slow fusion, ``benchmarks/README.md``); TPU: unmeasured.
DEFAULT_UNROLL: dict[str, int] = {"gpu": 8}


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def _check_optional_bool(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{name} must be None, True or False, got {value!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScanOptions:
    """How :func:`recurrax.scan` runs a cell; hashable, so it can be a static argument of ``jit``.

    Attributes:
      time_major: ``xs`` and ``ys`` are ``[T, *B, ...]`` instead of ``[*B, T, ...]``.
      reverse: run each example backwards over its own valid steps; outputs stay aligned with ``xs``.
      unroll: steps unrolled in each loop iteration (``lax.scan``'s ``unroll``; ``True``: all;
        ``None``: the backend's measured default, :data:`DEFAULT_UNROLL`, read by :meth:`steps_per_iteration`).
      remat: recompute each step in the backward pass instead of storing its
        intermediates (gradient checkpointing: memory ``O(T·|carry|)``).
      method: ``"sequential"``, or ``"parallel"`` for a cell with a linear-recurrence
        form (``jax.lax.associative_scan``, depth O(log T)); same results.
      hoist_input_projection: apply the input matmul to all steps before the loop
        (``None``: as the cell prefers on this backend, :meth:`Cell.hoists_by_default`).
      fused: use the cell's whole-sequence implementation (:meth:`Cell.sequence`)
        when it has one (``None``: whenever it supports the call; ``True``:
        raise where it does not; ``False``: always the step loop).
      kernel: which whole-sequence implementation a cell that offers several
        runs (``docs/kernels.md``): ``"auto"`` (the cell's choice for this
        backend: today its XLA loop everywhere), ``"xla"`` (its fused XLA
        loop; for a linear cell with ``method="parallel"``, the associative
        scan), ``"pallas"`` (one Pallas kernel over all steps: LSTM, GRU,
        SimpleRNN and any ``MatmulGatedCell``, and the linear cells' recurrence
        under ``method="parallel"``; interpreted off GPU; on GPU the
        gates-from-a-matmul kernels are not yet seen to compile
        and the linear one is untried, docs/kernels.md) or ``"cudnn"`` (cuDNN's
        LSTM through ``jax.experimental.rnn``, CUDA GPUs). A kernel that cannot
        run the call falls back to the XLA loop or the associative scan
        (``fused=True``: raises with the reason); cells without that kernel ignore it.

    Example:
      >>> import jax, jax.numpy as jnp, recurrax
      >>> options = recurrax.ScanOptions(reverse=True, unroll=2)
      >>> cell = recurrax.gru(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> ys, _ = recurrax.scan(cell, params, jnp.ones((2, 5, 3)), options=options)
      >>> options.replace(reverse=False).reverse, ys.shape
      (False, (2, 5, 4))
    """

    time_major: bool = False
    reverse: bool = False
    unroll: int | bool | None = None
    remat: bool = False
    method: Method = "sequential"
    hoist_input_projection: bool | None = None
    fused: bool | None = None
    kernel: Kernel = "auto"

    def __post_init__(self) -> None:
        for name in ("time_major", "reverse", "remat"):
            _check_bool(getattr(self, name), name)
        check_choice(self.method, "method", METHODS)
        check_choice(self.kernel, "kernel", KERNELS)
        _check_optional_bool(self.hoist_input_projection, "hoist_input_projection")
        _check_optional_bool(self.fused, "fused")
        unroll = self.unroll
        if isinstance(unroll, bool):
            object.__setattr__(self, "unroll", True if unroll else 1)
        elif unroll is not None and (not isinstance(unroll, int) or unroll < 1):
            raise ValueError(f"unroll must be None, a positive int or a bool, got {unroll!r}")

    def steps_per_iteration(self) -> int | bool:
        """``unroll`` as ``lax.scan`` takes it: the caller's, else :data:`DEFAULT_UNROLL` for the backend, else 1."""
        if self.unroll is not None:
            return self.unroll
        return DEFAULT_UNROLL.get(jax.default_backend(), 1)

    def replace(self, **changes: Any) -> ScanOptions:
        """A copy with some fields changed (checked like the constructor)."""
        _check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def resolve(cls, options: ScanOptions | None, overrides: Mapping[str, Any]) -> ScanOptions:
        """``options`` (default: all defaults) with the fields given as keywords replaced."""
        if options is not None and not isinstance(options, ScanOptions):
            raise TypeError(f"options must be a recurrax.ScanOptions or None, got {type(options).__name__}")
        base = options if options is not None else _DEFAULT
        return base.replace(**overrides) if overrides else base


_DEFAULT = ScanOptions()
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ScanOptions))


def _check_names(changes: Mapping[str, Any]) -> None:
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise TypeError(f"unknown scan option(s) {unknown}; the options are {list(FIELDS)}")


F = TypeVar("F", bound=Callable[..., Any])


def accepts_scan_options(func: F) -> F:
    """Lists every :class:`ScanOptions` field as a keyword in ``func``'s signature (for ``help`` and docs).

    ``func`` takes ``options: ScanOptions | None`` and ``**overrides`` and calls
    :meth:`ScanOptions.resolve`; the fields are declared once, on ScanOptions.
    """
    signature = inspect.signature(func)
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    fields = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in dataclasses.fields(ScanOptions)
    ]
    func.__signature__ = signature.replace(parameters=[*kept, *fields])  # type: ignore[attr-defined]
    return func
