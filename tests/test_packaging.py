"""The release artefacts: the sdist and wheel build offline, pass ``twine check``, carry the LICENSE, the sdist
holds the whole project, and the dependency floors are the README's tested versions.

One build per run (a module fixture), from a copy of the files git tracks, so a working tree's leftovers never
reach the artefacts and the checkout is not written to. No subprocess imports jax.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import NamedTuple

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NAME = PYPROJECT["project"]["name"]
VERSION = PYPROJECT["project"]["version"]
# The folders the sdist carries whole (MANIFEST.in's grafts) and the top-level files a reader looks for.
PROJECT_FOLDERS = ("tests/", "docs/", "notebooks/", "benchmarks/")
TOP_LEVEL = ("LICENSE", "README.md", "CHANGELOG.md", "CITATION.cff", "pyproject.toml")
# The dependencies whose floors are the oldest tested stack (README's "Tested versions" table).
STACK = ("jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint")


class Dists(NamedTuple):
    sdist: Path
    wheel: Path
    tracked: list[str] | None  # the project's files per git, None outside a git checkout


def _tracked_files() -> list[str] | None:
    """The files git tracks (or would: untracked, not ignored) under ROOT; None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    files = [f for f in out.decode().split("\0") if f]
    return files or None


# The artefacts do not depend on the Python or jax that builds them: built and checked once per CI, on the full
# leg (the newest-stack leg skips "slow"), saving that leg ~8 CPU-s of build and twine.
built_once = pytest.mark.slow


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> Dists:
    """Builds the sdist, then the wheel from it (build's default), with the installed setuptools."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    tracked = _tracked_files()
    if tracked is None:
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(
                ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "runs"
            ),
        )
    else:
        for name in tracked:
            if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not there to copy
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, source / name)
    out = work / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Dists(out / f"{NAME}-{VERSION}.tar.gz", out / f"{NAME}-{VERSION}-py3-none-any.whl", tracked)


def _sdist_names(sdist: Path) -> set[str]:
    prefix = f"{NAME}-{VERSION}/"
    with tarfile.open(sdist) as tar:
        return {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}


def _wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as whl:
        text = whl.read(f"{NAME}-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


@built_once
def test_twine_check_passes(dists):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.sdist), str(dists.wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


@built_once
def test_license_in_sdist_and_wheel(dists):
    license_text = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in license_text and b"Version 2.0" in license_text
    with tarfile.open(dists.sdist) as tar:
        member = tar.extractfile(f"{NAME}-{VERSION}/LICENSE")
        assert member is not None and member.read() == license_text
    with zipfile.ZipFile(dists.wheel) as whl:
        assert whl.read(f"{NAME}-{VERSION}.dist-info/licenses/LICENSE") == license_text
        assert "recurrax/py.typed" in whl.namelist()
    metadata = _wheel_metadata(dists.wheel)
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]


@built_once
def test_sdist_holds_the_project(dists):
    names = _sdist_names(dists.sdist)
    if dists.tracked is not None:
        expected = {f for f in dists.tracked if f.startswith(PROJECT_FOLDERS) and (ROOT / f).is_file()}
    else:  # an unpacked sdist: what is on disk
        expected = {
            p.relative_to(ROOT).as_posix()
            for folder in PROJECT_FOLDERS
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
    expected |= set(TOP_LEVEL)
    assert {f for f in expected if f.startswith("tests/") and f.endswith(".py")} >= {"tests/conftest.py"}
    assert any(f.startswith("docs/") and f.endswith(".md") for f in expected)
    missing = sorted(expected - names)
    assert not missing, f"MANIFEST.in leaves these out of the sdist: {missing}"
    assert not [n for n in names if n.endswith((".pyc", ".pyo"))]


@built_once
def test_wheel_declares_the_dependencies(dists):
    metadata = _wheel_metadata(dists.wheel)
    declared = {str(Requirement(r)) for r in metadata.get_all("Requires-Dist") if "extra ==" not in r}
    assert declared == {str(Requirement(r)) for r in PYPROJECT["project"]["dependencies"]}
    assert metadata["Requires-Python"] == PYPROJECT["project"]["requires-python"]
    assert {"tasks", "torch", "test", "dev", "bench"} <= set(metadata.get_all("Provides-Extra"))


def _floors() -> dict[str, str]:
    """``{name: version}`` of every ``name>=version`` dependency in pyproject."""
    floors = {}
    for line in PYPROJECT["project"]["dependencies"]:
        req = Requirement(line)
        (spec,) = req.specifier  # one bound per dependency: a floor
        assert spec.operator == ">=", line
        floors[req.name] = spec.version
    return floors


def _tested_versions() -> dict[str, dict[str, str]]:
    """README's "Tested versions" table: ``{python: {package: version}}``."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^\| stack \| Python \|(.*)\|\n\|[-|]+\|\n((?:\|.*\|\n)+)", text, flags=re.M)
    assert match, "README.md has no tested-versions table"
    columns = [c.strip() for c in match.group(1).split("|")]
    rows = {}
    for line in match.group(2).splitlines():
        _stack, python, *cells = [c.strip() for c in line.strip("|").split("|")]
        versions = {}
        for column, cell in zip(columns, cells, strict=True):
            for package in column.split(", "):
                versions[package] = cell
        rows[python] = versions
    return rows


def test_floors_are_the_oldest_tested_stack():
    floors = _floors()
    rows = _tested_versions()
    oldest = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert set(rows[oldest]) == set(STACK)
    assert {name: floors[name] for name in STACK} == rows[oldest]


def test_tested_versions_are_this_environment():
    """The table's row for this Python names what is installed: the README reports a run, not a wish."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    rows = _tested_versions()
    if python not in rows:
        pytest.skip(f"README's tested-versions table has no row for Python {python}")
    installed = {name: importlib.metadata.version(name) for name in STACK}
    assert installed == rows[python], "update README's tested-versions table (and the floors) after a run on these"


@built_once
def test_readme_names_the_built_files(dists):
    readme = (ROOT / "README.md").read_text()
    assert f"dist/{dists.wheel.name}" in readme
    assert f"dist/{dists.sdist.name}" in readme
