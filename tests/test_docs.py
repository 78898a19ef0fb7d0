"""Every Python block of the guides runs as written, and prints what the text says it prints.

The rule (tests/markdown_blocks.py): every ```` ```python ```` block of a page runs, in order, in one
namespace per page, unless the line before it is ``<!-- does not run: REASON -->``. Opting out is
rare and needs a reason a reader can check; the count is held here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from markdown_blocks import blocks, run_page

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
# README.md runs in tests/test_readme.py, which also checks its results.
GUIDES = [page for page in PAGES if page.name != "README.md" and blocks(page)]
MAX_OPTED_OUT = 3


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Cells and backbones a page registers stay in its test; files it writes go to ``tmp_path``."""
    import recurrax.cells._registry as cell_registry
    import recurrax.nn._backbones as backbones

    monkeypatch.setattr(cell_registry, "_ENTRIES", dict(cell_registry._ENTRIES))
    monkeypatch.setattr(backbones, "_BACKBONES", dict(backbones._BACKBONES))
    monkeypatch.chdir(tmp_path)


# slow: about 70 CPU-seconds for all pages together (mostly their models' compiles); the full leg runs them.
@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDES, ids=lambda page: page.name)
def test_guide_blocks_run_and_print_what_they_say(page, isolated):
    if re.search(r"^import torch|^from torch", page.read_text(), flags=re.M):
        pytest.importorskip("torch")
    run_page(page)


def test_few_blocks_opt_out_and_each_says_why():
    opted_out = [(page.name, block) for page in PAGES for block in blocks(page) if block.opt_out is not None]
    for name, block in opted_out:
        assert len(block.opt_out.split()) >= 4, f"{name}:{block.line}: say why the block does not run"
        compile(block.code, f"{name}:{block.line}", "exec", dont_inherit=True)  # it does not run, but it parses
    assert len(opted_out) <= MAX_OPTED_OUT, [f"{name}:{block.line}: {block.opt_out}" for name, block in opted_out]


def test_the_rule_finds_every_block():
    # A block the parser missed would silently not run: count the fences another way.
    for page in PAGES:
        assert page.read_text().count("```python") == len(blocks(page)), page.name
