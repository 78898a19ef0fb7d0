"""Multi-host training: two processes x four CPU devices (jax.distributed on localhost, gloo) are one run.

The slow test runs docs/distributed.md's localhost recipe as written (a free
port for its 1234, a temporary directory): two processes train FSDP to the
last step and are killed (kill -9) with its checkpoint half-saved; restarted,
both resume from the last complete one and train the last step again. This process (8 devices) then
trains the run alone. The resumed run must be the uninterrupted one bit for
bit; the two-process run is the one-process run to float32 round-off (gloo
adds the devices' partial gradients in another order than XLA inside one
process: measured 3e-7 relative on the losses), held to the 1e-5 of
test_data_parallel.py.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
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


def _recipe() -> tuple[list[list[list[str]]], int]:
    """The localhost recipe of docs/distributed.md: per launch, each process's argv (by --process-id);
    and the step whose checkpoint, once on disk, is the signal to kill the first launch."""
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
    on_disk = r"^until \[ -d runs/adding/checkpoints/(\d+) \]; do sleep [\d.]+; done; kill -9 %1 %2$"
    kill = re.search(on_disk, text, flags=re.M)
    assert kill is not None, "the recipe's first launch is not killed once a checkpoint is on disk"
    return launches, int(kill.group(1))


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


def _complete_steps(checkpoints: Path) -> list[int]:
    return sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())


def _split(checkpoint: Path) -> list[bool]:
    """Whether each model array of an orbax checkpoint is split over the devices (its sharding metadata)."""
    shardings = [json.loads(v) for v in json.loads((checkpoint / "model" / "_sharding").read_text()).values()]
    assert {len(s["device_mesh"]["mesh"]) for s in shardings} == {8}  # every array on the 2 x 4 devices
    return ['"data"' in json.dumps(s["partition_spec"]) for s in shardings]


@pytest.mark.slow  # 2 processes x 2 lives (killed, resumed), this one alone: the file takes 41-44 CPU-s (load 3-5)
def test_two_processes_killed_resume_bit_for_bit_and_train_as_one_process(tmp_path, monkeypatch):
    (first, restart), on_disk = _recipe()
    last = int(first[0][first[0].index("--steps") + 1])
    run, killed = tmp_path / "runs" / "adding", tmp_path / "killed"
    # The recipe's kill comes at a moment that depends on timing. Here it comes at the last one: the processes
    # have trained every step, written the history and their parts of the last step's checkpoint, and process
    # 0's background thread is about to rename that step into place. So the killed run is also the
    # uninterrupted one (all but its final metrics), and the restart must resume from the recipe's step.

    def after_the_kill(life: int) -> None:
        assert _complete_steps(run / "checkpoints")[-1] == on_disk < last
        half_saved = run / "checkpoints" / f"{last}.orbax-checkpoint-tmp"
        assert [p for p in (run / "checkpoints").iterdir() if not p.name.isdigit()] == [half_saved]
        assert any(_split(run / "checkpoints" / str(on_disk)))  # FSDP (data parallel would replicate every array)
        # Set aside before the restart rewrites them: the history and the parameters of the last step.
        (killed / "checkpoints").mkdir(parents=True)
        shutil.copytree(half_saved, killed / "checkpoints" / str(last))
        for name in ("config.json", "history.json"):
            shutil.copy(run / name, killed / name)

    ports = free_port(), free_port()  # the restart's coordinator: a port no dying socket holds
    processes = launch(
        [[[_on_port(a, port)] for a in argvs] for argvs, port in zip((first, restart), ports, strict=True)],
        devices=4,
        cwd=tmp_path,
        compilation_cache=tmp_path / "jax_cache",
        kill_at_checkpoint=last,
        between=after_the_kill,
    )
    report = "\n".join(f"{i}: {p.codes}\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}" for i, p in enumerate(processes))
    # Process 0 killed itself; process 1 was killed with it (or aborted when JAX's coordination service saw
    # process 0 go); both restarted processes ended well.
    assert processes[0].codes == [-signal.SIGKILL, 0] and processes[1].codes[1:] == [0], report
    assert processes[1].codes[0] != 0, report
    said = [[line for line in done.stdout.splitlines() if not _from_gloo(line)] for done in processes]
    assert f"recurrax: resumed from the checkpoint of step {on_disk}; training to step {last}" in said[0]
    assert "run saved in runs/adding" in said[0] and said[1] == []  # process 0 speaks for the run
    assert [p.name for p in (run / "checkpoints").iterdir() if not p.name.isdigit()] == []  # orbax cleared it

    monkeypatch.chdir(tmp_path)
    alone = first[0]
    for flag in ("--coordinator", "--process-id"):  # one process: no coordinator
        i = alone.index(flag)
        alone = alone[:i] + alone[i + 2 :]
    alone = _replaced(alone, num_processes="1", out="runs/one_process")
    assert "--fsdp" in alone and jax.device_count() == 8 and cli.main(alone) == 0

    runs = {"resumed": run, "killed": killed, "one_process": tmp_path / "runs" / "one_process"}
    history = {k: json.loads((d / "history.json").read_text()) for k, d in runs.items()}
    params = {k: _params(d) for k, d in runs.items()}  # checkpoints of 2 processes x 4 devices, onto 1 device
    # Resumed = uninterrupted, bit for bit: every history row and the parameters.
    assert history["resumed"] == history["killed"]
    assert len(history["resumed"]["steps"]) == last and len(history["resumed"]["epochs"]) == 2
    for a, b in zip(params["resumed"], params["killed"], strict=True):
        np.testing.assert_array_equal(a, b)
    # Two processes x 4 devices = one process x 8 devices, to round-off: the same batches in the same order.
    got, want = history["resumed"], history["one_process"]
    for key in ("loss", "grad_norm", "update_norm", "param_norm"):
        np.testing.assert_allclose([r[key] for r in got["steps"]], [r[key] for r in want["steps"]], rtol=1e-5)
    np.testing.assert_allclose([r["val_loss"] for r in got["epochs"]], [r["val_loss"] for r in want["epochs"]], 1e-5)
    metrics = {k: json.loads((runs[k] / "metrics.json").read_text()) for k in ("resumed", "one_process")}
    for split in ("validation", "test"):
        np.testing.assert_allclose(metrics["resumed"][split]["loss"], metrics["one_process"][split]["loss"], 1e-5)
    for a, b in zip(params["resumed"], params["one_process"], strict=True):
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
