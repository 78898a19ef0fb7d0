"""Tests that need 8 devices: tests/test_multidevice.py runs this folder in a subprocess with 8 CPU devices.

XLA fixes the device count when jax starts, so these cannot run in the suite's
own processes (one CPU device); collected there, they are skipped.
"""

from __future__ import annotations

import jax
import pytest

DEVICES = 8


def pytest_collection_modifyitems(config, items):
    if jax.device_count() >= DEVICES:
        return
    skip = pytest.mark.skip(reason=f"needs {DEVICES} devices: tests/test_multidevice.py runs these in a subprocess")
    for item in items:
        if "multidevice" in item.path.parts:
            item.add_marker(skip)
