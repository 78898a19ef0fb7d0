"""Records the quick start's numbers: runs `make demo`'s command once and writes them with the stack they came from.

    python -m benchmarks.quickstart            # about one to two minutes on 2 CPU cores

The command is read from the Makefile's ``demo`` target, run in-process through ``recurrax.cli.main`` (as
``make demo`` runs it, with ``--no-progress`` and a temporary ``--out``), and its final metrics, the lines it
printed, the run's config and its first training losses go into ``benchmarks/results/quickstart.json``,
one entry per stack (Python, jax, jaxlib): a rerun on the same stack replaces that stack's entry.

The README and docs/cli.md quote these entries, and tests/test_docs.py holds them together: the docs'
numbers must be the record's, and a short run of the recorded config must reproduce the recorded first
training losses, so a change to the data, model, initialisation or optimizer fails a test until this
script is rerun and the docs updated. The 20-epoch numbers differ between jax versions (float rounding
differs after a few steps and training amplifies it), which is why each entry names its stack.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "quickstart.json"
# How many of the first training losses the record keeps for tests/test_docs.py's short run.
FIRST_STEPS = 8
PACKAGES = ["jax", "jaxlib", "flax", "optax", "numpy", "mnist1d", "recurrax"]


def demo_command(makefile: Path = ROOT / "Makefile") -> str:
    """The Makefile's ``demo`` command, with ``$(BIN)/`` dropped and ``$(DEMO_OUT)`` filled in."""
    text = makefile.read_text()
    out = re.search(r"^DEMO_OUT \?= (\S+)$", text, flags=re.M)
    recipe = re.search(r"^demo:.*\n\t(.+)$", text, flags=re.M)
    if out is None or recipe is None:
        raise ValueError(f"{makefile} has no demo target with a DEMO_OUT default")
    return recipe.group(1).replace("$(BIN)/", "").replace("$(DEMO_OUT)", out.group(1))


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run() -> dict:
    """Runs the demo command once and returns its record entry."""
    import jax

    from recurrax.cli import main

    command = demo_command()
    argv = shlex.split(command)[1:]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quickstart"
        argv[argv.index("--out") + 1] = str(out)
        tee = _Tee(sys.stdout)
        start = time.perf_counter()
        with contextlib.redirect_stdout(tee):
            status = main([*argv, "--no-progress"])
        elapsed = time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"{command} exited with status {status}")
        metrics = json.loads((out / "metrics.json").read_text())
        history = json.loads((out / "history.json").read_text())
        config = json.loads((out / "config.json").read_text())
    printed = tee.copy.getvalue().splitlines()
    final = next(i for i, line in enumerate(printed) if line.startswith("final metrics after"))
    return {
        "stack": {
            "python": platform.python_version(),
            **{name: version(name) for name in PACKAGES},
            "backend": jax.default_backend(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        },
        "date": time.strftime("%Y-%m-%d"),
        "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
        "validation": metrics["validation"],
        "test": metrics["test"],
        "baseline": metrics["baseline"],
        "wall_seconds": round(elapsed, 1),
        "printed": printed[final : final + 4],
        "first_losses": [row["loss"] for row in history["steps"][:FIRST_STEPS]],
        "config": config,
    }


def main() -> None:
    entry = run()
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {"command": demo_command(), "runs": []}
    if record["command"] != demo_command():
        record = {"command": demo_command(), "runs": []}  # a new command: the old runs describe another one
    same = [k for k, old in enumerate(record["runs"]) if _stack_key(old) == _stack_key(entry)]
    if same:
        record["runs"][same[0]] = entry
    else:
        record["runs"].append(entry)
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {RECORD.relative_to(ROOT)}")


def _stack_key(entry: dict) -> tuple[str, str, str]:
    stack = entry["stack"]
    return stack["python"], stack["jax"], stack["jaxlib"]


if __name__ == "__main__":
    main()
