"""Checks that turn bad input into one clear error before anything is traced.

Each message names the argument, what it got and what it expected.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


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
    checkify.debug_check(
        jnp.all((lengths >= 1) & (lengths <= num_steps)),
        f"lengths must be in [1, T={num_steps}], got min {{low}} and max {{high}}",
        low=jnp.min(lengths, initial=num_steps),
        high=jnp.max(lengths, initial=1),
    )
    return jnp.clip(lengths, 0, num_steps)


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
    got_leaves, got_tree = jax.tree.flatten(carry)
    want_leaves, want_tree = jax.tree.flatten(expected)
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
    ``tuple[int, ...]`` a tuple of integers, ``Initializer`` a callable, each
    maybe ``| None``. Fields of other types (dtypes) have their own checks.
    """
    for field in dataclasses.fields(obj):
        rule = _field_rule(field.type)
        if rule is None:
            continue
        value = getattr(obj, field.name)
        problem = rule.problem(value)
        if problem is not None:
            error = TypeError if problem == "type" else ValueError
            got = f"{type(value).__name__} {value!r}" if problem == "type" else repr(value)
            raise error(f"{type(obj).__name__}: {field.name} must be {rule.expected}, got {got}")


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
            "callable": "an initializer(key, shape, dtype)",
        }
        parts = [kinds[a] for a in sorted(self.atoms)]
        if self.literals:
            parts.append(f"one of {list(self.literals)}")
        if self.optional:
            parts.append("None")
        return " or ".join(parts)

    def problem(self, value: Any) -> str | None:
        """``None`` if ``value`` fits, else ``"type"`` or ``"value"`` (the kind of error to raise)."""
        if value is None:
            return None if self.optional else "type"
        if self.literals and any(value == v and type(value) is type(v) for v in self.literals):
            return None
        is_int = isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))
        if "bool" in self.atoms and isinstance(value, (bool, np.bool_)):
            return None
        if "int" in self.atoms and is_int:
            return None
        if "float" in self.atoms and isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            return None if np.isfinite(float(value)) else "value"
        if "str" in self.atoms and isinstance(value, str):
            return None
        if "callable" in self.atoms and callable(value):
            return None
        if "tuple" in self.atoms and isinstance(value, tuple) and all(isinstance(v, (int, np.integer)) for v in value):
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
    "Initializer": "callable",
}


@functools.cache
def _field_rule(annotation: Any) -> _FieldRule | None:
    """The rule for a field's declared type (a string under ``from __future__ import annotations``)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
    if not isinstance(text, str):
        return None
    atoms, literals, optional = set(), (), False
    for part in _split_union(text):
        if part == "None":
            optional = True
        elif part in _ATOMS:
            atoms.add(_ATOMS[part])
        elif part.startswith("Literal[") and part.endswith("]"):
            try:
                values = ast.literal_eval(f"({part[len('Literal[') : -1]},)")
            except (ValueError, SyntaxError):
                return None
            literals += tuple(values)
        else:
            return None  # a type this check does not know: the field checks itself
    if not atoms and not literals:
        return None
    return _FieldRule(frozenset(atoms), literals, optional)


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
