"""A quantized model on disk: its codes and scales in recurrax's checkpoint format, and what was quantized how.

Layout (``recurrax quantize RUN`` writes it as ``RUN/quantized/``)::

    <directory>/
      quantization.json   # {"format": ..., "quantization": Quantization.to_dict(), "meta": {...}}
      checkpoints/<step>/ # a recurrax.train.Checkpointer step: the model's state, int8/fp8 leaves as they are

To read it back, build the float model as for training (same architecture),
and :func:`restore_quantized` quantizes its structure with the recorded
:class:`~recurrax.quantize.Quantization` and loads the stored codes into it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flax import nnx

from recurrax.nn._module import BlockModule
from recurrax.nn._quantized_linear import QuantizedLinear
from recurrax.nn._rnn import RNN
from recurrax.quantize._block import QuantizedBlock
from recurrax.quantize._cell import QuantizedCell
from recurrax.quantize._model import stored_copy
from recurrax.quantize._spec import Quantization

if TYPE_CHECKING:
    from recurrax.train._checkpoint import StepSpec

M = TypeVar("M", bound=nnx.Module)

FORMAT = "recurrax.quantize/1"
RECORD_FILE = "quantization.json"
CHECKPOINT_DIR = "checkpoints"


def quantization_of(model: nnx.Module) -> Quantization | None:
    """The :class:`~recurrax.quantize.Quantization` of ``model``'s layers (None: nothing in it is quantized).

    Raises a ValueError when its layers were quantized in different ways.
    """
    found: set[Quantization] = set()
    for _, module in nnx.iter_modules(model):
        if isinstance(module, RNN):
            cell = module._base_cell
            if isinstance(cell, QuantizedCell):
                found.add(cell.quantization)
        elif isinstance(module, BlockModule) and isinstance(module.spec, QuantizedBlock):
            found.add(module.spec.quantization)
        elif isinstance(module, QuantizedLinear):
            found.add(module.quantization)
    if len(found) > 1:
        raise ValueError(f"the model's layers are quantized in {len(found)} different ways: {sorted(map(str, found))}")
    return next(iter(found)) if found else None


def save_quantized(
    directory: str | os.PathLike[str], model: nnx.Module, *, step: int = 0, meta: Mapping[str, Any] | None = None
) -> Path:
    """Writes a model made by :func:`~recurrax.quantize.quantize` into ``directory``; returns the checkpoint's path.

    Args:
      directory: a new or empty directory (or one holding an earlier save with other steps).
      model: the quantized model (its codes are stored as int8/float8 arrays: 1 byte per weight).
      step: the step number to file it under (e.g. the float checkpoint's it came from).
      meta: JSON-serialisable data recorded beside the quantization (where it came from).
    """
    from recurrax import train

    spec = quantization_of(model)
    if spec is None:
        raise ValueError("model holds no quantized layer; make it with recurrax.quantize.quantize(model, ...)")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "quantization": spec.to_dict(), "meta": dict(meta or {})}
    (root / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    with train.Checkpointer(root / CHECKPOINT_DIR) as checkpointer:
        return checkpointer.save(
            step, model_state=nnx.as_pure(nnx.state(model)), opt_state={}, meta={"quantization": record}
        )


def read_record(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``quantization.json`` of a saved quantized model (a FileNotFoundError or ValueError names the problem)."""
    path = Path(directory) / RECORD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {directory} holds no quantized model")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON: {err}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path} is not a recurrax quantization record (format {FORMAT})")
    return record


def restore_quantized(directory: str | os.PathLike[str], model: M, *, step: StepSpec = "latest") -> M:
    """The quantized model saved in ``directory``, built on ``model``'s architecture (``model`` is left as it is).

    ``model`` is the float (or quantization-aware) model as built for training;
    its weights do not matter, only its structure.

    Example::

        small = quantize(model, Quantization("int8", activations="int8"))
        save_quantized("runs/adding/quantized", small)
        again = restore_quantized("runs/adding/quantized", model)  # equal to `small`, bit for bit
    """
    from recurrax import train

    record = read_record(directory)
    target = stored_copy(model, Quantization.from_dict(record["quantization"]), None)  # static scales: loaded below
    train.restore_model(Path(directory) / CHECKPOINT_DIR, target, step=step)
    return target
