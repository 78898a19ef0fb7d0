"""A cell's lowercase factory (``lstm``), derived from the fields of its class (``LSTMCell``): options declared once."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from recurrax._cell import Cell

C = TypeVar("C", bound=Cell)


def make_factory(cell_type: type[C], name: str, *, positional: Sequence[str] = ("hidden_size",)) -> Callable[..., C]:
    """The lowercase constructor ``name(hidden_size, **options)`` of ``cell_type``, derived from its fields.

    The options are the dataclass fields, declared once on the cell; the
    factory's signature lists them (for ``help`` and editors) and its
    docstring points to the class, which documents them.
    """
    fields = [f for f in dataclasses.fields(cell_type) if f.init]
    by_name = {f.name: f for f in fields}
    params = [
        inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=by_name[p].type) for p in positional
    ]
    params += [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty,
            annotation=f.type,
        )
        for f in fields
        if f.name not in positional
    ]
    signature = inspect.Signature(params, return_annotation=cell_type.__name__)

    def factory(*args: Any, **kwargs: Any) -> C:
        bound = signature.bind(*args, **kwargs)
        return cell_type(**bound.arguments)

    summary = (inspect.getdoc(cell_type) or "").split("\n", 1)[0]
    factory.__name__ = factory.__qualname__ = name
    factory.__module__ = cell_type.__module__
    factory.__signature__ = signature  # type: ignore[attr-defined]
    factory.__doc__ = (
        f"Makes a :class:`{cell_type.__name__}`: {summary}\n\n"
        f"``{name}(...)`` is ``{cell_type.__name__}(...)``; every option is a field of the class, "
        "documented there."
    )
    return factory
