"""Sphinx configuration of the recurrax docs site: `make docs` (see the Makefile).

The source directory is the repository root (`sphinx-build -c docs . <out>`), so
the guides' relative links (`../benchmarks/results/train_loop.md`, README's
`docs/cli.md`) resolve as they do on GitHub; `include_patterns` picks the pages.
Every ```python block of a Markdown page runs in a fresh kernel per page at build
time (MyST-NB, `auto` mode: a page whose code cells lack outputs runs); the
notebooks are shown with the outputs committed with them (tests/test_notebooks.py
re-executes them), and one committed without outputs runs here like a guide.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

# The page kernels inherit this environment: CPU only. No MPLBACKEND: the
# kernel's inline backend is what puts a page's plt.show() figures on the page.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import recurrax  # noqa: E402  (after the environment is set)

project = "recurrax"
author = "the recurrax authors"
copyright = "the recurrax authors, Apache-2.0"
release = version = recurrax.__version__

root_doc = "docs/index"
include_patterns = [
    "README.md",
    "CHANGELOG.md",
    "docs/*.md",
    "docs/api/*.md",
    "docs/images/*",
    "notebooks/*.ipynb",
    "benchmarks/README.md",
    "benchmarks/results/*.md",
]
exclude_patterns = [".*", "**/.ipynb_checkpoints", "runs", "build", "dist", "site", "docs/_build"]

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]

# Markdown pages are read as notebooks (their Python blocks the code cells);
# notebooks/*.py are jupytext pairs of the .ipynb, not pages.
nb_custom_formats = {".md": "guide_reader.read_guide"}
nb_execution_mode = "auto"
nb_execution_in_temp = True  # files a page writes go to a temporary directory, as in tests/test_docs.py
# A failing page is a warning (an error under -W), so one build lists every failure.
nb_execution_raise_on_error = False
nb_execution_show_tb = True
nb_execution_timeout = 300
# stderr is the progress bars fit draws: noise on a page. Warnings a page raises
# fail tests/test_docs.py (warnings are errors there).
nb_output_stderr = "remove"
nb_merge_streams = True
myst_heading_anchors = 3  # GitHub-style #anchors, as the guides link them

# Docstrings are Google style with Sphinx roles; autodoc imports the package.
# "Shapes:" and "Fields:" sections list names like "Args:" does.
autodoc_member_order = "bysource"
napoleon_custom_sections = [("Shapes", "params_style"), ("Fields", "params_style")]
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Every cross-reference into recurrax must resolve; references to other
# libraries (jax, flax, optax, numpy: no intersphinx, CI has no network) are not checked.
nitpicky = True
# Names inside private modules (type variables, aliases, return types that are
# not exported) have no page to link to; every public recurrax name must resolve.
nitpick_ignore_regex = [(r"py:.*", r"(?!recurrax\b).*"), (r"py:.*", r"recurrax(\.\w+)*\._\w+(\.\w+)*")]

html_theme = "furo"
html_title = "recurrax"
html_favicon = "_static/favicon.svg"  # browsers ask for one; without it every first visit logs a 404
html_extra_path = ["_extra"]  # (relative to docs/) /index.html sends a browser to the landing page
html_show_sourcelink = False


def _cells_reexported_at_top(app, env, node, contnode):
    """Resolves ``recurrax.X`` to ``recurrax.cells.X`` for the cells re-exported at the top level."""
    target = node.get("reftarget", "")
    prefix, _, rest = target.partition(".")
    name = rest.split(".", 1)[0]
    if node.get("refdomain") != "py" or prefix != "recurrax" or name not in recurrax.cells.__all__:
        return None
    node["reftarget"] = f"recurrax.cells.{rest}"
    return env.domains["py"].resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], node["reftarget"], node, contnode
    )


def _skip_tuple_field_aliases(app, what, name, obj, skip, options):
    """Skips NamedTuple fields' generated "Alias for field number N" entries.

    Their class docstring's ``Attributes:`` section documents them; both would
    be two descriptions of one name (a warning, so an error here).
    """
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def setup(app):
    app.connect("missing-reference", _cells_reexported_at_top)
    app.connect("autodoc-skip-member", _skip_tuple_field_aliases)
