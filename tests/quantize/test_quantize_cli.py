"""``recurrax quantize RUN --int8`` and ``recurrax evaluate RUN --quantized`` on the smallest run of
tests/test_cli.py, made with ``--precision int8-qat`` (its config and checkpoint written as ``recurrax train``
writes them, without the training's compiles)."""

from __future__ import annotations

import contextlib
import io
import json
import re

import jax
import pytest
from flax import nnx

from recurrax import train
from recurrax.cli import CHECKPOINT_DIR, CONFIG_FILE, _build_parser, _config_from_args, main
from recurrax.quantize import QuantizedCell, quantization_of
from test_cli import TINY


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory):
    """A run directory as `recurrax train --precision int8-qat` leaves it, its checkpoint at step 6."""
    from recurrax import _cli_run

    run = tmp_path_factory.mktemp("quantize") / "run"
    config = _config_from_args(
        _build_parser().parse_args(["train", *TINY, "--precision", "int8-qat", "--out", str(run)])
    )
    run.mkdir()
    (run / CONFIG_FILE).write_text(json.dumps(config))
    _, model, _ = _cli_run.build(config)
    with train.Checkpointer(run / CHECKPOINT_DIR) as checkpointer:
        checkpointer.save(6, model_state=nnx.as_pure(nnx.state(model)), opt_state={}, meta={})
    return run, model


def test_int8_qat_trains_the_quantization_aware_model_with_a_float32_policy(qat_run):
    run, model = qat_run
    assert json.loads((run / CONFIG_FILE).read_text())["precision"] == "int8-qat"  # the run records it
    assert isinstance(model.backbone.cell, QuantizedCell) and quantization_of(model).activations is None
    assert all(leaf.dtype == "float32" for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


# slow: quantizing, saving, restoring and evaluating compile ~1-1.7 CPU-s; the full leg runs it
@pytest.mark.slow
def test_quantize_writes_the_int8_model_and_evaluate_reads_it(qat_run, capsys):
    run, _ = qat_run
    assert main(["evaluate", str(run), "--quantized"]) == 2  # nothing quantized yet: one line
    assert "holds no quantized model; run `recurrax quantize" in capsys.readouterr().err
    assert main(["quantize", str(run), "--int8"]) == 0
    out = capsys.readouterr().out
    sizes = re.search(r"parameters: ([\d,]+) bytes in float32, ([\d,]+) bytes quantized \(([\d.]+)x smaller\)", out)
    assert sizes is not None, out
    before, after = (int(s.replace(",", "")) for s in sizes.groups()[:2])
    assert 2.5 < before / after < 4  # the float biases, norms and scales stay: 4x on the kernels alone
    record = json.loads((run / "quantized" / "quantization.json").read_text())
    assert record["quantization"]["activations"] == "int8" and record["meta"]["bytes"] == after

    assert main(["evaluate", str(run), "--quantized"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(quantized: " + str(run / "quantized") + "):")
    assert re.match(r"  validation  binary_accuracy [\d.]+  loss [\d.]+$", lines[1]), lines
    assert re.match(r"  test        binary_accuracy [\d.]+  loss [\d.]+$", lines[2]), lines

    # Static scales, calibrated on the first 16 training examples, replace the dynamic model.
    assert main(["quantize", str(run), "--int8", "--calibrate", "16"]) == 0
    assert "int8 activations (static scales from 16 training examples)" in capsys.readouterr().out
    record = json.loads((run / "quantized" / "quantization.json").read_text())
    assert record["quantization"]["activation_scales"] == "static" and record["meta"]["calibration_examples"] == 16
    assert main(["evaluate", str(run), "--quantized"]) == 0
    assert re.match(r"  test        binary_accuracy [\d.]+  loss [\d.]+$", capsys.readouterr().out.splitlines()[2])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["quantize", "RUN"], "one of the arguments --int8 --fp8 is required"),
        (["quantize", "RUN", "--int8", "--fp8"], "argument --fp8: not allowed with argument --int8"),
        (["quantize", "RUN", "--int8", "--step", "5"], "--step 5: no checkpoint for step 5; steps: [6]"),
        (["evaluate", "RUN", "--quantized", "--step", "6"], "--step: the quantized model is one"),
        (["quantize", "RUN", "--int8", "--weight-only", "--calibrate", "4"], "--calibrate: static activation scales"),
        (["quantize", "RUN", "--int8", "--calibrate", "25"], "--calibrate 25: the run's task has 24 training examples"),
        (["quantize", "RUN", "--int8", "--calibrate", "0"], "--calibrate"),
    ],
)
def test_quantize_errors_are_one_line(qat_run, capsys, argv, expected):
    run, _ = qat_run
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([str(run) if a == "RUN" else a for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err
