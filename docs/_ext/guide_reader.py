"""Reads a Markdown guide as a notebook whose code cells are its ```python blocks, and only those.

The guides are plain Markdown (GitHub renders them, tests/test_docs.py runs them),
so MyST-NB's own text format (``{code-cell}`` directives) is not an option.
jupytext's Markdown reader does the splitting, but it turns fences in other
languages into code cells too (```bash as a ``%%bash`` magic cell, or plain code
when a page has no Python at all): those go back to Markdown, shown, not run.
So does a Python block right after a ``<!-- does not run: REASON -->`` line, the
guides' one opt-out (the rule of tests/markdown_blocks.py, which tests/test_docs.py
holds the pages to).
"""

from __future__ import annotations

import re

import jupytext
import nbformat

_OPT_OUT = re.compile(r"<!--\s*does not run:(.*?)-->\s*\Z", flags=re.S)


def read_guide(text: str) -> nbformat.NotebookNode:
    """A notebook from a Markdown page: ```python blocks become code cells, everything else Markdown."""
    notebook = jupytext.reads(text, fmt="md")
    language = notebook.metadata.get("jupytext", {}).get("main_language", "python")
    cells = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            source = cell.source
            opted_out = cells and cells[-1].cell_type == "markdown" and _OPT_OUT.search(cells[-1].source)
            if language != "python" or opted_out:
                cell = nbformat.v4.new_markdown_cell(f"```{language}\n{source}\n```")
            elif source.startswith("%%"):
                magic, _, body = source.partition("\n")
                cell = nbformat.v4.new_markdown_cell(f"```{magic[2:].strip()}\n{body}\n```")
        cells.append(cell)
    notebook.cells = cells
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook
