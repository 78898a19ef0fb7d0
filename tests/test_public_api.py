"""Every public symbol has a docstring, and every docstring example runs."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re

import pytest

import recurrax

# Subpackages whose public names are checked. Listed explicitly so that
# `import recurrax` itself stays free of heavy optional imports.
PUBLIC_MODULES = [
    "recurrax",
    "recurrax.cells",
    "recurrax.nn",
    "recurrax.interop",
    "recurrax.train",
    "recurrax.tasks",
    "recurrax.models",
    "recurrax.attention",
    "recurrax.conv",
    "recurrax.interpret",
    "recurrax.quantize",
]


def _public_objects():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            yield f"{module_name}.{name}", getattr(module, name)


def test_every_public_module_declares_all():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert hasattr(module, "__all__"), f"{module_name} has no __all__"
        missing = [name for name in module.__all__ if not hasattr(module, name)]
        assert not missing, f"{module_name}.__all__ names missing attributes: {missing}"


def test_every_public_callable_has_a_docstring():
    undocumented = [
        qualified
        for qualified, obj in _public_objects()
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj)
    ]
    assert not undocumented, f"public names without a docstring: {undocumented}"


def _library_modules():
    for info in pkgutil.walk_packages(recurrax.__path__, prefix="recurrax."):
        if info.name.endswith("__main__"):
            continue
        yield info.name


# `import torch`, `import numpy as np, torch` or `from torch import nn` in an example.
_IMPORTS_TORCH = re.compile(r"^\s*(import\s+([\w.]+(\s+as\s+\w+)?\s*,\s*)*torch\b|from\s+torch\b)", re.MULTILINE)


# slow: docs, like the guide pages (tests/test_docs.py), run on the full leg: about 50 CPU-s of compiles for
# all modules (whole models in the Transformer's and sequence models' examples, 5-8 CPU-s each).
@pytest.mark.slow
@pytest.mark.parametrize("module_name", sorted(_library_modules()))
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [test for test in finder.find(module, module_name) if test.examples]
    if any(_IMPORTS_TORCH.search(example.source) for test in tests for example in test.examples):
        pytest.importorskip("torch")  # torch is an optional extra (not in the newest-stack leg)
    for test in tests:
        if test.examples:
            runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} docstring example(s) failed in {module_name}"
