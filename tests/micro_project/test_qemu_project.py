"""The qemu template: bare-metal firmware on QEMU's Arm boards, driven through the project API
and the RPC client, checked bit for bit against the integer reference."""
import os
import time

import numpy as np
import pytest

import micro_project
from micro_project.project_api import ProjectError

from mp_support import qemu_descendants, requires_qemu

pytestmark = [requires_qemu, pytest.mark.qemu]


@pytest.fixture(scope="module")
def qemu_projects(model_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("qemu")
    api = micro_project.get_template("qemu")
    out = {}
    for board in ("mps2-an386", "mps2-an500", "mps3-an547"):
        p = api.generate_project(model_dirs["tiny"].directory, root / board, {"board": board})
        p.build()
        out[board] = p
    return out


def _inputs(model, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, model.input_bytes, dtype=np.uint8).tobytes() for _ in range(n)]


def test_default_board_runs_the_model_bit_exactly_with_deterministic_timing(qemu_projects,
                                                                            model_dirs):
    model = model_dirs["tiny"]
    project = qemu_projects["mps2-an386"]
    assert micro_project.get_template("qemu").server_info_query().project_options[1].default \
        == "mps2-an386"
    ticks = []
    for boot in range(2):
        project.flash()
        pid = project.qemu_pid
        project.open_transport()
        try:
            client = project.client()
            info = client.check_model(model.hash)
            assert (info.board, info.counter_name, info.counter_hz) == \
                ("mps2-an386", "cmsdk-timer0", 25_000_000)
            xs = _inputs(model, 8 if boot == 0 else 1)
            for x in xs:
                out, timing = client.infer(x)
                assert out == model.reference(x)
            ticks.append(timing.ticks)
            # same input, same instructions: Timer0 ticks 1.6 times per instruction, so a
            # reading may differ by the one tick its start phase decides
            again = client.run()
            assert abs(again.ticks - timing.ticks) <= 1
        finally:
            project.close_transport()
        assert not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    # the first input of boot 0 is the input of boot 1: identical counts across boots
    project.flash()
    project.open_transport()
    try:
        client = project.client()
        out, timing = client.infer(_inputs(model, 1)[0])
        assert abs(timing.ticks - ticks[1]) <= 1
        instructions = project.instructions(timing.ticks)
        macs = 768 * 32 + 32 * 10
        assert macs < instructions < 40 * macs
    finally:
        project.close_transport()
    assert qemu_descendants() == []


@pytest.mark.parametrize("board", ["mps2-an500", "mps3-an547"])
def test_other_boards(qemu_projects, model_dirs, board):
    model = model_dirs["tiny"]
    project = qemu_projects[board]
    project.open_transport()
    try:
        client = project.client()
        info = client.check_model(model.hash)
        assert info.board == board and info.counter_name == project.counter_name
        assert info.counter_hz == project.board.timer_hz
        for x in _inputs(model, 3, seed=1):
            out, timing = client.infer(x)
            assert out == model.reference(x) and timing.ticks > 0
        assert client.run_kernel(0, repeat=2).ticks > client.run_kernel(1, repeat=2).ticks
    finally:
        project.close_transport()


def test_socket_link(qemu_projects, model_dirs):
    model = model_dirs["tiny"]
    project = qemu_projects["mps2-an386"]
    with project.session(expected_hash=model.hash, flash_options={"serial": "socket"}) as c:
        assert c.ping(bytes(range(200))) == bytes(range(200))
        x = _inputs(model, 1, seed=3)[0]
        assert c.infer(x)[0] == model.reference(x)
    assert project.transport is None


def test_flash_before_build_is_an_error(model_dirs, tmp_path):
    project = micro_project.get_template("qemu").generate_project(
        model_dirs["tiny"].directory, tmp_path / "p", {"board": "mps2-an386"})
    with pytest.raises(ProjectError, match="build\\(\\) first"):
        project.flash()
    with pytest.raises(ProjectError, match="not one of"):
        micro_project.get_template("qemu").generate_project(
            model_dirs["tiny"].directory, tmp_path / "q", {"board": "mps2-an999"})


def test_process_census_sees_a_running_qemu(qemu_projects):
    """The check behind the no-leftover fixture really finds QEMU processes of this test."""
    project = qemu_projects["mps2-an386"]
    project.flash()
    pid = project.qemu_pid
    try:
        deadline = time.monotonic() + 5
        while not qemu_descendants() and time.monotonic() < deadline:
            time.sleep(0.05)      # `timeout` has to exec QEMU first
        found = qemu_descendants()
        assert len(found) == 1 and found[0] != pid      # QEMU runs as the child of `timeout`
    finally:
        project.close_transport()
    assert qemu_descendants() == []


def test_qemu_ends_by_itself_after_its_time_limit(qemu_projects):
    """Even if the host never closes the link (say it crashed), QEMU does not live on."""
    project = qemu_projects["mps2-an386"]
    project.flash({"time_limit": 2})
    project.open_transport()
    try:
        assert project.client().ping(b"alive") == b"alive"
        deadline = time.monotonic() + 10
        while qemu_descendants() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert qemu_descendants() == []
    finally:
        project.close_transport()
