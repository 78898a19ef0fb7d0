"""``Precision``: one mixed-precision policy (parameter, compute, carry and output dtypes) for a whole model.

The design follows jmp's ``Policy`` (params / compute / output dtypes, one
object, named by a short string) with the recurrence's own dtype added, and
Flax's split of ``param_dtype`` (storage) from ``dtype`` (compute): every
recurrax cell, block and Flax layer already takes those fields, so a policy is
not a new code path but one place that sets them all
(:func:`recurrax.nn.apply_precision` walks a built model and
:meth:`Precision.configure` rewrites a cell or block description). Unlike
Keras' global policy nothing is set process-wide: a model has the policy it
was given. Loss scaling is not part of the policy but of the optimizer state
(:func:`recurrax.train.dynamic_loss_scale`), where it is checkpointed with
the optimizer; the Trainer adds it when the compute dtype is float16.

This module imports neither jax nor numpy at import time, so that the command
line lists :data:`PRECISIONS` without loading jax.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Canonical dtype names, and the short spellings a policy string may use.
_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "f32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
    "float64": "float64",
    "fp64": "float64",
    "f64": "float64",
}
_FIELDS = {"params": "param_dtype", "compute": "compute_dtype", "carry": "carry_dtype", "output": "output_dtype"}
# What a cell, block or Flax layer calls each dtype (the fields Precision.configure sets).
_TARGET_FIELDS = {"param_dtype": "param_dtype", "dtype": "compute_dtype", "carry_dtype": "carry_dtype"}


def _dtype_name(value: Any, name: str) -> str:
    """The canonical name of a real floating dtype given as a name, a numpy/JAX dtype or scalar type."""
    if isinstance(value, str):
        canonical = _DTYPE_NAMES.get(value.lower())
    else:
        import numpy as np  # imported here, not at import time: see the module docstring

        try:
            canonical = _DTYPE_NAMES.get(np.dtype(value).name)
        except TypeError:
            canonical = None
    if canonical is None:
        raise TypeError(f"{name} must be one of float32, bfloat16, float16, float64 (or a dtype), got {value!r}")
    return canonical


@dataclasses.dataclass(frozen=True)
class Precision:
    """A mixed-precision policy: the dtypes of parameters, computation, recurrent carry and model output.

    Attributes:
      param_dtype: how parameters are stored, updated by the optimizer and
        checkpointed (the "master weights"; float32 in every built-in policy).
      compute_dtype: the dtype of matmuls, convolutions and attention: each
        layer casts its inputs and (a copy of) its parameters to it.
      carry_dtype: the dtype of the recurrent state, where rounding errors
        accumulate over time steps; the gate nonlinearities that update it
        (an LSTM's cell state, a GRU's interpolation) run in it too.
      output_dtype: the dtype the model's predictions are cast to before the
        loss and metrics (the Trainer's objective) and in ``predict``.

    Built-in policies (:data:`PRECISIONS`, also the command line's ``--precision``):
    ``"float32"``; ``"bf16"``: float32 parameters, carry and output, bfloat16
    compute; ``"fp16"``: the same with float16 compute (the Trainer adds dynamic
    loss scaling). A policy can also be written jmp-style,
    ``"params=float32,compute=bfloat16,carry=float32,output=float32"`` (omitted
    entries are float32).

    Example:
      >>> import recurrax
      >>> policy = recurrax.precision_policy("bf16")
      >>> policy.compute_dtype, policy.carry_dtype
      ('bfloat16', 'float32')
      >>> cell = policy.configure(recurrax.lstm(8))
      >>> cell.param_dtype, cell.dtype, cell.carry_dtype
      ('float32', 'bfloat16', 'float32')
      >>> str(policy)
      'params=float32,compute=bfloat16,carry=float32,output=float32'
    """

    param_dtype: Any = "float32"
    compute_dtype: Any = "float32"
    carry_dtype: Any = "float32"
    output_dtype: Any = "float32"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, _dtype_name(getattr(self, field.name), field.name))

    def __str__(self) -> str:
        return ",".join(f"{short}={getattr(self, attr)}" for short, attr in _FIELDS.items())

    @property
    def needs_loss_scaling(self) -> bool:
        """Whether training under this policy needs loss scaling (float16 compute: gradients underflow)."""
        return bool(self.compute_dtype == "float16")

    def dtypes(self) -> dict[str, Any]:
        """The four dtypes as JAX dtypes, by field name."""
        import jax.numpy as jnp

        return {f.name: jnp.dtype(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def configure(self, spec: Any) -> Any:
        """A cell or block description (a frozen dataclass) with this policy's dtypes, nested ones included.

        Sets the fields named ``param_dtype``, ``dtype`` (compute) and
        ``carry_dtype`` wherever the description has them, and does the same
        inside fields that hold descriptions (a block's cell, a regularised
        cell's base cell, a tuple of layers). Anything else is returned as is.
        """
        if isinstance(spec, (tuple, list)):
            items = [self.configure(item) for item in spec]
            changed = any(new is not old for new, old in zip(items, spec, strict=True))
            if not changed:
                return spec
            return type(spec)(*items) if hasattr(spec, "_fields") else type(spec)(items)
        if not dataclasses.is_dataclass(spec) or isinstance(spec, type):
            return spec
        changes: dict[str, Any] = {}
        for field in dataclasses.fields(spec):
            if not field.init:
                continue
            value = getattr(spec, field.name)
            if field.name in _TARGET_FIELDS:
                target = getattr(self, _TARGET_FIELDS[field.name])
                if value != target:
                    changes[field.name] = target
            elif dataclasses.is_dataclass(value) or isinstance(value, (tuple, list)):
                configured = self.configure(value)
                if configured is not value:
                    changes[field.name] = configured
        return dataclasses.replace(spec, **changes) if changes else spec

    def cast_to_param(self, tree: Any) -> Any:
        """``tree``'s real floating leaves cast to :attr:`param_dtype` (others unchanged)."""
        return _cast_floats(tree, self.param_dtype)

    def cast_to_compute(self, tree: Any) -> Any:
        """``tree``'s real floating leaves cast to :attr:`compute_dtype`."""
        return _cast_floats(tree, self.compute_dtype)

    def cast_to_output(self, tree: Any) -> Any:
        """``tree``'s real floating leaves cast to :attr:`output_dtype` (what the loss sees)."""
        return _cast_floats(tree, self.output_dtype)


def _cast_floats(tree: Any, dtype: str) -> Any:
    import jax
    import jax.numpy as jnp

    # One-byte floats (fp8) are quantized codes, not values a policy computes in: casting them
    # would undo quantize()'s 4x smaller storage without changing a number.
    def cast(leaf: Any) -> Any:
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating) and leaf.dtype.itemsize > 1:
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


#: The named policies, as ``--precision`` offers them. A new training precision is one entry here
#: (and, if it is more than dtypes, the code that reads it).
PRECISIONS: dict[str, Precision] = {
    "float32": Precision(),
    "bf16": Precision(compute_dtype="bfloat16"),
    "fp16": Precision(compute_dtype="float16"),
}


def precision_policy(spec: str | Precision | None) -> Precision:
    """A :class:`Precision` from a name in :data:`PRECISIONS`, a jmp-style string, or a policy (None: float32).

    Example:
      >>> precision_policy("params=float32,compute=float16").compute_dtype
      'float16'
      >>> precision_policy(None) == precision_policy("float32")
      True
    """
    if spec is None:
        return PRECISIONS["float32"]
    if isinstance(spec, Precision):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"precision must be a name, a policy string or a recurrax.Precision, got {spec!r}")
    if spec in PRECISIONS:
        return PRECISIONS[spec]
    if "=" not in spec:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)} or a policy string such as "
            f"'params=float32,compute=bfloat16'; got {spec!r}"
        )
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in _FIELDS:
            raise ValueError(f"precision {spec!r}: unknown entry {key!r}; the entries are {', '.join(_FIELDS)}")
        fields[_FIELDS[key]] = value.strip()
    return Precision(**fields)
