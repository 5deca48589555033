"""Every tutorial runs top to bottom in its fast mode (QUANTMCU_FAST=1) and its own asserts
hold."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, have, requires_dataset

TUTORIALS = sorted((Path(REPO) / "tutorials").glob("[0-9][0-9]_*.py"))
NEEDS_QEMU = ("02_", "03_")

pytestmark = requires_dataset


def test_tutorials_exist():
    names = [t.name for t in TUTORIALS]
    assert names == ["01_add_quantmcu_passes.py", "02_deploy_on_qemu_and_zephyr.py",
                     "03_autotune_on_device.py"], names


@pytest.mark.parametrize("path", TUTORIALS, ids=[t.stem for t in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    if path.name.startswith(NEEDS_QEMU) and not (have("qemu-system-arm")
                                                 and have("arm-none-eabi-gcc")):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc (apt-get install "
                    "qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    env = dict(os.environ, QUANTMCU_FAST="1", TMPDIR=str(tmp_path))
    p = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, f"{path.name} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
