"""Runs tests/multidevice/ in one subprocess with 8 CPU devices (``--xla_force_host_platform_device_count=8``).

One process for all of them: jax's start-up and the compiles the tests share are
paid once. Its own output is shown when it fails. A ``-m`` marker expression
(``make test-newest``'s ``"not slow"``) is passed on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_the_multidevice_tests_pass_on_8_cpu_devices(request):
    env = {**os.environ, "XLA_FLAGS": f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count=8"}
    env.pop("PYTEST_XDIST_WORKER", None)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-p", "no:randomly"]
    if request.config.getoption("markexpr"):  # the newest-stack leg's -m "not slow" selects here too
        command += ["-m", request.config.getoption("markexpr")]
    done = subprocess.run([*command, str(HERE / "multidevice")], env=env, capture_output=True, text=True, timeout=600)
    report = f"{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    assert " passed" in done.stdout and " skipped" not in done.stdout, report  # deselected is fine, skipped is not
