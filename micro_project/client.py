"""Host side of the RPC: talks to the firmware core over any transport (transport.py), with
timeouts, resends of damaged exchanges and device errors raised as Python exceptions."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from . import protocol as P
from .errors import (DeviceError, DeviceReset, InputLost, LinkError, ModelMismatch,  # noqa: F401
                     ProtocolMismatch, RpcError)
from .stream import Stream, Transfer
from .transport import SerialTransport, Transport


def wait_for_hello(transport: Transport, timeout: float, what: str = "device") -> None:
    """Block until the firmware's boot announcement (HELLO frame) arrives. On a noisy link a
    damaged announcement counts too: the firmware only speaks once it is up."""
    parser = P.Parser()
    deadline = time.monotonic() + timeout
    heard = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            if heard:
                return
            raise LinkError(f"{what} did not announce itself within {timeout:g} s of booting: "
                            "the firmware did not start (see the emulator log)")
        data = transport.read(256, min(left, 0.1) if heard else left)
        if not data and heard:
            return
        heard = heard or bool(data)
        for ev in parser.feed(data):
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
    truncated: int = 0        # of those: frames the device dropped after a lost byte
    stale: int = 0            # answers to earlier requests, discarded
    reboots: int = 0          # answers from a new boot of the device
    reuploads: int = 0        # inferences redone after a reboot
    shrinks: int = 0          # payload size made smaller after damaged exchanges
    grows: int = 0            # payload size made larger on a cleaner link
    abandoned: int = 0        # exchanges given up to send their data in shorter chunks
    payload_sizes: dict = field(default_factory=dict)   # chunk payload bytes → exchanges
    log: list = field(default_factory=list)   # per attempt, with keep_log

    def summary(self) -> str:
        sizes = ", ".join(f"{k} B×{v}" for k, v in sorted(self.payload_sizes.items()))
        return (f"{self.exchanges} exchanges, {self.resends} resends ({self.naks} NAKs of which "
                f"{self.truncated} truncated frames, {self.bad_frames} damaged answers, "
                f"{self.timeouts} timeouts), {self.reboots} reboots seen, payload sizes used: "
                f"{sizes or 'none'}")


class Client:
    """RPC client.

    `timeout` bounds the wait for the answer of a quick command, `run_timeout` of a run; the
    device is declared hung when no intact answer came within (1 + timeout_retries) times that.
    Within that time an unanswered request is resent sooner, once its answer is well overdue
    against the link's measured round trips (the device NAKs a frame it lost the start of, but
    that NAK can be lost too). A damaged exchange (NAK, damaged answer, bytes that form no frame followed by
    `settle` seconds of silence) is resent at once, up to `retries` times in a row, after the
    link was quiet for `drain_quiet` seconds.

    Uploads and downloads are cut into chunks of `payload` bytes at most (default: what the
    device allows) and pipelined (stream.py): several chunk requests are in flight, and only
    those whose answers did not arrive intact are sent again. Every RESIZE_AFTER chunk
    exchanges (sooner when three in four were damaged) the size is chosen anew from the link's
    byte error rate as estimated from those exchanges: the size that moves the most data per
    byte time when a frame only counts whole, so a noisy link moves short frames that get
    through and a clean one long frames.

    Each request is followed by `idle_fill` idle bytes, which the device ignores between
    frames: when a byte of the request was lost they complete it, so the device NAKs it at once
    instead of after its inter-byte timeout.

    Every answer carries the device's boot id; an answer from another boot than the earlier ones
    raises :class:`DeviceReset` (`infer` uploads again and reruns instead)."""

    MIN_PAYLOAD = 16
    RESIZE_AFTER = 8              # exchanges at one payload size before it is chosen again
    REQUEST_BYTES = 15            # framing and offset of a chunk request, idle fill aside
    EXCHANGE_BYTES = 31           # ... and of its answer: what must arrive intact, but for data
    BYTE_TIME = 1e-3              # seconds per byte the device takes, until measured

    def __init__(self, transport: Transport, timeout: float = 2.0, run_timeout: float = 5.0,
                 retries: int = 40, timeout_retries: int = 1, drain_quiet: float = 0.01,
                 settle: float = 0.03, keep_log: bool = False, payload: int | None = None,
                 idle_fill: int = 2):
        self.transport = transport
        self.timeout = timeout
        self.run_timeout = run_timeout
        self.retries = retries
        self.timeout_retries = timeout_retries
        self.drain_quiet = drain_quiet
        self.settle = settle
        self.keep_log = keep_log
        self._fill = bytes([P.IDLE]) * idle_fill
        self._evidence = [0.0, 0.0, 0.0]    # chunk exchanges, damaged ones, bytes exposed
        self._byte_time = self.BYTE_TIME    # smoothed seconds the device takes per request byte
        self.stats = LinkStats()
        self.boot_id: int | None = None
        self._payload_limit = payload
        self._payload: int | None = payload
        self._window = 0              # chunk exchanges since the payload size was chosen
        self._rtt: dict[int, float] = {}    # command → smoothed seconds of a clean exchange
        self._input_lost = False      # the device rebooted since the input was written
        self._seq = 0
        self._parser = P.Parser()
        self._pending: list[P.Event] = []
        self._info: DeviceInfo | None = None
        self._finished = False        # the last failed attempt needs no drain (see _attempt)
        self._unread: int | None = None     # request bytes the device had not read yet

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

    def _refuse_too_long(self, sent: int) -> None:
        """A TOO_LONG NAK: a damaged length field (say, a dropped byte shifted the header and
        its check passed by chance), unless the host really sent more than the device takes."""
        if self._info is not None and sent > self._info.max_payload:
            raise ProtocolMismatch(f"device refused a frame of {sent} payload bytes as too long "
                                   f"(its maximum payload is {self._info.max_payload})")

    def _attempt(self, cmd: int, seq: int, deadline: float, sent: int = 0):
        """Returns the answering frame, or a string naming why this attempt failed. Sets
        `_finished` when the device is known to be done with the failed attempt (a NAK of the
        whole request, or a whole answer with a wrong CRC-32): nothing more of it will come,
        so the request is resent without waiting for the link to go quiet."""
        garbled = False     # bytes arrived that made no frame: a damaged sync byte, or a tail
        self._finished = False
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
                        reason = f.payload[:1]
                        if f.seq == seq or reason == bytes([P.Nak.BAD_HEADER]) or \
                                (reason == bytes([P.Nak.TRUNCATED]) and f.seq == 0):
                            if reason == bytes([P.Nak.TOO_LONG]):
                                self._refuse_too_long(sent)
                            self.stats.truncated += reason == bytes([P.Nak.TRUNCATED])
                            # after a damaged header the device still skips the request's rest
                            self._finished = reason != bytes([P.Nak.BAD_HEADER])
                            self._pending = events[i + 1:]
                            return "nak"
                        self.stats.stale += 1
                        continue
                    if f.seq != seq or f.type != (cmd | P.RESPONSE_FLAG):
                        self.stats.stale += 1
                        continue
                    self._pending = events[i + 1:]
                    return f
                # bad_header: the rest of that frame is still arriving; bad_crc: a whole frame
                # (its header was intact); bad_version / too_long: not a frame of this protocol
                self._finished = ev.kind == "bad_crc"
                self._pending = events[i + 1:]
                return "bad_frame"

    def _device_reading(self) -> bool:
        """Whether the device took bytes of the request since they were written or last
        looked at (only links that can tell, e.g. an emulator's pipe): a device that reads
        is slow, not hung."""
        unread = self.transport.unread()
        reading = unread is not None and self._unread is not None and unread < self._unread
        self._unread = unread
        return reading

    def _overdue(self, cmd: int, limit: float) -> float:
        """How long to wait for an answer before resending: well past the usual round trip
        of this command once one is known, else the whole limit."""
        rtt = self._rtt.get(cmd)
        return limit if rtt is None else min(limit, max(1.0, 8.0 * rtt))

    def _note_outcome(self, damaged: bool, exposed: int) -> None:
        """Adapt the chunk payload size to how often chunk exchanges of `exposed` bytes (request,
        idle fill and answer) arrive damaged."""
        if self._payload is None or self._info is None:
            return
        ev = self._evidence
        ev[0] += 1
        ev[1] += damaged
        ev[2] += exposed
        self._window += 1
        recent_bad = damaged and ev[1] >= 3 and 4 * ev[1] > 3 * ev[0]
        if self._window >= self.RESIZE_AFTER or recent_bad:
            self._resize()

    def _note_byte_time(self, seconds: float) -> None:
        """How long the device took per byte of a request it answered (pipelined transfers
        wait a few times that before counting an unanswered request lost)."""
        self._byte_time = 0.8 * self._byte_time + 0.2 * seconds

    def _resize(self) -> None:
        """Choose the payload size that moves the most data per byte time, from the chance q a
        byte arrives intact as estimated from the chunk exchanges so far (older ones weigh
        less): a chunk of n bytes costs its request's n + 17 byte times on the link (requests
        are pipelined: no round trip), and counts only when all n + 33 bytes of its request,
        idle fill and answer arrive intact."""
        attempts, bad, exposed = self._evidence
        damaged = (bad + 0.5) / (attempts + 1)        # never 0 or 1 from a few exchanges
        ln_q = math.log1p(-damaged) / (exposed / attempts)
        fill = len(self._fill)

        def rate(n: int) -> float:     # log of data bytes per byte time
            return (math.log(n) + (n + self.EXCHANGE_BYTES + fill) * ln_q
                    - math.log(n + self.REQUEST_BYTES + fill))

        top = self._max_chunk()
        best = max([*range(self.MIN_PAYLOAD, top, 8), top], key=rate)
        if best != self._payload:
            if best < self._payload:
                self.stats.shrinks += 1
            else:
                self.stats.grows += 1
            self._payload = best
        self._window = 0
        self._evidence = [x / 2 for x in self._evidence]

    def call(self, cmd: int, payload: bytes = b"", timeout: float | None = None,
             timeout_retries: int | None = None) -> bytes:
        """One request/answer exchange; returns the answer payload after the status and boot
        id."""
        cmd = int(cmd)
        name = P.Cmd(cmd).name.lower() if cmd in P.Cmd._value2member_map_ \
            else f"command {cmd:#04x}"
        timeout = self.timeout if timeout is None else timeout
        timeout_retries = self.timeout_retries if timeout_retries is None else timeout_retries
        hang_after = timeout * (1 + timeout_retries)
        seq = self._next_seq()
        frame = P.encode(cmd, seq, payload) + self._fill
        self.stats.exchanges += 1
        damaged = unanswered = 0
        started = silent_since = time.monotonic()
        unread = None
        while True:
            self.stats.attempts += 1
            t0 = time.monotonic()
            if unread is None or unread <= len(self._fill):   # else it has yet to read it all
                self.transport.write(frame, timeout)
            self._unread = self.transport.unread()
            wait = min(self._overdue(cmd, timeout), max(0.0, silent_since + hang_after - t0))
            outcome = self._attempt(cmd, seq, t0 + wait, len(payload))
            if self.keep_log:     # (exchange, command, outcome, stream range of the answer)
                n = self.stats.exchanges
                self.stats.log.append((n, name, outcome, None) if isinstance(outcome, str)
                                      else (n, name, "ok", (outcome.start, outcome.end)))
            if not isinstance(outcome, str):
                if not damaged and not unanswered:
                    dt = time.monotonic() - t0
                    old = self._rtt.get(cmd)
                    self._rtt[cmd] = dt if old is None else 0.8 * old + 0.2 * dt
                break
            if outcome == "timeout":
                self.stats.timeouts += 1
                unanswered += 1
            else:
                self.stats.naks += outcome == "nak"
                self.stats.bad_frames += outcome == "bad_frame"
                damaged += 1
                silent_since = time.monotonic()      # the device is alive
            if time.monotonic() - silent_since >= hang_after - 1e-3:
                if self._device_reading():       # slow (a loaded emulator), not hung
                    silent_since = time.monotonic()
                else:
                    raise LinkError(
                        f"device did not answer {name} within {hang_after:g} s "
                        f"({unanswered} attempts): the firmware hangs or is not running")
            if damaged > self.retries:
                raise LinkError(f"{name}: {damaged} damaged exchanges in a row "
                                f"(last: {outcome}); the link is too noisy")
            unread = self.transport.unread() if outcome == "timeout" else None
            self.stats.resends += unread is None or unread <= len(self._fill)
            if outcome != "timeout" and not self._finished:   # a late answer to an overdue
                self._drain()                                  # request is still taken
        return self._accept(name, outcome)

    def _next_seq(self, avoid=()) -> int:
        """The next sequence number: never 0 (the device's NAK of a request it could not
        read has that one) nor one of `avoid` (requests that may still be answered)."""
        for _ in range(256):
            self._seq = (self._seq + 1) & 0xFF
            if self._seq and self._seq not in avoid:
                return self._seq
        raise LinkError(f"{len(avoid)} requests in a row unanswered: the device does not "
                        "read its link")

    def _new_exchange(self) -> int:
        self.stats.exchanges += 1
        return self.stats.exchanges

    def _accept(self, name: str, frame: P.Frame) -> bytes:
        """The result in an intact answer, after the checks of its status and boot id."""
        try:
            status, boot_id, body = P.unpack_answer(frame.payload)
        except ValueError as e:
            raise ProtocolMismatch(f"{name}: {e}") from None
        if self.boot_id is None:
            self.boot_id = boot_id
        elif boot_id != self.boot_id:
            old, self.boot_id = self.boot_id, boot_id
            self.stats.reboots += 1
            self._input_lost = True
            raise DeviceReset(name, old, boot_id)
        if status != P.Status.OK:
            raise DeviceError(name, status, body.decode("utf-8", "replace"))
        return body

    # -- commands -------------------------------------------------------------------------

    def connect(self, retry_timeout: float = 0.5, total_timeout: float = 10.0) -> DeviceInfo:
        """Wait until the device answers (a freshly booted board may miss the first bytes while
        its UART is still off), then read its info."""
        deadline = time.monotonic() + total_timeout
        self.boot_id = None
        while True:
            try:
                self.call(P.Cmd.PING, b"qmcu", timeout=retry_timeout, timeout_retries=0)
                break
            except (LinkError, DeviceReset):
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
            # no answer is longer: a damaged length field cannot hold up the answers behind it
            self._parser.max_payload = self._info.max_payload
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

    def _max_chunk(self) -> int:
        """Data bytes of the largest chunk a frame holds (answer head or offset+length)."""
        most = self.info().max_payload - 8
        return most if self._payload_limit is None else min(most, self._payload_limit)

    def _chunk_size(self) -> int:
        """Data bytes per chunk of an upload or download now (see _resize)."""
        if self._payload is None or self._payload > self._max_chunk():
            self._payload = self._max_chunk()
        return self._payload

    def _check_input(self, name: str) -> None:
        """After a reboot the device holds a zeroed input: refuse to run on it or read its
        output until the input was written again (or zeroed on purpose with reset())."""
        if self._input_lost:
            raise InputLost(
                f"{name}: the device rebooted after the input was written (boot id now "
                f"{self.boot_id:#010x}); write the input again before running or reading")

    def write_input(self, data: bytes, offset: int = 0) -> None:
        data = bytes(data)
        self._input_lost = False

        def request(pos: int, n: int) -> bytes:
            return P.pack_write_input(offset + pos, data[pos:pos + n])

        def check(n: int, body: bytes) -> None:
            if body:
                raise ProtocolMismatch(f"write_input: answer of {len(body)} bytes, expected 0")

        Stream(self, Transfer(P.Cmd.WRITE_INPUT, "write_input", len(data), request,
                              check)).run()

    def read_output(self, length: int | None = None, offset: int = 0) -> bytes:
        self._check_input("read_output")
        length = self.info().output_bytes - offset if length is None else length

        def request(pos: int, n: int) -> bytes:
            return P.pack_read_output(offset + pos, n)

        def check(n: int, body: bytes) -> None:
            if len(body) != n:
                raise ProtocolMismatch(f"read_output: {len(body)} bytes answered, {n} asked")

        parts = Stream(self, Transfer(P.Cmd.READ_OUTPUT, "read_output", length, request, check,
                                      answer_carries_data=True)).run()
        return b"".join(parts[pos] for pos in sorted(parts))

    def run(self, repeat: int = 1) -> Timing:
        self._check_input("run")
        rep, ticks = P.unpack_timing(self.call(P.Cmd.RUN, P.pack_run(repeat),
                                               timeout=self.run_timeout))
        return Timing(rep, ticks, self.info().counter_hz)

    def run_kernel(self, kernel_id: int, repeat: int = 1) -> Timing:
        self._check_input("run_kernel")
        rep, ticks = P.unpack_timing(self.call(P.Cmd.RUN_KERNEL,
                                               P.pack_run_kernel(kernel_id, repeat),
                                               timeout=self.run_timeout))
        return Timing(rep, ticks, self.info().counter_hz)

    def reset(self) -> None:
        self.call(P.Cmd.RESET)
        self._input_lost = False

    def infer(self, data: bytes, repeat: int = 1, reboots: int = 2) -> tuple[bytes, Timing]:
        """Upload an input, run, read the output back. A device that reboots on the way (up
        to `reboots` times) gets the input again: an output is only ever taken from a run
        of this input within one boot."""
        info = self.info()
        if len(data) != info.input_bytes:
            raise ValueError(f"input of {len(data)} bytes, model {info.model_name!r} takes "
                             f"{info.input_bytes}")
        for attempt in range(reboots + 1):
            try:
                self.write_input(data)
                timing = self.run(repeat)
                return self.read_output(), timing
            except DeviceReset:
                if attempt == reboots:
                    raise
                self.stats.reuploads += 1
        raise AssertionError("unreachable")
