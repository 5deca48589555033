"""pyserial links: loop://, and a real tty (a pseudo-terminal whose other side is the host
firmware), driven by the same client as every other transport."""
import os
import subprocess
import time
import tty

import pytest

from micro_project.client import Client, LinkError
from micro_project.transport import SerialTransport, Transport, TransportError

from mp_support import requires_gcc


def test_loop_url_moves_bytes_both_ways():
    t = SerialTransport("loop://")
    try:
        t.write(b"\xa5hello\x00\xff")
        got = b""
        deadline = time.monotonic() + 2
        while len(got) < 8 and time.monotonic() < deadline:
            got += t.read(100, 0.2)
        assert got == b"\xa5hello\x00\xff"
        assert t.read(10, 0.05) == b""
    finally:
        t.close()


def test_a_link_that_only_echoes_is_not_a_device():
    client = Client.from_url("loop://", timeout=0.2)
    try:
        t0 = time.monotonic()
        with pytest.raises(LinkError, match="did not answer ping"):
            client.ping(b"x")                      # it only hears its own request
        assert time.monotonic() - t0 < 2
        assert client.stats.stale >= 1
    finally:
        client.close()


def test_bad_url_is_a_clear_error():
    with pytest.raises(TransportError, match="cannot open serial link /dev/ttyNOPE0"):
        SerialTransport("/dev/ttyNOPE0")


@requires_gcc
def test_tty_device_path(host_project, model_dirs):
    """pyserial on /dev/pts/N; the host firmware sits on the pty's master side."""
    master, slave = os.openpty()
    tty.setraw(slave)                              # no echo or byte translation from the start
    slave_path = os.ttyname(slave)
    proc = subprocess.Popen([str(host_project.binary)], stdin=master, stdout=master,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(master)
    try:
        client = Client.from_url(slave_path, baudrate=115200, timeout=2.0)
        os.close(slave)                            # pyserial holds its own descriptor
        try:
            info = client.connect()
            assert info.model_hash == model_dirs["tiny"].hash
            x = bytes((i * 7) % 256 for i in range(info.input_bytes))
            assert client.infer(x)[0] == model_dirs["tiny"].reference(x)
        finally:
            client.close()
    finally:
        proc.kill()
        proc.wait()


class _ReadsThenStops(Transport):
    """Never answers; takes a byte of what was written every 100 ms for `reading` seconds,
    then none (a loaded emulator that reads slowly, then one that stopped)."""

    def __init__(self, reading: float):
        self.start = time.monotonic()
        self.until = self.start + reading
        self.written = 0

    def write(self, data, timeout=None):
        self.written += len(data)

    def read(self, n, timeout):
        time.sleep(timeout or 0)
        return b""

    def unread(self):
        taken = int((min(time.monotonic(), self.until) - self.start) * 10)
        return max(0, self.written - taken)


@pytest.mark.parametrize("reading", [0.0, 1.0])
def test_a_device_that_reads_is_slow_not_hung(reading):
    client = Client(_ReadsThenStops(reading), timeout=0.2, timeout_retries=1)
    t0 = time.monotonic()
    with pytest.raises(LinkError, match="did not answer ping within 0.4 s"):
        client.ping(b"x")
    seconds = time.monotonic() - t0
    # given more time while it takes bytes; declared hung once it took none since the last
    # look (after each write and each 0.4 s without an answer)
    assert max(0.4, reading + 0.15) <= seconds < reading + 0.4 + 0.5
