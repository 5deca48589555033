"""Zephyr end to end: the generated application built with west against a real Zephyr tree,
booted under QEMU with -icount by the template and driven over the RPC link; instruction
counts through the calibrated SysTick rate. Needs ZEPHYR_BASE (a Zephyr tree with its
modules), west, arm-none-eabi-gcc and qemu-system-arm: CI has no tree, so these skip there."""
import os
import shutil

import numpy as np
import pytest

import micro_project

needs_zephyr = pytest.mark.skipif(
    not os.environ.get("ZEPHYR_BASE"),
    reason="needs a Zephyr tree (set ZEPHYR_BASE; see tutorials/02 for how to get one)")
needs_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("west", "qemu-system-arm", "arm-none-eabi-gcc")),
    reason="needs west, qemu-system-arm and arm-none-eabi-gcc")
pytestmark = [needs_zephyr, needs_tools]


# board → (QEMU machine, calibrated counter rate: the machine's system clock)
QEMU_BOARDS = {"mps2_an385": ("mps2-an385", 25e6), "mps2_an521": ("mps2-an521", 20e6),
               "mps3_an547": ("mps3-an547", 32e6)}


@pytest.mark.parametrize("board", sorted(QEMU_BOARDS))
def test_zephyr_image_serves_the_rpc_under_qemu(model_dirs, tmp_path, monkeypatch, board):
    model = model_dirs["tiny"]
    monkeypatch.chdir(tmp_path)
    project = micro_project.get_template("zephyr").generate_project(
        model.directory, "app", {"board": board})          # a relative path
    project.build({"cmake_args": os.environ.get("QMCU_ZEPHYR_CMAKE_ARGS", "")})
    machine, hz = QEMU_BOARDS[board]
    assert project.runs_in_qemu and project.board_info["qemu_machine"] == machine
    assert project.qemu_command()[1:3] == ["-icount", "shift=6"]
    with project.session(expected_hash=model.hash) as client:
        info = client.info()
        assert info.board == board and info.counter_name == "zephyr-k_cycle_get_32"
        rng = np.random.default_rng(2)
        counts = []
        for _ in range(3):
            x = rng.integers(0, 256, model.input_bytes, dtype=np.uint8).tobytes()
            out, timing = client.infer(x)
            assert out == model.reference(x)
            counts.append(project.instructions(timing.ticks_per_run))
    cal = project.counter_calibration()
    assert cal["counter_hz"] == pytest.approx(hz, rel=1e-4)
    assert cal["configured_counter_hz"] == info.counter_hz
    assert 10_000 < min(counts) and max(counts) - min(counts) < 100     # deterministic


def test_model_sources_keep_their_builtins_under_zephyr(model_dirs, tmp_path):
    """-ffreestanding would make the kernels' memcpy word loads library calls; the model's
    sources are compiled with -fbuiltin and -O2 after Zephyr's flags."""
    import json
    project = micro_project.get_template("zephyr").generate_project(
        model_dirs["tiny"].directory, tmp_path / "app", {"board": "mps3_an547"})
    project.build()
    cmds = json.loads((tmp_path / "app" / "build" / "compile_commands.json").read_text())
    model_cmds = [c["command"].split() for c in cmds if "/model/" in c["file"]]
    assert model_cmds
    for argv in model_cmds:
        assert argv.index("-fbuiltin") > argv.index("-ffreestanding")
        assert [a for a in argv if a.startswith("-O")][-1] == "-O2"
