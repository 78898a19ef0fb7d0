"""Multi-host training: two processes x four CPU devices (jax.distributed on localhost, gloo) are one run.

The slow test runs docs/distributed.md's localhost recipe as written (a free
port for its 1234, a temporary directory): two processes train to step 4 and
stop; restarted, both go on to step 8. In the first launch each process also
trains the same run to step 8 without a stop, and this process (8 devices)
trains it once more, alone. The resumed run must be the uninterrupted one bit
for bit; the two-process run is the one-process run to float32 round-off
(gloo adds the devices' partial gradients in another order than XLA inside
one process: measured 3e-7 relative on the losses), held to the 1e-5 of
test_data_parallel.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from launch_processes import free_port, launch
from recurrax import cli, train
from recurrax._cli_run import build
from recurrax.train._distributed import process_local_batch

DOC = Path(__file__).resolve().parents[2] / "docs" / "distributed.md"


def _recipe() -> list[list[list[str]]]:
    """The localhost recipe of docs/distributed.md: per launch, each process's argv (by --process-id)."""
    block = re.search(r"```shell\n(# localhost.*?)```", DOC.read_text(), flags=re.S)
    assert block is not None, "docs/distributed.md has no localhost recipe"
    text = block.group(1)
    variables = dict(re.findall(r'^(\w+)="([^"]*)"$', text, flags=re.M))
    launches: list[list[list[str]]] = [[]]
    for line in text.splitlines():
        if line.startswith("recurrax train"):
            line = re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], line.removesuffix("&"))
            launches[-1].append(shlex.split(line)[1:])  # without "recurrax"
        elif line == "wait":
            launches.append([])
    launches = [sorted(argvs, key=lambda a: int(a[a.index("--process-id") + 1])) for argvs in launches if argvs]
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=4" in text and len(launches) == 2
    return launches


def _on_port(argv: list[str], port: int) -> list[str]:
    return [a.replace("localhost:1234", f"localhost:{port}") for a in argv]


def _replaced(argv: list[str], **flags: str) -> list[str]:
    out = list(argv)
    for name, value in flags.items():
        out[out.index(f"--{name.replace('_', '-')}") + 1] = value
    return out


# Gloo's connection message, "[Gloo] Rank r is connected to n peer ranks. Expected number of connected peer
# ranks is : n", is written piece by piece from several threads, so its pieces can land on lines of their own
# ('4 is connected to 7 peer ranks. Expected ...' failed two clean-clone CI runs): a line made only of its
# words and numbers is Gloo's.
_GLOO_LINE = re.compile(r"(?:\[Gloo\]|Rank|is connected to|peer ranks|Expected number of connected|is|[\d.:\s])*")


def _from_gloo(line: str) -> bool:
    return _GLOO_LINE.fullmatch(line) is not None


def _params(run: Path) -> list[np.ndarray]:
    """The parameters of a run's latest checkpoint."""
    _, model, _ = build(json.loads((run / "config.json").read_text()))
    train.restore_model(run / "checkpoints", model, step="latest")
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.mark.slow  # 2 processes start jax and train 3 runs each, this one 1: ~35 CPU-s (jax 0.10, measured)
def test_two_processes_train_as_one_process_and_resume_bit_for_bit(tmp_path, monkeypatch):
    port = free_port()
    first, restart = ([_on_port(a, port) for a in argvs] for argvs in _recipe())
    uninterrupted = [_replaced(a, steps="8", out="runs/uninterrupted") for a in first]
    commands = [list(c) for c in zip(first, restart, uninterrupted, strict=True)]
    processes = launch(commands, devices=4, cwd=tmp_path, compilation_cache=tmp_path / "jax_cache")
    for i, done in enumerate(processes):
        assert done.returncode == 0, f"process {i}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    said = [[line for line in done.stdout.splitlines() if not _from_gloo(line)] for done in processes]
    assert "run saved in runs/adding" in said[0] and said[1] == []  # process 0 speaks for the run

    monkeypatch.chdir(tmp_path)
    alone = uninterrupted[0]
    for flag in ("--coordinator", "--process-id"):  # one process: no coordinator
        i = alone.index(flag)
        alone = alone[:i] + alone[i + 2 :]
    alone = _replaced(alone, num_processes="1", out="runs/one_process")
    assert jax.device_count() == 8 and cli.main(alone) == 0

    runs = {name: tmp_path / "runs" / name for name in ("adding", "uninterrupted", "one_process")}
    history = {k: json.loads((d / "history.json").read_text()) for k, d in runs.items()}
    metrics = {k: json.loads((d / "metrics.json").read_text()) for k, d in runs.items()}
    params = {k: _params(d) for k, d in runs.items()}
    # Resumed = uninterrupted, bit for bit: every history row, the final metrics, the parameters.
    assert history["adding"] == history["uninterrupted"]
    assert len(history["adding"]["steps"]) == 8 and len(history["adding"]["epochs"]) == 2
    for split in ("validation", "test"):
        assert metrics["adding"][split] == metrics["uninterrupted"][split]
    for a, b in zip(params["adding"], params["uninterrupted"], strict=True):
        np.testing.assert_array_equal(a, b)
    # Two processes x 4 devices = one process x 8 devices, to round-off: the same batches in the same order.
    got, want = history["uninterrupted"], history["one_process"]
    for key in ("loss", "grad_norm", "update_norm", "param_norm"):
        np.testing.assert_allclose([r[key] for r in got["steps"]], [r[key] for r in want["steps"]], rtol=1e-5)
    np.testing.assert_allclose([r["val_loss"] for r in got["epochs"]], [r["val_loss"] for r in want["epochs"]], 1e-5)
    np.testing.assert_allclose(metrics["uninterrupted"]["test"]["loss"], metrics["one_process"]["test"]["loss"], 1e-5)
    for a, b in zip(params["uninterrupted"], params["one_process"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _Rows:
    """An array that records which rows are read."""

    def __init__(self, values: np.ndarray):
        self.values, self.shape = values, values.shape
        self.read: list[int] = []

    def __getitem__(self, rows):
        self.read += np.ravel(rows).tolist()
        return self.values[rows]


def test_a_process_local_batch_is_the_global_batch_read_once_per_row():
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(40, 3, 2)).astype(np.float32)
    one, stacked = rng.permutation(40)[:16], rng.permutation(40)[:32].reshape(2, 16)  # [B], [S, B]
    for rows, spec in ((one, PartitionSpec("data")), (stacked, PartitionSpec(None, "data"))):
        data = {"inputs": _Rows(inputs), "targets": np.arange(40)}
        batch = process_local_batch(data, rows, NamedSharding(mesh, spec))
        assert batch["inputs"].sharding.spec == spec and batch["inputs"].shape == (*rows.shape, 3, 2)
        np.testing.assert_array_equal(np.asarray(batch["inputs"]), inputs[rows])
        np.testing.assert_array_equal(np.asarray(batch["targets"]), rows)
        assert sorted(data["inputs"].read) == sorted(rows.ravel().tolist())  # each row once, by its device


def test_initialize_distributed_checks_its_arguments_and_one_process_starts_nothing():
    for kwargs, message in (
        ({"coordinator_address": "localhost"}, "'host:port'"),
        ({"num_processes": 0}, "num_processes must be an int >= 1"),
        ({"num_processes": 2, "process_id": 2}, "process_id=2 must be below num_processes=2"),
        ({"process_id": -1}, "process_id must be an int >= 0"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            train.initialize_distributed(**kwargs)
    train.initialize_distributed(num_processes=1)
    assert not jax.distributed.is_initialized() and jax.process_count() == 1
    assert train.global_mesh().devices.tolist() == jax.devices()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-processes", "2"], "--num-processes go(es) with --distributed"),
        (["--distributed", "--coordinator", "localhost"], "--coordinator must be HOST:PORT, got 'localhost'"),
        (["--distributed", "--num-processes", "2", "--process-id", "2"], "--process-id 2 must be below"),
        (["--distributed", "--num-processes", "1", "--batch-size", "12"], "--batch-size (12 examples) does not split"),
        (["--fsdp", "--process-id", "0"], "--process-id --fsdp go(es) with --distributed"),
    ],
)
def test_distributed_flags_are_checked(flags, message, tmp_path, capsys):
    argv = ["train", "--task", "adding", "--seq-len", "4", "--num-train", "32", "--out", str(tmp_path / "run"), *flags]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


class _ReachedFitError(Exception):
    pass


@pytest.mark.parametrize("fsdp", [False, True])
def test_distributed_trains_data_parallel_or_fsdp_over_every_device(fsdp, tmp_path, monkeypatch):
    def fake_fit(self, train_data, **kwargs):
        raise _ReachedFitError(self.partitioning)

    monkeypatch.setattr(train.Trainer, "fit", fake_fit)
    argv = ["train", "--task", "adding", "--seq-len", "4", "--num-train", "32", "--hidden", "2", "--batch-size", "8"]
    argv += ["--no-progress", "--out", str(tmp_path / "run"), "--distributed", "--num-processes", "1"]
    with pytest.raises(_ReachedFitError) as reached:
        cli.main(argv + ["--fsdp"] * fsdp)
    (partitioning,) = reached.value.args
    assert partitioning.shard_params is fsdp and partitioning.mesh.devices.tolist() == jax.devices()
