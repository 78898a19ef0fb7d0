"""Guides whose Python blocks run as written, and print what the text says they print.

A block followed by a sentence ``It prints `...`.`` must print exactly that.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
RUNNABLE = ["architecture.md"]


def _blocks(text: str) -> list[tuple[str, str | None]]:
    """``(code, what the text after it says it prints)`` for each Python block."""
    found = []
    for match in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        after = text[match.end() : match.end() + 400]
        said = re.match(r"\s*It prints `([^`]*)`", after)
        found.append((match.group(1), said.group(1) if said else None))
    return found


@pytest.mark.parametrize("name", RUNNABLE)
def test_guide_blocks_run_and_print_what_they_say(name, monkeypatch):
    import recurrax.cells._registry as registry

    # Cells that a guide registers stay in this test.
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    blocks = _blocks((DOCS / name).read_text())
    assert blocks, f"{name} has no Python blocks"
    namespace: dict = {"__name__": f"docs_{name}"}
    for code, said in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOCS / name), "exec", dont_inherit=True), namespace)
        if said is not None:
            assert out.getvalue().strip() == said, f"{name}: the text says it prints {said!r}"
