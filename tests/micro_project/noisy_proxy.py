"""A loopback TCP proxy that damages the bytes it forwards, both ways: each byte has one random
bit flipped with probability `flip` and is dropped with probability `drop`. For tests of the
RPC link under noise (127.0.0.1 only)."""
from __future__ import annotations

import socket
import threading

import numpy as np


class NoisyProxy:
    def __init__(self, upstream_port: int, flip: float = 0.01, drop: float = 0.001,
                 seed: int = 0):
        self.upstream_port, self.flip, self.drop = upstream_port, flip, drop
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()
        self.moved = self.flipped = self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = False
        self._socks: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _damage(self, data: bytes) -> bytes:
        with self.lock:
            buf = np.frombuffer(data, np.uint8).copy()
            r = self.rng.random(len(buf))
            hit = np.flatnonzero(r < self.flip)
            buf[hit] ^= (1 << self.rng.integers(0, 8, len(hit))).astype(np.uint8)
            keep = self.rng.random(len(buf)) >= self.drop
            self.moved += len(buf)
            self.flipped += len(hit)
            self.dropped += int((~keep).sum())
            return buf[keep].tobytes()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                dst.sendall(self._damage(data))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                client.close()             # the emulator is not listening yet: try again
                continue
            up.settimeout(None)
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._socks.append(s)
            for a, b in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass

    def summary(self) -> str:
        return (f"proxy: {self.moved} bytes forwarded, {self.flipped} bit flips, "
                f"{self.dropped} dropped")
