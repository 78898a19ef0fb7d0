"""Guides whose Python blocks run as written, and print what the text says they print.

A block followed by a sentence ``It prints `...`.`` must print exactly that.
Guides in ``RUNNABLE`` run every block; in the others, the blocks right after a
``<!-- runs -->`` line run, in order, sharing one namespace per guide.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
RUNNABLE = ["architecture.md"]


def _blocks(text: str, *, marked_only: bool = False) -> list[tuple[str, str | None]]:
    """``(code, what the text after it says it prints)`` for each (marked) Python block."""
    found = []
    marker = r"<!-- runs -->\s*\n" if marked_only else ""
    for match in re.finditer(marker + r"```python\n(.*?)```", text, flags=re.S):
        after = text[match.end() : match.end() + 400]
        said = re.match(r"\s*It prints `([^`]*)`", after)
        found.append((match.group(1), said.group(1) if said else None))
    return found


MARKED = sorted(p.name for p in DOCS.glob("*.md") if p.name not in RUNNABLE and "<!-- runs -->" in p.read_text())


@pytest.mark.parametrize("name", RUNNABLE + MARKED)
def test_guide_blocks_run_and_print_what_they_say(name, monkeypatch, tmp_path):
    import recurrax.cells._registry as registry

    # Cells that a guide registers stay in this test; files it writes go to tmp_path.
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.chdir(tmp_path)
    blocks = _blocks((DOCS / name).read_text(), marked_only=name not in RUNNABLE)
    assert blocks, f"{name} has no Python blocks"
    namespace: dict = {"__name__": f"docs_{name}"}
    for code, said in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(DOCS / name), "exec", dont_inherit=True), namespace)
        if said is not None:
            assert out.getvalue().strip() == said, f"{name}: the text says it prints {said!r}"
