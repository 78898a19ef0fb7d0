"""The README's Python examples run (on smaller sizes), so the README cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# Shrink the sizes the README shows so the examples run in seconds.
SHRINK = [
    ("recurrax.lstm(128, chrono_max_timescale=200)", "recurrax.lstm(8, chrono_max_timescale=20)"),
    ("jnp.ones((32, 200, 16))", "jnp.ones((3, 12, 16))"),
    ("jnp.full((32,), 200).at[0].set(50)", "jnp.full((3,), 12).at[0].set(5)"),
    ("tasks.sentiment()", "tasks.sentiment(num_train=64, num_validation=32, num_test=32)"),
    ("epochs=10", "epochs=1, progress=False"),
    ("torch.nn.LSTM(16, 64,", "torch.nn.LSTM(16, 6,"),
    ("proj_size=32", "proj_size=3"),
]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(_python_blocks()) >= 4


def test_readme_examples_run():
    pytest.importorskip("torch")
    namespace: dict = {}
    for block in _python_blocks():
        if "train.gradient_flow(model, batch" in block:
            # Needs a trained regressor and a batch; exercised in tests/train.
            continue
        for old, new in SHRINK:
            block = block.replace(old, new)
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["ys"].shape == (3, 12, 8)
    assert namespace["carry"].h.shape == (3, 8)
    assert namespace["output"].shape == (3, 12, 6)
