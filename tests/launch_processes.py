"""A multi-process JAX run on one machine, for the tests: N processes of D CPU devices each, on localhost.

Each process runs ``recurrax`` commands in order (``recurrax.cli.main(argv)``,
what the ``recurrax`` script runs), joined by ``--distributed --coordinator
localhost:PORT``. A process that fails stops the others (SIGKILL), as a
cluster's scheduler ends a job one of whose processes is gone: they would
otherwise wait for it until jax's heartbeat timeout.

A run can also be killed and restarted: each of its lives is a set of fresh
processes. To pay jax's import once per rank rather than once per life
(``import recurrax._cli_run``: 4.8 CPU-s, measured at load 8, about as much as
a short test run's training), a parent process per rank imports
recurrax and forks one child per life; a child is a new process that has
never started jax's backends or joined a run, and what a killed life leaves
behind is only what it wrote to disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_RUN = """
import json, os, signal, sys, time
import recurrax._cli_run  # jax, flax, optax: imported once, before the forks (no backend started yet)
from recurrax.cli import main

lives, kill_at_checkpoint, scratch, rank = json.loads(sys.argv[1])


def kill_at_rename(step):
    from orbax.checkpoint._src.path import atomicity

    rename = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *args, **kwargs):
        # Process 0 alone renames a step into place, once every process has written its part.
        if self.get_final().name == str(step):
            os.kill(os.getpid(), signal.SIGKILL)
        return await rename(self, *args, **kwargs)

    atomicity.AtomicRenameTemporaryPath.finalize = finalize


for life, commands in enumerate(lives):
    while life and not os.path.exists(f"{scratch}/go{life}"):  # the launcher's go: every rank's life before ended
        time.sleep(0.05)
    child = os.fork()
    if child == 0:
        if life == 0 and kill_at_checkpoint is not None:
            kill_at_rename(kill_at_checkpoint)
        sys.exit(next((1 for argv in commands if main(argv)), 0))  # atexit: jax.distributed's shutdown
    while True:  # until the child ends, or another rank's child died: then the job is over, as a cluster's
        # scheduler ends it (left alone, the child would abort when JAX's coordination service notices)
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            break
        if os.path.exists(f"{scratch}/death{life}"):
            os.kill(child, signal.SIGKILL)
        time.sleep(0.05)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        open(f"{scratch}/death{life}", "a").close()
    with open(f"{scratch}/code{life}_{rank}.tmp", "w") as f:
        f.write(str(code))
    os.replace(f"{scratch}/code{life}_{rank}.tmp", f"{scratch}/code{life}_{rank}")  # whole when read
    if code > 0:
        sys.exit(1)  # an unexpected failure: the next life would not start from a state the test planned
"""


def free_port() -> int:
    """A TCP port nothing listens on now (the coordinator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Process:
    """One rank of a launch: its output over all its lives, and each life's return code (-9: SIGKILL)."""

    stdout: str
    stderr: str
    codes: list[int]


def launch(
    lives: Sequence[Sequence[Sequence[Sequence[str]]]],
    *,
    devices: int,
    cwd: Path,
    compilation_cache: Path | None = None,
    kill_at_checkpoint: int | None = None,
    between: Callable[[int], None] | None = None,
    timeout: float = 300,
) -> list[Process]:
    """Runs a run's lives one after the other: in life ``k``, process ``i`` runs ``lives[k][i]``
    (argv lists, in order), all processes at once, each with ``devices`` CPU devices. Returns
    each rank's output and its lives' return codes once all have ended (failed or not).

    ``kill_at_checkpoint``: a step whose checkpoint kills the first life, ``kill -9`` at a moment
    that does not depend on timing: process 0 sends itself SIGKILL when every process has written
    that step's files into orbax's temporary directory and process 0 is about to rename it into
    place (with asynchronous checkpoints training could go on meanwhile; the step is left
    half-saved). The other processes of that life then get SIGKILL too.

    ``between(k)``: called here before life ``k`` starts, once every process of life ``k - 1`` has ended.

    ``compilation_cache``: a directory for jax's persistent compilation cache, shared by the
    processes, their lives and their commands (the same programs, compiled once: ~15 % of the
    CPU time of tests/multidevice/test_multiprocess.py, measured).
    """
    ranks = {len(life) for life in lives}
    if len(ranks) != 1:
        raise ValueError(f"every life needs the same number of processes, got {sorted(ranks)}")
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    env = {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}".strip()}
    env.pop("PYTEST_XDIST_WORKER", None)
    if compilation_cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(compilation_cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # the tests' programs are small: cache them all
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    with contextlib.ExitStack() as files:
        scratch = Path(files.enter_context(tempfile.TemporaryDirectory()))
        # Files, not pipes: a process never blocks on a full pipe while the others wait for it.
        logs = [[files.enter_context(tempfile.TemporaryFile("w+")) for _ in "oe"] for _ in range(ranks.pop())]

        def codes(rank: int) -> list[int]:
            paths = (scratch / f"code{k}_{rank}" for k in range(len(lives)))
            return [int(p.read_text()) for p in paths if p.exists()]

        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _RUN,
                    json.dumps([[[list(a) for a in life[i]] for life in lives], kill_at_checkpoint, str(scratch), i]),
                ],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                text=True,
                start_new_session=True,  # one process group per rank: its parent and its children
            )
            for i, (out, err) in enumerate(logs)
        ]
        deadline, started = time.monotonic() + timeout, 1
        try:
            while any(p.poll() is None for p in procs) and not any(p.returncode for p in procs):
                ended = [codes(i) for i in range(len(procs))]
                if time.monotonic() > deadline:
                    break
                if started < len(lives) and all(len(c) == started for c in ended):
                    if between is not None:
                        between(started)
                    (scratch / f"go{started}").touch()
                    started += 1
                time.sleep(0.05)
        finally:
            for p in procs:
                if p.poll() is None:  # a failed process's others, or a timeout: the whole process group
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
        results = []
        for i, (p, (out, err)) in enumerate(zip(procs, logs, strict=True)):
            p.wait()
            out.seek(0)
            err.seek(0)
            results.append(Process(out.read(), err.read(), codes(i) or [p.returncode]))
    return results
