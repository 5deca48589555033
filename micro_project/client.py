"""Host side of the RPC: talks to the firmware core over any transport (transport.py), with
timeouts, resends of damaged exchanges and device errors raised as Python exceptions."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import protocol as P
from .transport import SerialTransport, Transport


class RpcError(RuntimeError):
    """Base of every error the client raises."""


class DeviceError(RpcError):
    """The device executed the command and refused it; carries the device's message."""

    def __init__(self, command: str, status: int, message: str):
        self.command, self.status, self.device_message = command, status, message
        try:
            name = P.Status(status).name.lower()
        except ValueError:
            name = f"status {status}"
        super().__init__(f"device refused {command}: {name}: {message}")


class LinkError(RpcError):
    """No intact answer: the device hangs, is gone, or the link is too noisy."""


class ModelMismatch(RpcError):
    """The device runs a different model than the host expects."""


class ProtocolMismatch(RpcError):
    """The device speaks another protocol version or frame size than the host."""


def wait_for_hello(transport: Transport, timeout: float, what: str = "device") -> None:
    """Block until the firmware's boot announcement (HELLO frame) arrives."""
    parser = P.Parser()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LinkError(f"{what} did not announce itself within {timeout:g} s of booting: "
                            "the firmware did not start (see the emulator log)")
        for ev in parser.feed(transport.read(256, left)):
            if ev.kind == "frame" and ev.frame.type == P.TYPE_HELLO:
                if ev.frame.payload != P.HELLO_PAYLOAD:
                    raise ProtocolMismatch(f"{what} announced {ev.frame.payload!r}, host "
                                           f"speaks {P.HELLO_PAYLOAD!r}")
                return


@dataclass(frozen=True)
class DeviceInfo:
    protocol_version: int
    model_api_version: int
    max_payload: int
    input_bytes: int
    output_bytes: int
    arena_bytes: int
    n_kernels: int
    counter_hz: int
    board: str
    model_name: str
    model_hash: str
    counter_name: str


@dataclass(frozen=True)
class Timing:
    """Counter ticks summed over `repeat` runs (the counter is named in DeviceInfo)."""
    repeat: int
    ticks: int
    counter_hz: int

    @property
    def ticks_per_run(self) -> float:
        return self.ticks / self.repeat


@dataclass
class LinkStats:
    exchanges: int = 0
    attempts: int = 0
    resends: int = 0
    timeouts: int = 0
    bad_frames: int = 0       # damaged frames seen by the host (header or CRC)
    naks: int = 0             # damaged requests reported by the device
    stale: int = 0            # answers to earlier requests, discarded
    log: list = field(default_factory=list)   # per attempt, with keep_log


class Client:
    """RPC client. `timeout` bounds one attempt of a quick command, `run_timeout` one attempt of
    a run; a damaged exchange is resent up to `retries` times, an unanswered one
    `timeout_retries` times (a hung device is declared after (1+timeout_retries)·timeout).
    Bytes that form no frame and are followed by `settle` seconds of silence count as a
    damaged answer; after a damaged exchange the link is drained until `drain_quiet` seconds
    of silence before the resend."""

    def __init__(self, transport: Transport, timeout: float = 2.0, run_timeout: float = 30.0,
                 retries: int = 10, timeout_retries: int = 1, drain_quiet: float = 0.02,
                 settle: float = 0.1, keep_log: bool = False):
        self.transport = transport
        self.timeout = timeout
        self.run_timeout = run_timeout
        self.retries = retries
        self.timeout_retries = timeout_retries
        self.drain_quiet = drain_quiet
        self.settle = settle
        self.keep_log = keep_log
        self.stats = LinkStats()
        self._seq = 0
        self._parser = P.Parser()
        self._pending: list[P.Event] = []
        self._info: DeviceInfo | None = None

    @classmethod
    def from_url(cls, url: str, baudrate: int = 115200, **kwargs) -> "Client":
        """`socket://127.0.0.1:PORT`, `/dev/ttyACM0`, `loop://` (pyserial URLs)."""
        return cls(SerialTransport(url, baudrate), **kwargs)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- exchange machinery ---------------------------------------------------------------

    def _events(self, deadline: float) -> tuple[list[P.Event], bool]:
        """Events from the pending list or the next read, and whether any byte arrived."""
        if self._pending:
            ev, self._pending = self._pending, []
            return ev, True
        wait = deadline - time.monotonic()
        if wait <= 0:
            return [], False
        data = self.transport.read(4096, wait)
        return (self._parser.feed(data), True) if data else ([], False)

    def _drain(self) -> None:
        """Discard what is still arriving from a damaged exchange (until the link is quiet)."""
        self._pending = []
        self._parser.reset()
        limit = time.monotonic() + 1.0
        while time.monotonic() < limit:
            data = self.transport.read(4096, self.drain_quiet)
            if not data:
                break
            self._parser.skip(len(data))

    def _attempt(self, cmd: int, seq: int, deadline: float):
        """Returns the answering frame, or a string naming why this attempt failed."""
        garbled = False     # bytes arrived that made no frame: a damaged sync byte, or a tail
        while True:
            wait_until = min(deadline, time.monotonic() + self.settle) if garbled else deadline
            events, got = self._events(wait_until)
            if not got:
                if garbled:
                    return "bad_frame"
                if time.monotonic() >= deadline:
                    return "timeout"
            garbled = got and not events
            for i, ev in enumerate(events):
                if ev.kind == "frame":
                    f = ev.frame
                    if f.type == P.TYPE_HELLO:      # the device (re)booted
                        self.stats.stale += 1
                        continue
                    if f.type == P.TYPE_NAK:
                        if f.seq == seq or (f.payload[:1] == bytes([P.Nak.BAD_HEADER])):
                            if f.payload[:1] == bytes([P.Nak.TOO_LONG]):
                                raise ProtocolMismatch(
                                    f"device refused a frame as too long (its maximum payload "
                                    f"is below what the host sent)")
                            self._pending = events[i + 1:]
                            return "nak"
                        self.stats.stale += 1
                        continue
                    if f.seq != seq or f.type != (cmd | P.RESPONSE_FLAG):
                        self.stats.stale += 1
                        continue
                    self._pending = events[i + 1:]
                    return f
                if ev.kind in ("bad_header", "bad_crc"):
                    self._pending = events[i + 1:]
                    return "bad_frame"
                # bad_version / too_long from the device: not a frame of this protocol
                self._pending = events[i + 1:]
                return "bad_frame"

    def call(self, cmd: int, payload: bytes = b"", timeout: float | None = None,
             timeout_retries: int | None = None) -> bytes:
        """One request/answer exchange; returns the answer payload after the status byte."""
        cmd = int(cmd)
        name = P.Cmd(cmd).name.lower() if cmd in P.Cmd._value2member_map_ \
            else f"command {cmd:#04x}"
        timeout = self.timeout if timeout is None else timeout
        timeout_retries = self.timeout_retries if timeout_retries is None else timeout_retries
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        frame = P.encode(cmd, seq, payload)
        self.stats.exchanges += 1
        damaged = unanswered = 0
        while True:
            self.stats.attempts += 1
            self.transport.write(frame, timeout)
            outcome = self._attempt(cmd, seq, time.monotonic() + timeout)
            if self.keep_log:     # (exchange, command, outcome, stream range of the answer)
                n = self.stats.exchanges
                self.stats.log.append((n, name, outcome, None) if isinstance(outcome, str)
                                      else (n, name, "ok", (outcome.start, outcome.end)))
            if not isinstance(outcome, str):
                break
            if outcome == "timeout":
                self.stats.timeouts += 1
                unanswered += 1
            else:
                self.stats.naks += outcome == "nak"
                self.stats.bad_frames += outcome == "bad_frame"
                damaged += 1
            if unanswered > timeout_retries:
                raise LinkError(
                    f"device did not answer {name} within {timeout:g} s "
                    f"({unanswered} attempts): the firmware hangs or is not running")
            if damaged > self.retries:
                raise LinkError(f"{name}: {damaged} damaged exchanges in a row "
                                f"(last: {outcome}); the link is too noisy")
            self.stats.resends += 1
            self._drain()
        body = outcome.payload
        if not body:
            raise ProtocolMismatch(f"{name}: empty answer (no status byte)")
        if body[0] != P.Status.OK:
            raise DeviceError(name, body[0], body[1:].decode("utf-8", "replace"))
        return body[1:]

    # -- commands -------------------------------------------------------------------------

    def connect(self, retry_timeout: float = 0.5, total_timeout: float = 10.0) -> DeviceInfo:
        """Wait until the device answers (a freshly booted board may miss the first bytes while
        its UART is still off), then read its info."""
        deadline = time.monotonic() + total_timeout
        while True:
            try:
                self.call(P.Cmd.PING, b"qmcu", timeout=retry_timeout, timeout_retries=0)
                break
            except LinkError:
                if time.monotonic() + retry_timeout > deadline:
                    raise LinkError(f"device did not answer within {total_timeout:g} s after "
                                    "the link opened: the firmware is not running or the link "
                                    "goes elsewhere") from None
                self._drain()
        return self.info(refresh=True)

    def ping(self, data: bytes = b"") -> bytes:
        return self.call(P.Cmd.PING, data)

    def info(self, refresh: bool = False) -> DeviceInfo:
        if self._info is None or refresh:
            raw = P.unpack_info(self.call(P.Cmd.INFO))
            if raw["protocol_version"] != P.VERSION:
                raise ProtocolMismatch(f"device speaks protocol {raw['protocol_version']}, "
                                       f"host {P.VERSION}")
            self._info = DeviceInfo(**raw)
        return self._info

    def check_model(self, expected_hash: str) -> DeviceInfo:
        """Refuse a device whose model is not the one the host expects."""
        info = self.info()
        if info.model_hash != expected_hash:
            raise ModelMismatch(
                f"device on board {info.board!r} runs model {info.model_name!r} with hash "
                f"{info.model_hash}, but the host expects hash {expected_hash}: flash the "
                f"firmware built for this model")
        return info

    def _chunk(self) -> int:
        return self.info().max_payload - 8

    def write_input(self, data: bytes, offset: int = 0) -> None:
        data = bytes(data)
        n = self._chunk()
        for pos in range(0, len(data), n):
            self.call(P.Cmd.WRITE_INPUT, P.pack_write_input(offset + pos, data[pos:pos + n]))

    def read_output(self, length: int | None = None, offset: int = 0) -> bytes:
        length = self.info().output_bytes - offset if length is None else length
        n = self._chunk()
        parts = []
        for pos in range(0, length, n):
            k = min(n, length - pos)
            parts.append(self.call(P.Cmd.READ_OUTPUT, P.pack_read_output(offset + pos, k)))
        return b"".join(parts)

    def run(self, repeat: int = 1) -> Timing:
        rep, ticks = P.unpack_timing(self.call(P.Cmd.RUN, P.pack_run(repeat),
                                               timeout=self.run_timeout))
        return Timing(rep, ticks, self.info().counter_hz)

    def run_kernel(self, kernel_id: int, repeat: int = 1) -> Timing:
        rep, ticks = P.unpack_timing(self.call(P.Cmd.RUN_KERNEL,
                                               P.pack_run_kernel(kernel_id, repeat),
                                               timeout=self.run_timeout))
        return Timing(rep, ticks, self.info().counter_hz)

    def reset(self) -> None:
        self.call(P.Cmd.RESET)

    def infer(self, data: bytes, repeat: int = 1) -> tuple[bytes, Timing]:
        """Upload an input, run, read the output back."""
        info = self.info()
        if len(data) != info.input_bytes:
            raise ValueError(f"input of {len(data)} bytes, model {info.model_name!r} takes "
                             f"{info.input_bytes}")
        self.write_input(data)
        timing = self.run(repeat)
        return self.read_output(), timing
