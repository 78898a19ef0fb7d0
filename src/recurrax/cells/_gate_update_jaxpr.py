"""What the Pallas kernels read from a gate update's jaxpr: whether it is elementwise, whether it sums its gates.

The gated kernels (``cells/_pallas_gated.py``) call a cell's
``update(gx, hh, state, units)`` on column tiles of the state, so the update
must treat every unit on its own: a layer norm across units, a slice, a
reshape or an ``iota`` over the unit axis would compute something else on a
tile than on the whole state, silently. :func:`not_elementwise` traces the
update once and names the first operation that is not elementwise, so that
the kernel declines such a cell (the engine's step loop runs it instead, or
``fused=True`` raises with the reason). :func:`reads_only_sums` finds the
cells whose backward kernel can keep ``gx + hh`` instead of both.

Both trace the update on ``[2, 2]`` float32 arrays: its arithmetic, not its
shapes, is what they read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

#: ``update(gx, hh, state, units) -> (new_state, internals)`` on tuples of ``[B, H]`` arrays.
GateUpdate = Callable[..., Any]

#: Primitives that act on each element on its own (with scalars broadcast): the update may use these.
ELEMENTWISE = frozenset(
    {
        # unary
        "abs", "acos", "acosh", "asin", "asinh", "atan", "atanh", "cbrt", "ceil", "convert_element_type",
        "copy", "copy_p", "cos", "cosh", "digamma", "erf", "erf_inv", "erfc", "exp", "exp2", "expm1", "floor",
        "integer_pow", "is_finite", "lgamma", "log", "log1p", "logistic", "neg", "not", "reduce_precision",
        "round", "rsqrt", "sign", "sin", "sinh", "sqrt", "square", "tan", "tanh",
        # binary and ternary
        "add", "add_any", "and", "atan2", "div", "eq", "ge", "gt", "le", "lt", "max", "min", "mul", "ne",
        "nextafter", "or", "pow", "rem", "sub", "xor", "clamp", "select_n",
        # a scalar, or one of the per-unit parameter rows, broadcast to the state's shape
        "broadcast_in_dim",
    }
)  # fmt: skip
#: Primitives that call a traced function (``jax.jit``, ``jax.custom_jvp``, …): their bodies are read instead.
CALLS = frozenset(
    {"jit", "pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "remat", "checkpoint"}
)


@functools.lru_cache(maxsize=256)
def _traced(update: GateUpdate, num_gates: int, num_parts: int, num_units: int) -> Any:
    x = jax.ShapeDtypeStruct((2, 2), jnp.float32)
    return jax.make_jaxpr(lambda g, r, s, u: update(g, r, s, u)[0])(
        (x,) * num_gates, (x,) * num_gates, (x,) * num_parts, (x,) * num_units
    )


def _sub_jaxprs(params: dict[str, Any]) -> list[Any]:
    found = []
    for value in params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            inner = getattr(item, "jaxpr", item)  # a ClosedJaxpr's jaxpr, or a Jaxpr itself
            if hasattr(inner, "eqns"):
                found.append(inner)
    return found


def _first_not_elementwise(jaxpr: Any) -> str | None:
    for eqn in jaxpr.eqns:
        name: str = eqn.primitive.name
        if name in CALLS:
            for inner in _sub_jaxprs(eqn.params):
                found = _first_not_elementwise(inner)
                if found is not None:
                    return found
        elif name not in ELEMENTWISE:
            return name
    return None


@functools.lru_cache(maxsize=256)
def not_elementwise(update: GateUpdate, num_gates: int, num_parts: int, num_units: int) -> str | None:
    """Why ``update`` cannot run on tiles of the state (None: it is elementwise over units).

    ``num_gates`` gates, ``num_parts`` parts of the carry, ``num_units``
    per-unit parameter rows. Reads the update's jaxpr (through ``jit`` and
    custom derivatives); any primitive outside :data:`ELEMENTWISE` is a reason,
    and so is an update that cannot be traced on ``[2, 2]`` arrays (one that
    closes over an ``[H]`` array, say).
    """
    try:
        closed = _traced(update, num_gates, num_parts, num_units)
    except (TypeError, ValueError) as error:
        return f"its gate_update cannot be traced on a tile of the state ([2, 2] arrays): {error}"
    found = _first_not_elementwise(closed.jaxpr)
    if found is None:
        return None
    return (
        f"its gate_update is not elementwise over units (it uses `{found}`), and the kernel runs it on tiles "
        "of the state"
    )


def reads_only_sums(update: GateUpdate, num_gates: int, num_parts: int, num_units: int) -> bool:
    """Whether ``update`` reads each ``gx_k`` and ``hh_k`` only through one ``gx_k + hh_k``, per its jaxpr.

    True when each of the ``2G`` gate inputs has exactly one use in the traced
    update, the ``add`` of the pair, so the new state (and its gradient) is a
    function of the sums. Conservative: anything else (a ``gx_k`` read twice,
    the sum formed inside a ``jit``, a cast first) is False, which costs the
    optimisation and never correctness.
    """
    jaxpr = _traced(update, num_gates, num_parts, num_units).jaxpr
    # Variables by identity (a jaxpr's literals need not be hashable).
    gates = [id(v) for v in jaxpr.invars[:num_gates]]
    recurrent = [id(v) for v in jaxpr.invars[num_gates : 2 * num_gates]]
    uses: dict[int, list[Any]] = {v: [] for v in (*gates, *recurrent)}
    for eqn in jaxpr.eqns:
        for v in eqn.invars:
            if id(v) in uses:
                uses[id(v)].append(eqn)
    if any(id(v) in uses for v in jaxpr.outvars):
        return False
    for g, r in zip(gates, recurrent, strict=True):
        if len(uses[g]) != 1 or len(uses[r]) != 1 or uses[g][0] is not uses[r][0]:
            return False
        if uses[g][0].primitive.name != "add":
            return False
    return True
