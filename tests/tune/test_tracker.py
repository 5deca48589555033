"""Scale-out on TVM's RPC tracker: a tracker and two workers on localhost tune as well as local
QEMU does with the same seed and budget, and both workers run measurements."""
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from micro_project import qemu
from tune_support import small_task
from tvm_quantmcu.topi import KernelSpec
from tvm_quantmcu.tune.tuner import Tuner

KEY = "qmcu-test-qemu"
pytestmark = [pytest.mark.slow, pytest.mark.qemu,
              pytest.mark.skipif(not qemu.have_toolchain(),
                                 reason="needs qemu-system-arm and arm-none-eabi-gcc"),
              pytest.mark.skipif(any(importlib.util.find_spec(m) is None
                                     for m in ("tornado", "cloudpickle", "psutil")),
                                 reason="TVM's RPC tracker needs tornado, cloudpickle, psutil")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args) -> subprocess.Popen:
    # own process group: the tracker and the servers run helper processes of their own
    return subprocess.Popen([sys.executable, "-m", *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.fixture
def tracker():
    from tvm import rpc
    port = _free_port()
    procs = [_start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                     "--port-end", str(port + 1), "--silent"])]
    try:
        for i, name in enumerate(("w1", "w2")):
            first = _free_port()
            procs.append(_start(["tvm_quantmcu.tune.worker", "--tracker", f"127.0.0.1:{port}",
                                 "--key", KEY, "--name", name, "--port", str(first),
                                 "--port-end", str(first + 1)]))
        deadline = time.monotonic() + 60
        while True:
            try:
                q = rpc.connect_tracker("127.0.0.1", port).summary()["queue_info"]
                if q.get(KEY, {}).get("free", 0) == 2:
                    break
            except (ConnectionError, RuntimeError, OSError):
                pass
            assert time.monotonic() < deadline, "the workers did not register in 60 s"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        for p in reversed(procs):
            _stop(p)


def test_two_workers_tune_like_local_qemu(tracker, tmp_path):
    tasks = [small_task(), small_task(KernelSpec("depthwise", (9, 9, 16), 16, (3, 3), (1, 1),
                                                 (1, 1, 1, 1)), seed=1, tag="dw9")]
    with Tuner(tmp_path / "local", workers=2, seed=7) as t:
        local = t.tune(tasks, 6)
    with Tuner(tmp_path / "remote", workers=2, seed=7, tracker=tracker, key=KEY) as t:
        remote = t.tune(tasks, 6)
    by_worker = remote["measurements_by_worker"]
    assert set(by_worker) == {"w1", "w2"} and min(by_worker.values()) >= 1
    assert remote["new_measurements"] == local["new_measurements"] > 0
    for a, b in zip(local["tasks"], remote["tasks"]):
        assert a["task"] == b["task"] and a["trials"] == b["trials"]
        assert a["default_instructions"] == b["default_instructions"]
        assert abs(b["best_instructions"] - a["best_instructions"]) <= 0.05 * a[
            "best_instructions"]
