"""A multi-process JAX run on one machine, for the tests: N processes of D CPU devices each, on localhost.

Each process runs ``recurrax`` commands in order (``recurrax.cli.main(argv)``,
what the ``recurrax`` script runs), joined by ``--distributed --coordinator
localhost:PORT``. A process that fails stops the others: they would otherwise
wait for it until jax's heartbeat timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

_RUN = """
import json, sys
from recurrax.cli import main
for argv in json.loads(sys.argv[1]):
    if main(argv):
        sys.exit(1)
"""


def free_port() -> int:
    """A TCP port nothing listens on now (the coordinator binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def launch(
    commands: Sequence[Sequence[Sequence[str]]],
    *,
    devices: int,
    cwd: Path,
    compilation_cache: Path | None = None,
    timeout: float = 300,
) -> list[subprocess.CompletedProcess[str]]:
    """Runs ``commands[i]`` (argv lists, in order) in process ``i``, all processes at once, each with
    ``devices`` CPU devices; returns their results once all have ended (failed or not).

    ``compilation_cache``: a directory for jax's persistent compilation cache, shared by the
    processes and their commands (the same programs, compiled once: ~15 % of the CPU time of
    tests/multidevice/test_multiprocess.py, measured).
    """
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    env = {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}".strip()}
    env.pop("PYTEST_XDIST_WORKER", None)
    if compilation_cache is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(compilation_cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # the tests' programs are small: cache them all
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    with contextlib.ExitStack() as files:
        # Files, not pipes: a process never blocks on a full pipe while the others wait for it.
        logs = [[files.enter_context(tempfile.TemporaryFile("w+")) for _ in "oe"] for _ in commands]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _RUN, json.dumps([list(a) for a in argvs])],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=err,
                text=True,
            )
            for argvs, (out, err) in zip(commands, logs, strict=True)
        ]
        deadline = time.monotonic() + timeout
        try:
            while any(p.poll() is None for p in procs) and not any(p.returncode for p in procs):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        results = []
        for p, (out, err) in zip(procs, logs, strict=True):
            code = p.wait()
            out.seek(0)
            err.seek(0)
            results.append(subprocess.CompletedProcess(p.args, code, out.read(), err.read()))
    return results
