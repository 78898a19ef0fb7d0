"""The record of a training run: every metric per step and per epoch, as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class History:
    """Metrics of a run, one row per optimizer step and one per epoch.

    ``steps`` rows hold ``step``, ``epoch``, ``loss`` (the batch mean), the train
    metrics and the gradient diagnostics; ``epochs`` rows hold ``epoch``,
    ``step``, the epoch's exact train means and ``val_*`` metrics. Steps and
    epochs count from 1 (a step row's ``epoch`` is the epoch it belongs to).
    ``step`` and ``epoch`` are Python ints (in the CSVs too), every other
    value a Python float, so the JSON form round-trips bit for bit.

    Example:
      >>> h = History()
      >>> h.log_epoch({"epoch": 1, "loss": 0.5, "val_loss": 0.75})
      >>> h.series("val_loss")
      [0.75]
    """

    def __init__(self, steps: list[dict[str, float]] | None = None, epochs: list[dict[str, float]] | None = None):
        self.steps: list[dict[str, float]] = list(steps or [])
        self.epochs: list[dict[str, float]] = list(epochs or [])

    def log_step(self, row: Mapping[str, Any]) -> None:
        """Appends one step row (counters become ints, the rest Python floats)."""
        self.steps.append({k: _to_value(k, v) for k, v in row.items()})

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """Appends one epoch row (counters become ints, the rest Python floats)."""
        self.epochs.append({k: _to_value(k, v) for k, v in row.items()})

    def series(self, key: str, *, per: str = "epoch") -> list[float]:
        """All values of ``key``, per ``"epoch"`` or per ``"step"`` (NaN where a row lacks it)."""
        rows = self._rows(per)
        if not any(key in r for r in rows):
            raise KeyError(f"no {per} metric named {key!r}; have {sorted(self.keys(per=per))}")
        return [r.get(key, math.nan) for r in rows]

    def keys(self, *, per: str = "epoch") -> list[str]:
        """Metric names in first-seen order."""
        seen: dict[str, None] = {}
        for r in self._rows(per):
            seen.update(dict.fromkeys(r))
        return list(seen)

    def to_dict(self) -> dict[str, list[dict[str, float]]]:
        """``{"steps": [...], "epochs": [...]}`` (copies of the rows)."""
        return {"steps": [dict(r) for r in self.steps], "epochs": [dict(r) for r in self.epochs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        history = cls()
        for row in data.get("steps", []):
            history.log_step(row)
        for row in data.get("epochs", []):
            history.log_epoch(row)
        return history

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Writes ``history.json``, ``history_steps.csv`` and ``history_epochs.csv`` (each atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / "history.json", json.dumps(self.to_dict(), allow_nan=True))
        write_atomic(directory / "history_steps.csv", self.to_csv(per="step"))
        write_atomic(directory / "history_epochs.csv", self.to_csv(per="epoch"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Reads a ``history.json`` (or the directory holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "history.json"
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise FileNotFoundError(f"no history file at {path}") from None
        except (json.JSONDecodeError, AttributeError, TypeError) as err:
            raise ValueError(f"{path} is not a recurrax history file: {err}") from err

    def to_csv(self, *, per: str = "epoch") -> str:
        """The rows as CSV text, one column per metric (empty where a row lacks it)."""
        keys = self.keys(per=per)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, restval="", lineterminator="\n")
        writer.writeheader()
        for row in self._rows(per):
            writer.writerow({k: repr(v) for k, v in row.items()})
        return buffer.getvalue()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return _rows_equal(self.steps, other.steps) and _rows_equal(self.epochs, other.epochs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({len(self.steps)} steps, {len(self.epochs)} epochs, epoch keys {self.keys()})"

    def _rows(self, per: str) -> list[dict[str, float]]:
        if per == "epoch":
            return self.epochs
        if per == "step":
            return self.steps
        raise ValueError(f"per must be 'epoch' or 'step', got {per!r}")


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see the old file or the new one, never a part.

    The text goes to a temporary file in the same directory, is flushed to
    disk, and replaces ``path`` with ``os.replace`` (atomic on POSIX and Windows).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# Columns that count, written as integers ("12", not "12.0") in JSON and CSV.
COUNTERS = ("step", "epoch")


def _to_value(key: str, value: Any) -> float | int:
    if key in COUNTERS:
        number = float(value)
        if not number.is_integer():
            raise ValueError(f"history column {key!r} counts, so it must be a whole number, got {value!r}")
        return int(number)
    return float(value)


def _rows_equal(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    # NaN == NaN here: two runs that both saw a NaN loss agree.
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        if ra.keys() != rb.keys():
            return False
        for k in ra:
            x, y = ra[k], rb[k]
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                return False
    return True
