"""What a bug report needs: versions, jax's backend and devices, the JAX/XLA environment, usable extras.

Run ``recurrax doctor`` or ``python -m recurrax.info`` (``--json`` for one
JSON object) and paste the output into the report. Versions come from the
installed distributions' metadata (:mod:`importlib.metadata`), so an optional
package is never imported just to read its version; only jax is imported, to
name the backend and devices (an import or device error is reported, not raised).

Example:
  >>> report = collect(devices=False)
  >>> sorted(report)
  ['environment', 'extras', 'jax', 'optional', 'packages', 'platform', 'python', 'recurrax']
  >>> report["packages"]["numpy"] is not None
  True
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

# Distribution names, as pip knows them.
REQUIRED = ("jax", "jaxlib", "flax", "optax", "chex", "orbax-checkpoint", "numpy", "tqdm", "matplotlib")
OPTIONAL = ("torch", "tensorboardX", "equinox", "dm-haiku", "keras", "scikit-learn", "mnist1d", "shap")
# Environment variables that change what jax does: every JAX_* and XLA_* one, and these.
ENVIRONMENT = ("CUDA_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS", "TF_CPP_MIN_LOG_LEVEL")


def version_of(distribution: str) -> str | None:
    """The installed version of ``distribution`` (a pip name such as ``"orbax-checkpoint"``), or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def extras() -> dict[str, list[str]]:
    """``{extra: [its requirements that are missing or of another version]}`` for each extra of recurrax.

    An empty list means ``pip install "recurrax[extra]"`` would install nothing
    new: the extra is usable. Read from the installed recurrax's metadata.
    """
    from packaging.requirements import Requirement  # matplotlib's dependency, so always installed

    try:
        dist = metadata.distribution("recurrax")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
        return {}
    names = dist.metadata.get_all("Provides-Extra") or []
    requirements = [Requirement(text) for text in dist.requires or []]

    def missing(extra: str, seen: frozenset[str]) -> list[str]:
        out: list[str] = []
        for req in requirements:
            if req.marker is None or not req.marker.evaluate({"extra": extra}):
                continue
            if req.name == "recurrax":  # an extra made of other extras, as dev = ["recurrax[test]"]
                for inner in sorted(req.extras - seen):
                    out += missing(inner, seen | {inner})
                continue
            installed = version_of(req.name)
            if installed is None:
                out.append(f"{req.name} (not installed)")
            elif not req.specifier.contains(installed, prereleases=True):
                out.append(f"{req.name}{req.specifier} (installed {installed})")
        return out

    return {name: missing(name, frozenset({name})) for name in names}


def _jax_report(devices: bool) -> dict[str, Any]:
    """jax's backend and devices, or the error that stops them."""
    if not devices:
        return {}
    try:
        import jax

        found = jax.devices()
        report: dict[str, Any] = {
            "backend": jax.default_backend(),
            "devices": [{"id": d.id, "platform": d.platform, "kind": d.device_kind} for d in found],
            "process_count": jax.process_count(),
        }
    except Exception as err:  # noqa: BLE001 — a broken install is what the report is for; say what broke
        return {"error": f"{type(err).__name__}: {err}"}
    try:
        from recurrax.cells import _pallas

        report["pallas"] = _pallas.describe()
    except Exception as err:  # noqa: BLE001 — the devices are still worth reporting
        report["pallas"] = f"unknown: {type(err).__name__}: {err}"
    return report


def collect(*, devices: bool = True) -> dict[str, Any]:
    """The report as JSON data; ``devices=False`` skips importing jax (backend and devices)."""
    import recurrax

    # Read before jax is imported: its import sets some of these variables itself.
    environment = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("JAX_", "XLA_")) or k in ENVIRONMENT}
    jax_info = _jax_report(devices)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "recurrax": {
            "version": recurrax.__version__,
            "installed": version_of("recurrax"),
            "path": str(Path(recurrax.__file__ or ".").parent),
        },
        "packages": {name: version_of(name) for name in REQUIRED},
        "optional": {name: version_of(name) for name in OPTIONAL},
        "jax": jax_info,
        "environment": environment,
        "extras": extras(),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report of :func:`collect` as text, one ``name  value`` line each."""
    own = report["recurrax"]
    source = "" if own["installed"] else "; not installed: imported from a source tree"
    rows = [
        ("python", f"{report['python']} ({report['platform']})"),
        ("recurrax", f"{own['version']} ({own['path']}{source})"),
    ]
    for section in ("packages", "optional"):
        rows += [(name, version or "not installed") for name, version in report[section].items()]
    jax_info = report["jax"]
    if "error" in jax_info:
        rows.append(("jax backend", f"unavailable: {jax_info['error']}"))
    elif jax_info:
        kinds = Counter(
            d["kind"] if d["kind"] == d["platform"] else f"{d['kind']} ({d['platform']})" for d in jax_info["devices"]
        )
        rows.append(("jax backend", jax_info["backend"]))
        rows.append(("devices", ", ".join(f"{n} x {kind}" for kind, n in kinds.items())))
        if jax_info["process_count"] > 1:
            rows.append(("processes", str(jax_info["process_count"])))
        if "pallas" in jax_info:
            rows.append(("pallas kernels", jax_info["pallas"]))
    rows += list(report["environment"].items())
    for name, missing in report["extras"].items():
        rows.append((f"recurrax[{name}]", "usable" if not missing else "missing " + ", ".join(missing)))
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"{name:<{width}}{value}" for name, value in rows)


def print_report(*, as_json: bool = False) -> int:
    """Prints the report (text, or JSON with ``as_json``); the exit status, 0."""
    report = collect()
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recurrax.info [--json]``."""
    parser = argparse.ArgumentParser(
        prog="python -m recurrax.info", description="Print the versions, devices and extras for a bug report."
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    return print_report(as_json=parser.parse_args(argv).json)


if __name__ == "__main__":
    raise SystemExit(main())
