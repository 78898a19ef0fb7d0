"""Executes the notebooks and keeps their outputs, or checks that they still produce them.

The notebooks are committed *with* their outputs (so a reader browsing them
sees the figures) at their small default size, executed on CPU by this script.
The ``.py`` (jupytext percent) file of each pair is the source; this script
writes the ``.ipynb`` from it, executed, and rewrites the ``.py`` in
jupytext's canonical form. Usage, from the repository root::

    python notebooks/execute.py                        # every notebook, each in a fresh kernel
    python notebooks/execute.py 02_vanishing_gradients # one (a name, a .py or an .ipynb path)
    python notebooks/execute.py --check                # re-execute and compare with the committed outputs

``--check`` is what the test suite runs. It executes every notebook again
(in one kernel, with the user namespace reset between notebooks, so the
imports are paid once) and compares each code cell's outputs with the
committed ones: the text with its numbers taken out must be equal, and each
number must agree within ``RTOL`` or one unit in its last printed digit;
images must be present where they were (never compared byte for byte).
Cells tagged ``timings`` (wall-clock measurements) are compared without their
numbers; cells tagged ``torch`` are skipped where PyTorch is not installed.
Everything runs with ``ENVIRONMENT`` (CPU, no progress bars, fixed hash seed).

The "Open in Colab" badge of each notebook is built by :func:`colab_url` from
one setting, ``Repository`` under ``[project.urls]`` in pyproject.toml (a
``https://github.com/OWNER/NAME`` URL); until pyproject names it, the badge
links to the template with ``OWNER/REPO`` in it.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import math
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import jupytext
import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# What the kernels run with, for committing and for checking alike.
ENVIRONMENT = {
    "JAX_PLATFORMS": "cpu",
    "TQDM_DISABLE": "1",  # a progress bar is wall-clock output (bars the notebooks ask for explicitly still draw)
    "PYTHONHASHSEED": "0",
}
# Added for --check only: the test suite's cheap compile (tests/cheap_compile.py), since the small
# notebooks are dominated by XLA compile time. The committed outputs are made without it (it slows the
# compiled code: the benchmark notebook's times would mislead); --check comparing against them is what
# shows that it leaves the numbers alone.
_cheap_spec = importlib.util.spec_from_file_location("cheap_compile", ROOT / "tests" / "cheap_compile.py")
cheap_compile = importlib.util.module_from_spec(_cheap_spec)
_cheap_spec.loader.exec_module(cheap_compile)  # type: ignore[union-attr]
CHECK_ENVIRONMENT = {"XLA_FLAGS": cheap_compile.xla_flags()}
# Unset for the kernels: a backend or device choice from the calling shell would change the outputs.
UNSET = ("MPLBACKEND", "CUDA_VISIBLE_DEVICES", "JAX_ENABLE_X64", "XLA_FLAGS")
RTOL = 1e-3
# A notebook whose code sets this XLA flag gets a kernel of its own (``execute``).
DEVICE_FLAG = "--xla_force_host_platform_device_count"
TIMEOUT_S = 600

# Every notebook's first code cell starts with exactly this: where recurrax comes from, in one place.
INSTALL_BLOCK = """\
# Where recurrax comes from, the one setting to change (notebooks/README.md):
#   None: the copy that is importable here (a clone installed with `pip install -e ".[tasks]"`);
#   else a pip source: a wheel ("dist/recurrax-0.1.0-py3-none-any.whl"), a clone ("../recurrax"),
#   or the repository's git URL ("git+https://github.com/OWNER/NAME.git", add "@TAG" to pin it).
RECURRAX_SOURCE = None
import importlib.util
import subprocess
import sys
from pathlib import Path

if RECURRAX_SOURCE is not None:
    url = RECURRAX_SOURCE if "://" in RECURRAX_SOURCE else Path(RECURRAX_SOURCE).resolve().as_uri()
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", f"recurrax[tasks] @ {url}"])
elif importlib.util.find_spec("recurrax") is None:
    raise ModuleNotFoundError("recurrax is not installed: set RECURRAX_SOURCE to a wheel, a clone or a git URL")
"""

_BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
# A number as printed: 12, -0.5, 3.4e-02, 1,234,567.8 (thousands separated), not a part of a word like "T4".
_NUMBER = re.compile(r"(?<![\w.,])[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def notebooks() -> list[Path]:
    """The notebooks' ``.ipynb`` paths, in order."""
    return sorted(HERE.glob("[0-9][0-9]_*.ipynb"))


def repository(pyproject: Path = ROOT / "pyproject.toml") -> str | None:
    """``OWNER/NAME`` from ``[project.urls] Repository`` when that is a GitHub URL, else None."""
    urls = tomllib.loads(pyproject.read_text()).get("project", {}).get("urls", {})
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?/?", urls.get("Repository", ""))
    return match.group(1) if match else None


def colab_url(name: str, repo: str | None = None, branch: str = "main") -> str:
    """The Colab URL that opens ``notebooks/<name>.ipynb`` of ``repo`` (``OWNER/REPO`` until it is set)."""
    return f"https://colab.research.google.com/github/{repo or 'OWNER/REPO'}/blob/{branch}/notebooks/{name}.ipynb"


def badge(name: str, repo: str | None = None) -> str:
    """The badge's markdown for notebook ``name``: the badge, a note while the repository is unset, the link."""
    lines = [_BADGE + "[colab]"]
    if repo is None:
        lines += [
            "",
            "*(OWNER/REPO in the link is set by `python notebooks/execute.py` from `Repository`",
            "under `[project.urls]` in pyproject.toml, which does not name the repository yet.)*",
        ]
    return "\n".join([*lines, "", f"[colab]: {colab_url(name, repo)}"])


def read_source(path: Path, repo: str | None) -> NotebookNode:
    """The notebook from its ``.py`` pair, with its badge set and deterministic cell ids."""
    notebook = jupytext.read(path.with_suffix(".py"))
    first = notebook.cells[0]
    lines = first.source.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(_BADGE)]
    ends = [i for i, line in enumerate(lines) if line.startswith("[colab]: ")]
    if first.cell_type != "markdown" or len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"{path.name}: the first cell must be markdown holding the badge and its '[colab]: URL' line")
    lines[starts[0] : ends[0] + 1] = badge(path.stem, repo).splitlines()
    first.source = "\n".join(lines)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:02d}"  # jupytext draws random ids: every run would rewrite them
    return notebook


def kernel_environment(*, check: bool = False) -> dict[str, str]:
    """The kernels' environment: this process's, less ``UNSET``, plus ``ENVIRONMENT`` (and ``CHECK_ENVIRONMENT``)."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(ENVIRONMENT)
    if check:
        env.update(CHECK_ENVIRONMENT)
    return env


def execute(paths: Sequence[Path], *, check: bool = False, repo: str | None = None) -> list[NotebookNode]:
    """Executes the notebooks read from their ``.py`` pairs; returns them with outputs.

    Each runs in its own temporary working directory (what it writes is
    discarded), in a fresh kernel; with ``check``, one kernel runs them all,
    its user namespace reset between notebooks (the imports are paid once),
    with ``CHECK_ENVIRONMENT`` added — but for a notebook that sets
    :data:`DEVICE_FLAG`, which runs in a fresh kernel of its own.
    """
    sources = [read_source(p, repo) for p in paths]
    with tempfile.TemporaryDirectory() as scratch:
        client: NotebookClient | None = None
        shared = False  # whether the running kernel may be reused: JAX started in it with default devices
        try:
            for index, notebook in enumerate(sources):
                cwd = Path(scratch) / f"{index:02d}"
                cwd.mkdir()
                # A notebook that asks XLA for devices must be the first to start JAX in its kernel, and the
                # kernel it leaves has those devices: both run alone.
                alone = any(DEVICE_FLAG in cell.source for cell in notebook.cells if cell.cell_type == "code")
                if client is not None and check and shared and not alone:
                    reset = f"get_ipython().run_line_magic('reset', '-f')\nimport os\nos.chdir({str(cwd)!r})"
                    _run_silently(client, reset)
                else:
                    if client is not None:
                        client._cleanup_kernel()
                    client = NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3", record_timing=False)
                    client.km = client.create_kernel_manager()
                    client.start_new_kernel(env=kernel_environment(check=check), cwd=str(cwd))
                    client.start_new_kernel_client()
                shared = not alone
                client.nb = notebook
                client.reset_execution_trackers()
                for cell_index, cell in enumerate(notebook.cells):
                    client.execute_cell(cell, cell_index, execution_count=client.code_cells_executed + 1)
        finally:
            if client is not None and client.km is not None:
                client._cleanup_kernel()
    return sources


def _run_silently(client: NotebookClient, code: str) -> None:
    cell = nbformat.v4.new_code_cell(code)
    client.nb = nbformat.v4.new_notebook(cells=[cell])  # execute_cell writes the cell back into client.nb
    client.execute_cell(cell, 0)
    errors = [o for o in cell.outputs if o.output_type == "error"]
    if errors:
        raise RuntimeError(f"resetting the shared kernel failed: {errors[0].ename}: {errors[0].evalue}")


def check_clean(notebook: NotebookNode, name: str) -> None:
    """Refuses outputs that must not be committed: errors, stderr, memory addresses, code cells without output."""
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            if output.output_type == "error":
                raise RuntimeError(f"{name}, cell {index}: {output.ename}: {output.evalue}")
            if output.output_type == "stream" and output.name == "stderr":
                raise RuntimeError(
                    f"{name}, cell {index} wrote to stderr (keep warnings out of committed notebooks):\n{output.text}"
                )
            if _ADDRESS.search(_text(output)):
                raise RuntimeError(f"{name}, cell {index} prints a memory address: {_ADDRESS.search(_text(output))[0]}")


def write(path: Path, notebook: NotebookNode) -> None:
    """Writes the executed notebook and its ``.py`` pair."""
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    jupytext.write(notebook, path.with_suffix(".py"), fmt="py:percent")


# ------------------------------------------------------------------ comparing
def _text(output: NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    return "".join(output.get("data", {}).get(kind, "") for kind in ("text/plain", "text/markdown", "text/html"))


def summary(cell: NotebookNode) -> tuple[str, list[str]]:
    """What is compared of a code cell: its text (stdout and results, stderr ignored) and its image kinds."""
    text, images = [], []
    for output in cell.outputs:
        if output.output_type == "stream" and output.name == "stderr":
            continue
        if output.output_type == "error":
            text.append(f"{output.ename}: {output.evalue}")
            continue
        text.append(_text(output))
        for kind, data in output.get("data", {}).items():
            if kind.startswith("image/") and data:
                if kind == "image/png" and not base64.b64decode(data).startswith(b"\x89PNG"):
                    continue
                images.append(kind)
    return _ADDRESS.sub("0x…", "".join(text)), images


def _skeleton(text: str) -> str:
    # Numbers out, and runs of blanks as one: numpy pads printed arrays to the widest number.
    return re.sub(r"[ \t]+", " ", _NUMBER.sub("#", text))


def numbers_agree(committed: str, fresh: str, rtol: float = RTOL) -> bool:
    """Two printed numbers agree within ``rtol`` or one unit in the committed number's last digit."""
    committed, fresh = committed.replace(",", ""), fresh.replace(",", "")
    a, b = float(committed), float(fresh)
    if not ("." in committed or "e" in committed.lower()):
        return a == b  # integers (sizes, counts, steps) are exact
    mantissa, _, exponent = committed.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (int(exponent or 0) - decimals)
    return math.isclose(a, b, rel_tol=rtol, abs_tol=unit * (1 + 1e-9))


def compare_cells(committed: NotebookNode, fresh: NotebookNode, *, torch_available: bool) -> list[str]:
    """The differences between the committed notebook's outputs and a fresh execution's, one line each."""
    problems = []
    if [c.source for c in committed.cells] != [c.source for c in fresh.cells]:
        return ["the committed .ipynb's cells differ from its .py pair: run `python notebooks/execute.py`"]
    for index, (old, new) in enumerate(zip(committed.cells, fresh.cells, strict=True)):
        if old.cell_type != "code":
            continue
        tags = set(old.metadata.get("tags", []))
        if "torch" in tags and not torch_available:
            continue
        (old_text, old_images), (new_text, new_images) = summary(old), summary(new)
        where = f"cell {index} ({old.source.splitlines()[0][:60] if old.source else ''!r})"
        if old_images != new_images:
            problems.append(f"{where}: images {old_images} committed, {new_images} now")
        old_numbers, new_numbers = _NUMBER.findall(old_text), _NUMBER.findall(new_text)
        if _skeleton(old_text) != _skeleton(new_text) or len(old_numbers) != len(new_numbers):
            problems.append(f"{where}: the text differs:\n--- committed\n{old_text}\n--- now\n{new_text}")
            continue
        if "timings" in tags:
            continue
        for a, b in zip(old_numbers, new_numbers, strict=True):
            if not numbers_agree(a, b):
                problems.append(f"{where}: {a} committed, {b} now")
    return problems


def check(paths: Iterable[Path], *, repo: str | None = None) -> dict[str, list[str]]:
    """Re-executes the notebooks (one shared kernel) and returns each one's differences from what is committed."""
    paths = list(paths)
    torch_available = importlib.util.find_spec("torch") is not None
    fresh = execute(paths, check=True, repo=repo)
    report = {}
    for path, notebook in zip(paths, fresh, strict=True):
        committed = nbformat.read(path, as_version=4)
        report[path.stem] = compare_cells(committed, notebook, torch_available=torch_available)
    return report


def _resolve(names: Sequence[str]) -> list[Path]:
    if not names:
        return notebooks()
    paths = []
    for name in names:
        path = HERE / f"{Path(name).stem}.ipynb"
        if not path.with_suffix(".py").is_file():
            raise SystemExit(f"notebooks: no notebook named {name!r} (have {[p.stem for p in notebooks()]})")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python notebooks/execute.py", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="names (default: all)")
    parser.add_argument("--check", action="store_true", help="compare a fresh execution with the committed outputs")
    args = parser.parse_args(argv)
    paths, repo = _resolve(args.notebooks), repository()
    if args.check:
        failed = {name: problems for name, problems in check(paths, repo=repo).items() if problems}
        for name, problems in failed.items():
            print(f"{name}:", *problems, sep="\n  ")
        return 1 if failed else 0
    for path in paths:
        (notebook,) = execute([path], repo=repo)
        check_clean(notebook, path.name)
        write(path, notebook)
        print(f"wrote {path.relative_to(ROOT)} and {path.with_suffix('.py').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
