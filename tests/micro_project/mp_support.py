"""Shared test helpers of tests/micro_project: tool markers and the QEMU process census."""
import os
import shutil

import pytest

from micro_project import qemu as board_layer

requires_qemu = pytest.mark.skipif(
    not board_layer.have_toolchain(),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (apt-get install --no-install-recommends "
           "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")
requires_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
requires_arm_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                      reason="needs arm-none-eabi-gcc")


def _processes():
    """pid → (name, ppid, state) of every process, from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry)] = (name, int(fields[1]), fields[0])
    return out


def qemu_descendants() -> list[int]:
    """Running (not zombie) QEMU processes started, directly or not, by this test process."""
    procs = _processes()
    me = os.getpid()
    found = []
    for pid, (name, _, state) in procs.items():
        if not name.startswith("qemu-system") or state == "Z":
            continue
        p, seen = pid, set()
        while p in procs and p not in seen and p > 1:
            seen.add(p)
            p = procs[p][1]
            if p == me:
                found.append(pid)
                break
    return found
