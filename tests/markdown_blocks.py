"""The Python blocks of a Markdown page, and running them as written (tests/test_docs.py, tests/test_readme.py).

Every ```` ```python ```` block of a page runs, in order, in one namespace per page, unless the line
before it is ``<!-- does not run: REASON -->``. A block followed by a sentence ``It prints `...`.``
must print exactly that.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)
_OPT_OUT = re.compile(r"<!--\s*does not run:(.*?)-->\s*\Z", flags=re.S)
_SAID = re.compile(r"\s*It prints `([^`]*)`")


@dataclass(frozen=True)
class Block:
    """One Python block: its code, where it starts, what the text says it prints, why it does not run."""

    code: str
    line: int
    said: str | None
    opt_out: str | None


def blocks(path: Path) -> list[Block]:
    """Every Python block of the page at ``path``, in order."""
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        opt_out = _OPT_OUT.search(before + "\n")
        said = _SAID.match(text[match.end() : match.end() + 400])
        found.append(
            Block(
                code=match.group(1),
                line=text.count("\n", 0, match.start()) + 2,
                said=said.group(1) if said else None,
                opt_out=opt_out.group(1).strip() if opt_out else None,
            )
        )
    return found


def run_page(path: Path) -> dict:
    """Runs the page's blocks that run, in one namespace; returns it. Fails on the first block that fails."""
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for block in blocks(path):
        if block.opt_out is not None:
            continue
        # Padding the code with newlines makes tracebacks give the line in the Markdown file.
        code = compile("\n" * (block.line - 1) + block.code, str(path), "exec", dont_inherit=True)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
        if block.said is not None:
            said = f"{path.name}:{block.line}: the text says it prints {block.said!r}"
            assert out.getvalue().strip() == block.said, said
    return namespace
