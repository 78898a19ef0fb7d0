"""The README's Python examples run as written (tests/markdown_blocks.py), so the README cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from markdown_blocks import blocks, run_page

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_has_examples():
    assert len(blocks(README)) >= 4


@pytest.mark.slow  # trains the classic program for 10 epochs: about 13 worker-seconds
def test_readme_examples_run(monkeypatch, tmp_path):
    pytest.importorskip("torch")  # the PyTorch-weights example
    monkeypatch.chdir(tmp_path)
    namespace = run_page(README)
    # What the comments say the examples compute.
    assert namespace["ys"].shape == (32, 200, 128)
    assert namespace["carry"].h.shape == (32, 128)
    assert len(namespace["history"].epochs) == 10
    assert namespace["flow"].shape == (1, namespace["data"].info.seq_len)
    assert namespace["output"].shape == (32, 200, 64)
