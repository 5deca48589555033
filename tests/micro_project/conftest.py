"""Fixtures of the micro_project tests: a generated test model, built host projects, and the
check that no QEMU process outlives the test that started it."""
import os
import signal
import time

import pytest

from mp_support import qemu_descendants


@pytest.fixture(autouse=True)
def no_qemu_left_behind():
    """Every QEMU process a test starts must be gone when the test ends."""
    yield
    deadline = time.monotonic() + 3.0
    left = qemu_descendants()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = qemu_descendants()
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"QEMU processes outlived the test: {left}"


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """Generated test models: the normal one, one that hangs, one with an error trigger."""
    from micro_project.testmodel import write_test_model
    root = tmp_path_factory.mktemp("models")
    return {
        "tiny": write_test_model(root / "tiny", fail_magic=True),
        "hang": write_test_model(root / "hang", name="tiny-hang", hang=True),
    }


@pytest.fixture(scope="session")
def host_project(model_dirs, tmp_path_factory):
    """The host template generated and built for the tiny model."""
    import micro_project
    api = micro_project.get_template("host")
    project = api.generate_project(model_dirs["tiny"].directory,
                                   tmp_path_factory.mktemp("host") / "proj")
    project.build()
    return project
