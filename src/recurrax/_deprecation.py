"""Old public names stay importable, with a warning that names what replaced them."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any


def moved_attribute(module: str, name: str, moved: Mapping[str, str]) -> Any:
    """For a module's ``__getattr__``: the object that ``module.name`` became (``moved[name]`` = "pkg.mod:attr").

    Raises ``AttributeError`` for names that never existed.
    """
    if name not in moved:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    target_module, target = moved[name].split(":")
    warnings.warn(f"{module}.{name} is deprecated; use {target_module}.{target}", DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(target_module), target)
