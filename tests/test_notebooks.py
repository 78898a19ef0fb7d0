"""The notebooks are committed executed, paired with their .py, and re-execute to the outputs they show.

notebooks/execute.py writes them and compares them; these tests hold the
committed files to what it writes (cheap: no kernel) and, once for all of
them, re-execute and compare (one kernel, the slow test).
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("notebooks_execute", ROOT / "notebooks" / "execute.py")
execute = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute)

NOTEBOOKS = execute.notebooks()


def test_the_notebooks():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_quickstart",
        "02_vanishing_gradients",
        "03_benchmarks",
        "04_pytorch_interop",
        "05_seeing_inside",
        "06_distributed",
        "07_precision",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_executed_and_paired(path):
    import jupytext

    committed = nbformat.read(path, as_version=4)
    assert committed.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    cells = [(c.cell_type, c.source) for c in committed.cells]
    paired = [(c.cell_type, c.source) for c in jupytext.read(path.with_suffix(".py")).cells]
    assert paired == cells, f"{path.name} and its .py differ: run `python notebooks/execute.py {path.stem}`"
    # The badge as the one repository setting makes it (pyproject's [project.urls] Repository).
    source = execute.read_source(path, execute.repository())
    assert [(c.cell_type, c.source) for c in source.cells] == cells, "run `python notebooks/execute.py`"

    code = [c for c in committed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "commit it executed, top to bottom"
    assert code[0].source.startswith(execute.INSTALL_BLOCK.rstrip()), "the first code cell starts with the install"
    execute.check_clean(committed, path.name)  # no errors, no stderr, no memory addresses
    images = [kind for c in code for kind in execute.summary(c)[1]]
    assert "image/png" in images, "a notebook shows at least one figure"


@pytest.mark.slow
def test_notebooks_re_execute_to_their_committed_outputs():
    report = execute.check(NOTEBOOKS)
    failed = {name: problems for name, problems in report.items() if problems}
    assert not failed, "\n".join(f"{name}:\n  " + "\n  ".join(p) for name, p in failed.items())


# ----------------------------------------------------------- the comparison itself
def _notebook(*outputs, tags=()):
    cell = nbformat.v4.new_code_cell("print(x)", outputs=list(outputs))
    if tags:
        cell.metadata["tags"] = list(tags)
    return nbformat.v4.new_notebook(cells=[cell])


def _stream(text, name="stdout"):
    return nbformat.v4.new_output("stream", name=name, text=text)


def _png():
    return nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})


@pytest.mark.parametrize(
    ("committed", "fresh", "tags", "agree"),
    [
        ("accuracy 0.812\n", "accuracy 0.813\n", (), True),  # one unit in the last printed digit
        ("accuracy 0.812\n", "accuracy 0.815\n", (), False),
        ("ratio 3.4e-02\n", "ratio 3.5e-02\n", (), True),
        ("ratio 3.4e-02\n", "ratio 3.7e-02\n", (), False),
        ("shape (640, 20)\n", "shape (640, 21)\n", (), False),  # integers are exact
        ("p [0.1   0.397]\n", "p [0.101 0.397]\n", (), True),  # numpy's padding is not content
        ("test accuracy 0.9\n", "validation accuracy 0.9\n", (), False),
        ("floor 0.53 ms, 479,008 tokens/s\n", "floor 0.25 ms, 1,010,205 tokens/s\n", ("timings",), True),
        ("floor 0.53 ms\n", "recurrax 0.53 ms\n", ("timings",), False),
        ("loss 0.5\n", "loss 0.5\n" + "x", (), False),
    ],
)
def test_comparison_of_text(committed, fresh, tags, agree):
    problems = execute.compare_cells(
        _notebook(_stream(committed), tags=tags), _notebook(_stream(fresh), tags=tags), torch_available=True
    )
    assert (problems == []) == agree, problems


def test_comparison_of_images_stderr_and_torch_cells():
    with_image, without = _notebook(_stream("a\n"), _png()), _notebook(_stream("a\n"))
    assert execute.compare_cells(with_image, without, torch_available=True)
    assert execute.compare_cells(with_image, with_image, torch_available=True) == []
    warned = _notebook(_stream("a\n"), _png(), _stream("UserWarning: ...", name="stderr"))
    assert execute.compare_cells(with_image, warned, torch_available=True) == []  # stderr is not compared
    torch_cell, skipped = _notebook(_stream("equal: True\n"), tags=["torch"]), _notebook(_stream("skipped\n"))
    assert execute.compare_cells(torch_cell, skipped, torch_available=False) == []
    assert execute.compare_cells(torch_cell, skipped, torch_available=True)


def test_check_clean_refuses_what_must_not_be_committed():
    for output, message in [
        (_stream("Warning\n", name="stderr"), "stderr"),
        (_stream("<object at 0x7f3a2b1c9d40>\n"), "memory address"),
        (nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=[]), "ValueError"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            execute.check_clean(_notebook(output), "x.ipynb")


# ------------------------------------------------------------------ install and badge
@pytest.mark.parametrize(
    ("source", "requirement"),
    [
        (
            "dist/recurrax-0.1.0-py3-none-any.whl",
            f"recurrax[tasks] @ {(ROOT / 'dist').as_uri()}/recurrax-0.1.0-py3-none-any.whl",
        ),
        (".", f"recurrax[tasks] @ {ROOT.as_uri()}"),
        (
            "git+https://example.org/o/recurrax.git@v0.1.0",
            "recurrax[tasks] @ git+https://example.org/o/recurrax.git@v0.1.0",
        ),
    ],
)
def test_install_block_installs_from_the_one_setting(source, requirement, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "check_call", calls.append)
    monkeypatch.chdir(ROOT)
    code = execute.INSTALL_BLOCK.replace("RECURRAX_SOURCE = None", f"RECURRAX_SOURCE = {source!r}")
    assert code != execute.INSTALL_BLOCK
    exec(code, {})
    assert len(calls) == 1 and calls[0][-1] == requirement and calls[0][1:4] == ["-m", "pip", "install"]


def test_install_block_with_nothing_to_install(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "check_call", calls.append)
    exec(execute.INSTALL_BLOCK, {})  # recurrax is importable here: nothing to do
    assert calls == []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="RECURRAX_SOURCE"):
        exec(execute.INSTALL_BLOCK, {})


def test_badge_follows_the_repository_setting(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "recurrax"\n')
    assert execute.repository(pyproject) is None
    assert "OWNER/REPO" in execute.badge("01_quickstart", None)
    pyproject.write_text(
        '[project]\nname = "recurrax"\n[project.urls]\nRepository = "https://github.com/someone/recurrax"\n'
    )
    assert execute.repository(pyproject) == "someone/recurrax"
    assert execute.badge("01_quickstart", "someone/recurrax").endswith(
        "[colab]: https://colab.research.google.com/github/someone/recurrax/blob/main/notebooks/01_quickstart.ipynb"
    )
