"""Byte links between the host and a running firmware.

Every transport has the same three calls: ``read(n, timeout)`` (up to n bytes, at least one
unless the timeout passes, then b""), ``write(data, timeout)`` and ``close()``. A link whose
other end is gone raises :class:`TransportClosed` with what is known about why."""
from __future__ import annotations

import array
import fcntl
import os
import select
import signal
import socket
import subprocess
import termios
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path


class TransportError(RuntimeError):
    pass


class TransportClosed(TransportError):
    """The other end went away (process exited, socket closed)."""


class TransportTimeout(TransportError):
    pass


@dataclass(frozen=True)
class TransportTimeouts:
    """Like microTVM's: how long the host should wait for the device in each phase."""
    session_start_retry_timeout_sec: float
    session_start_timeout_sec: float
    session_established_timeout_sec: float


class Transport:
    def read(self, n: int, timeout: float | None) -> bytes:
        raise NotImplementedError

    def write(self, data: bytes, timeout: float | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def unread(self) -> int | None:
        """Bytes written that the other end has not read yet (None: the link cannot tell)."""
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _tail(path: Path | None, limit: int = 2000) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_bytes()[-limit:].decode("utf-8", "replace").strip()
    return text


_live: "weakref.WeakSet[ProcessTransport]" = weakref.WeakSet()
_live_lock = threading.RLock()       # re-entered by the signal handler's kill


def kill_all_processes() -> list[int]:
    """Kill the process group of every open ProcessTransport of this process (what a signal
    handler calls before the program ends, so no emulator outlives it); returns their pids."""
    with _live_lock:
        live = list(_live)
    pids = []
    for t in live:
        if t.proc.poll() is None:
            try:
                os.killpg(t.proc.pid, signal.SIGKILL)
                pids.append(t.proc.pid)
            except (ProcessLookupError, PermissionError):
                pass
    return pids


class ProcessTransport(Transport):
    """A child process whose stdin/stdout are the link (host firmware, QEMU with a stdio
    chardev). The process runs in its own session (its own process group, so a Ctrl-C on the
    terminal does not reach it half-way); close() kills that group by its id, so nothing it
    started survives, and waits for it. kill_all_processes() does the same for every open one.
    """

    def __init__(self, argv: list[str], name: str, stderr_path: Path | None = None,
                 cwd: str | os.PathLike | None = None):
        self.name = name
        self.argv = list(argv)
        self.stderr_path = Path(stderr_path) if stderr_path else None
        err = open(self.stderr_path, "wb") if self.stderr_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, cwd=cwd,
                                         start_new_session=True, bufsize=0)
        except FileNotFoundError as e:
            raise TransportError(f"cannot start {name}: {e}") from None
        finally:
            if self.stderr_path:
                err.close()
        self._out = self.proc.stdout.fileno()
        self._in = self.proc.stdin.fileno()
        os.set_blocking(self._out, False)
        with _live_lock:
            _live.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _closed_error(self) -> TransportClosed:
        rc = self.proc.poll()
        if rc is None:
            try:
                rc = self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                rc = None
        how = "closed its output" if rc is None else f"exited with status {rc}"
        tail = _tail(self.stderr_path)
        return TransportClosed(f"{self.name} {how}" + (f"; stderr:\n{tail}" if tail else ""))

    def read(self, n: int, timeout: float | None) -> bytes:
        if self.proc.stdout is None:
            raise TransportClosed(f"{self.name}: transport already closed")
        ready, _, _ = select.select([self._out], [], [], timeout)
        if not ready:
            return b""
        try:
            data = os.read(self._out, n)
        except BlockingIOError:
            return b""
        if not data:
            raise self._closed_error()
        return data

    def write(self, data: bytes, timeout: float | None = None) -> None:
        if self.proc.stdin is None:
            raise TransportClosed(f"{self.name}: transport already closed")
        view = memoryview(bytes(data))
        deadline = None if timeout is None else time.monotonic() + timeout
        while view:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, ready, _ = select.select([], [self._in], [], wait)
            if not ready:
                raise TransportTimeout(f"{self.name}: write of {len(data)} bytes timed out")
            try:
                k = os.write(self._in, view)
            except BrokenPipeError:
                raise self._closed_error() from None
            view = view[k:]

    def unread(self) -> int | None:
        if self.proc.stdin is None:
            return None
        n = array.array("i", [0])
        fcntl.ioctl(self._in, termios.FIONREAD, n)      # bytes still in the pipe
        return n[0]

    def __del__(self):
        # a forgotten link must not leave its process (QEMU) running
        try:
            if self.proc.poll() is None:
                self.close()
        except Exception:
            pass

    def close(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # our own session, created at start
            except ProcessLookupError:
                pass
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        proc.stdin = proc.stdout = None
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SerialTransport(Transport):
    """pyserial's ``serial_for_url``: ``socket://host:port``, ``/dev/ttyACM0``, ``loop://``..."""

    def __init__(self, url: str, baudrate: int = 115200, **kwargs):
        import serial
        self.url = url
        try:
            self.ser = serial.serial_for_url(url, baudrate=baudrate, timeout=0, **kwargs)
        except (serial.SerialException, ValueError) as e:
            raise TransportError(f"cannot open serial link {url}: {e}") from None
        sock = getattr(self.ser, "_socket", None)
        if sock is not None:          # 52 ms → 0.2 ms round trips (PLATFORM.md)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read(self, n: int, timeout: float | None) -> bytes:
        import serial
        try:
            self.ser.timeout = timeout
            first = self.ser.read(1)
            if not first:
                return b""
            self.ser.timeout = 0
            more = min(self.ser.in_waiting, n - 1)
            return first + (self.ser.read(more) if more > 0 else b"")
        except serial.SerialException as e:
            raise TransportClosed(f"serial link {self.url}: {e}") from None

    def write(self, data: bytes, timeout: float | None = None) -> None:
        import serial
        try:
            self.ser.write_timeout = timeout
            self.ser.write(bytes(data))
            self.ser.flush()
        except serial.SerialTimeoutException:
            raise TransportTimeout(f"serial link {self.url}: write timed out") from None
        except serial.SerialException as e:
            raise TransportClosed(f"serial link {self.url}: {e}") from None

    def close(self) -> None:
        self.ser.close()
