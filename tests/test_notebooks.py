"""Every notebook in notebooks/ runs top to bottom, is stripped of outputs, and matches its jupytext pair."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_paired(path):
    import jupytext

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "commit notebooks with outputs stripped"
    assert notebook.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    text = path.with_suffix(".py")
    assert text.is_file(), f"{path.name} needs its jupytext pair {text.name}"
    paired = jupytext.read(text)
    assert [(c.cell_type, c.source) for c in paired.cells] == [(c.cell_type, c.source) for c in notebook.cells], (
        f"{path.name} and {text.name} differ: run `jupytext --sync {text}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # The kernel inherits this environment: shrunken sizes, CPU, and the files it writes go to tmp_path.
    monkeypatch.setenv("RECURRAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert any(p.suffix == ".png" for p in tmp_path.iterdir()), "the notebook should have drawn its plots"
