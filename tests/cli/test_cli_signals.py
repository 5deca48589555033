"""A board that stops answering (QEMU sent SIGSTOP) is reported by deploy and tune within
10 s and its QEMU ends; a CLI ended by SIGTERM or SIGINT leaves no QEMU behind."""
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import REPO, requires_dataset, requires_trained

pytestmark = [pytest.mark.qemu, requires_trained("mbv2-fmnist"), requires_dataset]


def _children():
    """pid → (name, ppid) of every process."""
    out = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                stat = open(f"/proc/{e}/stat").read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                out[int(e)] = (name, int(fields[1]))
    return out


def _qemu_of(pid: int) -> list[int]:
    procs, found = _children(), []
    for q, (name, _) in procs.items():
        if name.startswith("qemu-system"):
            p = q
            while p in procs and p > 1:
                p = procs[p][1]
                if p == pid:
                    found.append(q)
                    break
    return found


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _start(*args):
    return subprocess.Popen([sys.executable, "-m", "tvm_quantmcu.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _running_qemu(cli, timeout=900.0, settle=2.0) -> int:
    """The QEMU a CLI run started, once it has served for `settle` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _qemu_of(cli.pid)
        if found:
            time.sleep(settle)
            if _alive(found[0]):
                return found[0]
        if cli.poll() is not None:
            pytest.fail(f"the CLI ended before starting QEMU: {cli.stderr.read()[-2000:]}")
        time.sleep(0.1)
    cli.kill()
    pytest.fail("no QEMU within the time limit")


def _stop_and_expect_report(cli, what):
    qemu = _running_qemu(cli)
    os.kill(qemu, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
        if _alive(qemu):
            os.kill(qemu, signal.SIGKILL)
    seconds = time.monotonic() - t0
    lines = [l for l in err.splitlines() if l.strip()]
    print(f"\n{what}: reported after {seconds:.1f} s: {lines[-1] if lines else ''}")
    assert cli.returncode == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err and "hang" in lines[0], err[-2000:]
    assert seconds <= 10.0
    assert not _alive(qemu)


def test_deploy_reports_a_stopped_board(tmp_path):
    cli = _start("deploy", "--images", "200", "--no-progress", "--out", str(tmp_path / "out"))
    _stop_and_expect_report(cli, "deploy")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_tune_reports_a_stopped_board(tmp_path):
    cli = _start("tune", "--trials", "0", "--no-progress", "--db", str(tmp_path / "db"),
                 "--workers", "1")
    _stop_and_expect_report(cli, "tune")


@pytest.mark.parametrize("sig", [signal.SIGTERM,
                                 pytest.param(signal.SIGINT, marks=pytest.mark.slow),
                                 pytest.param(signal.SIGHUP, marks=pytest.mark.slow)])
def test_a_signal_to_the_cli_leaves_no_qemu(tmp_path, sig):
    cli = _start("deploy", "--images", "200", "--no-progress", "--out", str(tmp_path / "out"))
    qemu = _running_qemu(cli, settle=0.5)
    cli.send_signal(sig)
    try:
        _, err = cli.communicate(timeout=30)
    finally:
        if cli.poll() is None:
            cli.kill()
    gone = not _alive(qemu)
    if not gone:
        os.kill(qemu, signal.SIGKILL)
    assert gone, f"QEMU {qemu} outlived the CLI ended by {sig.name}"
    assert cli.returncode == 128 + sig and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "out").exists()
