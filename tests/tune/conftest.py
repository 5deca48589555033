"""Every QEMU process a tuning test starts (runner threads, baseline firmware) must be gone
when the test ends."""
import importlib.util
import os
import time

import pytest

_spec = importlib.util.spec_from_file_location(
    "mp_support", os.path.join(os.path.dirname(__file__), "..", "micro_project", "mp_support.py"))
_mp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mp)


@pytest.fixture(autouse=True)
def no_qemu_left_behind():
    yield
    deadline = time.monotonic() + 3.0
    left = _mp.qemu_descendants()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _mp.qemu_descendants()
    assert not left, f"QEMU processes outlived the test: {left}"
