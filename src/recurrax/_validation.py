"""Checks that turn bad input into one clear error before anything is traced.

Each message names the argument, what it got and what it expected.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import functools
import inspect
import numbers
import sys
import types
import typing
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from recurrax._types import tree_flatten


def is_concrete(value: Any) -> bool:
    """True when ``value``'s contents are known now (not a tracer under jit/grad)."""
    return not isinstance(value, jax.core.Tracer)


def as_array(value: Any, name: str) -> jax.Array | np.ndarray:
    if isinstance(value, (jax.Array, np.ndarray)):
        return value
    try:
        return np.asarray(value)
    except Exception as err:
        raise TypeError(f"{name} must be an array, got {type(value).__name__}") from err


def check_sequence(xs: Any, name: str, *, time_major: bool, features: int | None) -> jax.Array:
    """Checks a sequence input ``[*B, T, D]`` (or ``[T, *B, D]``) and returns it as an array."""
    layout = "[T, *B, D] (time-major)" if time_major else "[*B, T, D] (batch-major)"
    xs = as_array(xs, name)
    if not jnp.issubdtype(xs.dtype, jnp.inexact):
        raise TypeError(
            f"{name} must have a floating dtype, got {xs.dtype}; "
            "cast it (e.g. xs.astype(jnp.float32)) or embed integer tokens first"
        )
    if xs.ndim < 2:
        raise ValueError(f"{name} must have shape {layout} with at least 2 dims, got shape {tuple(xs.shape)}")
    time_axis = 0 if time_major else xs.ndim - 2
    if xs.shape[time_axis] == 0:
        raise ValueError(f"{name} has zero time steps (shape {tuple(xs.shape)}, layout {layout})")
    if features is not None and xs.shape[-1] != features:
        raise ValueError(
            f"{name} has {xs.shape[-1]} features (shape {tuple(xs.shape)}), but the parameters expect "
            f"{features} (layout {layout})"
        )
    return jnp.asarray(xs)


def check_lengths(lengths: Any, batch_shape: tuple[int, ...], num_steps: int) -> jax.Array:
    """Checks per-example ``lengths[*B]`` with values in ``[1, T]``.

    Concrete lengths are checked here. Traced ones (under ``jit``) cannot be, so
    they get a ``checkify`` check (reported when the caller wraps its function in
    ``checkify.checkify(f, errors=checkify.user_checks)``) and are clamped to
    ``[0, T]``: a length above ``T`` acts as ``T``, and a length of 0 or less
    keeps the initial carry and gives zero outputs.
    """
    lengths = as_array(lengths, "lengths")
    if tuple(lengths.shape) != tuple(batch_shape):
        raise ValueError(f"lengths must have the batch shape {tuple(batch_shape)}, got shape {tuple(lengths.shape)}")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
    if is_concrete(lengths) and lengths.size:
        low, high = int(np.min(np.asarray(lengths))), int(np.max(np.asarray(lengths)))
        if low < 1:
            raise ValueError(f"lengths must be >= 1 (zero-length sequences have no output), got min {low}")
        if high > num_steps:
            raise ValueError(f"lengths must be <= the sequence length T={num_steps}, got max {high}")
        return jnp.asarray(lengths)
    lengths = jnp.asarray(lengths)
    debug_check(
        jnp.all((lengths >= 1) & (lengths <= num_steps)),
        f"lengths must be in [1, T={num_steps}], got min {{low}} and max {{high}}",
        low=jnp.min(lengths, initial=num_steps),
        high=jnp.max(lengths, initial=1),
    )
    return jnp.clip(lengths, 0, num_steps)


def debug_check(pred: jax.Array, message: str, **values: jax.Array) -> None:
    """``checkify.debug_check(pred, message, **values)``, traced into the same program every time.

    jax before 0.11 numbers every check it traces from one process-wide counter
    and writes the number into the program, so tracing the same function again
    (a new ``Trainer``, a re-run notebook cell) made a different program: the
    persistent compilation cache missed and each retrace recompiled (a
    ``train_batch``: 1.5-3 s on 2 CPU cores; a test of the CLI 4.7 -> 1.8 CPU-s
    with the number fixed). There the number is taken from the message instead;
    checks with different messages keep different numbers, which is all checkify
    needs to report the right one. Newer jax numbers checks per ``checkify`` call.
    """
    internal = sys.modules["jax._src.checkify"]
    counter = getattr(internal, "next_code", None)
    if not callable(counter):  # jax >= 0.11
        checkify.debug_check(pred, message, **values)
        return
    code = 1 + zlib.crc32(message.encode()) % (2**30)  # a positive int32; -1 means "no error"
    setattr(internal, "next_code", lambda: code)  # noqa: B010  (private, jax < 0.11 only)
    try:
        checkify.debug_check(pred, message, **values)
    finally:
        setattr(internal, "next_code", counter)  # noqa: B010


def check_mask_like(mask: Any, name: str, batch_shape: tuple[int, ...], num_steps: int, time_major: bool) -> jax.Array:
    """Checks a boolean per-step array ``[*B, T]`` (or ``[T, *B]``)."""
    mask = as_array(mask, name)
    expected = (num_steps, *batch_shape) if time_major else (*batch_shape, num_steps)
    if tuple(mask.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(mask.shape)}")
    if mask.dtype != jnp.bool_:
        raise TypeError(f"{name} must be boolean, got dtype {mask.dtype}")
    return jnp.asarray(mask)


def check_initial_carry(carry: Any, expected: Any, batch_shape: tuple[int, ...]) -> None:
    """Checks that ``carry`` has the structure, shapes and dtypes of ``expected``."""
    got_leaves, got_tree = tree_flatten(carry)
    want_leaves, want_tree = tree_flatten(expected)
    if got_tree != want_tree:
        raise ValueError(f"initial_carry has structure {got_tree}, but the cell's carry is {want_tree}")
    for i, (got, want) in enumerate(zip(got_leaves, want_leaves, strict=True)):
        got_shape = tuple(np.shape(got))
        if got_shape != tuple(want.shape):
            raise ValueError(
                f"initial_carry leaf {i} has shape {got_shape}, expected {tuple(want.shape)} "
                f"for batch shape {tuple(batch_shape)}"
            )
        got_dtype = jnp.result_type(got)
        if got_dtype != want.dtype:
            raise TypeError(
                f"initial_carry leaf {i} has dtype {got_dtype}, expected {want.dtype} "
                "(make it with cell.initial_carry(batch_shape))"
            )


def check_float_dtype(value: Any, name: str, *, allow_complex: bool = False) -> None:
    """Checks an optional dtype argument (``None`` passes) names a floating (or complex) dtype."""
    if value is None:
        return
    try:
        dt = jnp.dtype(value)
    except TypeError as err:
        raise TypeError(f"{name} must be a dtype, got {value!r}") from err
    if not jnp.issubdtype(dt, jnp.inexact if allow_complex else jnp.floating):
        raise TypeError(f"{name} must be a floating dtype, got {dt}")


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int, if it is a positive integer (not a bool)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_optional_positive_int(value: Any, name: str) -> int | None:
    return None if value is None else check_positive_int(value, name)


def check_rate(value: Any, name: str) -> float:
    """A dropout probability in ``[0, 1)``, as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__} {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    return float(value)


def check_block_inputs(
    xs: Any, lengths: Any, *, features: int | None, time_major: bool, name: str = "xs"
) -> tuple[jax.Array, jax.Array | None]:
    """Checks ``xs[*B, T, D]`` (or ``[T, *B, D]``) and ``lengths[*B]``; returns them batch-major."""
    xs = check_sequence(xs, name, time_major=time_major, features=features)
    if time_major:
        xs = jnp.moveaxis(xs, 0, xs.ndim - 2)
    if lengths is not None:
        lengths = check_lengths(lengths, xs.shape[:-2], xs.shape[-2])
    return xs, lengths


def check_fields(obj: Any) -> None:
    """Checks every dataclass field of ``obj`` against its declared type.

    The one place constructor arguments of cells and blocks are checked by
    type: ``bool`` takes only a bool, ``int`` an integer (not a bool),
    ``float`` a finite real number, ``str``/``Literal[...]`` one of its values,
    ``tuple[int, ...]`` a tuple of integers, ``tuple[int, int]`` a pair of
    them, ``Sequence[int]`` a list, tuple or range of them, ``Initializer`` a
    callable, each maybe ``| None`` or a union of them. A name declared in the
    field's module (``Padding = Literal["causal", "same"] | int``) stands for
    what it names. Fields of other types (dtypes, other specs) have their own
    checks; ranges (``> 0``, ``[0, 1)``) are the class's own checks, after this.
    """
    for field in dataclasses.fields(obj):
        rule = field_rule(type(obj), field)  # type: ignore[arg-type]  # mypy: a class is not Hashable (python/mypy#11470)
        if rule is None:
            continue
        value = getattr(obj, field.name)
        problem = rule.problem(value)
        if problem is not None:
            error = TypeError if problem == "type" else ValueError
            got = f"{type(value).__name__} {value!r}" if problem == "type" else repr(value)
            raise error(f"{type(obj).__name__}: {field.name} must be {rule.expected}, got {got}")


def check_positive_fields(obj: Any, *names: str) -> None:
    """Checks that the int fields ``names`` of ``obj`` (already type-checked by :func:`check_fields`) are ``>= 1``.

    ``None`` (an optional field left unset) passes.
    """
    for name in names:
        value = getattr(obj, name)
        if value is not None and value < 1:
            raise ValueError(f"{type(obj).__name__}: {name} must be a positive int, got {value!r}")


def check_rate_fields(obj: Any, *names: str) -> None:
    """Checks that the float fields ``names`` of ``obj`` (type-checked by :func:`check_fields`) are in ``[0, 1)``."""
    for name in names:
        value = getattr(obj, name)
        if value is not None and not 0.0 <= value < 1.0:
            raise ValueError(f"{type(obj).__name__}: {name} must be a float in [0, 1), got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_int_sequence(value: Any) -> bool:
    """A list, tuple or other sequence (not a str) of ints."""
    is_sequence = isinstance(value, collections.abc.Sequence) and not isinstance(value, (str, bytes))
    return is_sequence and all(_is_int(v) for v in value)


@dataclasses.dataclass(frozen=True)
class _FieldRule:
    """What one declared field type accepts: ``atoms`` (``bool``, ``int``, ...) or ``literals``."""

    atoms: frozenset[str]
    literals: tuple[Any, ...]
    optional: bool

    @property
    def expected(self) -> str:
        kinds = {
            "bool": "a bool",
            "int": "an int",
            "float": "a finite float",
            "str": "a str",
            "tuple": "a tuple of ints",
            "pair": "a tuple of 2 ints",
            "ints": "a sequence of ints",
            "callable": "an initializer(key, shape, dtype)",
        }
        parts = [f"one of {list(self.literals)}"] if self.literals else []
        parts += [kinds[a] for a in sorted(self.atoms)]
        if self.optional:
            parts.append("None")
        return " or ".join(parts)

    def problem(self, value: Any) -> str | None:
        """``None`` if ``value`` fits, else ``"type"`` or ``"value"`` (the kind of error to raise)."""
        if value is None:
            return None if self.optional else "type"
        if self.literals and any(value == v and type(value) is type(v) for v in self.literals):
            return None
        if "bool" in self.atoms and isinstance(value, (bool, np.bool_)):
            return None
        if "int" in self.atoms and _is_int(value):
            return None
        if "float" in self.atoms and isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            return None if np.isfinite(float(value)) else "value"
        if "str" in self.atoms and isinstance(value, str):
            return None
        if "callable" in self.atoms and callable(value):
            return None
        if "tuple" in self.atoms and isinstance(value, tuple) and all(_is_int(v) for v in value):
            return None
        if "pair" in self.atoms and isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) for v in value):
            return None
        if "ints" in self.atoms and _is_int_sequence(value):
            return None
        if self.literals and isinstance(value, str) and all(isinstance(v, str) for v in self.literals):
            return "value"
        return "type"


_ATOMS = {
    "bool": "bool",
    "int": "int",
    "float": "float",
    "str": "str",
    "tuple[int, ...]": "tuple",
    "tuple[int, int]": "pair",
    "Sequence[int]": "ints",
    "Initializer": "callable",
}
_TYPES = {bool: "bool", int: "int", float: "float", str: "str"}


@functools.cache
def field_rule(cls: type, field: dataclasses.Field[Any]) -> _FieldRule | None:
    """The rule :func:`check_fields` applies to ``field`` of the dataclass ``cls`` (``None``: the field checks itself).

    A name in the annotation that is not a known type is looked up in the module
    of the class that declares the field (an alias such as ``Padding``).
    """
    owner = next((c for c in cls.__mro__ if field.name in inspect.get_annotations(c)), cls)
    return _field_rule(field.type, owner.__module__)  # type: ignore[arg-type]  # a class as above (python/mypy#11470)


@functools.cache
def _field_rule(annotation: Any, module: str | None = None) -> _FieldRule | None:
    """The rule for a declared type (a string under ``from __future__ import annotations``, or a type)."""
    namespace = vars(sys.modules[module]) if module in sys.modules else {}
    parts = _annotation_parts(annotation, namespace)
    if parts is None:
        return None  # a type this check does not know: the field checks itself
    atoms = frozenset(p for p in parts if isinstance(p, str) and p != "None")
    literals = tuple(v for p in parts if isinstance(p, tuple) for v in p)
    if not atoms and not literals:
        return None
    return _FieldRule(atoms, literals, "None" in parts)


def _annotation_parts(annotation: Any, namespace: dict[str, Any], depth: int = 0) -> list[Any] | None:
    """An annotation as a list of atoms (``"int"``, ``"None"``, ...) and literal tuples; ``None`` if any is unknown."""
    if depth > 8:
        return None
    if isinstance(annotation, str):
        parts: list[Any] = []
        for text in _split_union(annotation):
            if text == "None":
                parts.append("None")
            elif text in _ATOMS:
                parts.append(_ATOMS[text])
            elif text.startswith("Literal[") and text.endswith("]"):
                try:
                    parts.append(tuple(ast.literal_eval(f"({text[len('Literal[') : -1]},)")))
                except (ValueError, SyntaxError):
                    return None
            elif text.isidentifier() and text in namespace:
                named = _annotation_parts(namespace[text], namespace, depth + 1)
                if named is None:
                    return None
                parts += named
            else:
                return None
        return parts
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is None or annotation is type(None):
        return ["None"]
    if annotation in _TYPES:
        return [_TYPES[annotation]]
    if origin is typing.Literal:
        return [tuple(args)]
    if origin in (typing.Union, types.UnionType):
        parts = []
        for arg in args:
            sub = _annotation_parts(arg, namespace, depth + 1)
            if sub is None:
                return None
            parts += sub
        return parts
    if origin is tuple and args == (int, Ellipsis):
        return ["tuple"]
    if origin is tuple and args == (int, int):
        return ["pair"]
    if origin is collections.abc.Sequence and args == (int,):
        return ["ints"]
    return None


def _split_union(text: str) -> list[str]:
    """``"int | Literal['a', 'b'] | None"`` → its top-level parts."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def check_init_arguments(key: Any, in_features: Any) -> None:
    """Checks a cell's ``init(key, in_features)`` arguments before any array is made."""
    is_typed_key = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    is_raw_key = isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,)
    if not (is_typed_key or is_raw_key):
        got = f"{type(key).__name__} {key!r}" if np.ndim(key) == 0 else f"shape {np.shape(key)}"
        raise TypeError(f"key must be a JAX PRNG key (jax.random.key(0)), got {got}")
    if in_features is None:
        raise TypeError("init needs in_features, the width D of the inputs")
    if isinstance(in_features, (bool, np.bool_)) or not isinstance(in_features, (numbers.Integral, np.integer)):
        raise TypeError(f"in_features must be a positive int, got {type(in_features).__name__} {in_features!r}")
    if in_features < 1:
        raise ValueError(f"in_features must be a positive int, got {in_features}")
