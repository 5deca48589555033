"""Pipelined chunk transfers for the client (PROTOCOL.md, "Pipelined transfers"): an upload or
download is cut into chunks, several chunk requests are kept in flight, and only the chunks
whose answers did not arrive intact are sent again. The device answers requests in the order
it read them, so an answer to one request tells the host that every earlier request without
an answer was lost; a noisy link then costs the host one short frame per damaged chunk, not
a round trip, and the pauses of a loaded emulator cost no resends while the device reads."""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

from . import protocol as P
from .errors import LinkError


@dataclass(eq=False)
class _Chunk:
    offset: int
    length: int
    exchange: int
    failures: int = 0         # sends in a row that got no intact answer
    live: int = 0             # sends whose fate is not known yet
    sent: bool = False
    done: bool = False        # answered (or given up for shorter chunks)
    body: bytes = b""


@dataclass
class _Send:
    chunk: _Chunk
    order: int                # position in the stream of requests
    at: float                 # when it was written
    nbytes: int               # bytes written, idle fill included
    log_index: int | None
    fate_known: bool = False


@dataclass
class Transfer:
    """One chunked transfer: `request(offset, length)` gives a chunk's request payload,
    `check(length, body)` validates an intact answer's result (raises on a bad one)."""
    cmd: int
    name: str
    total: int
    request: Callable[[int, int], bytes]
    check: Callable[[int, bytes], None]
    answer_carries_data: bool = False
    results: dict = field(default_factory=dict)     # offset → answer body


class Stream:
    WINDOW_BYTES = 1024       # request bytes in flight (at least two requests)
    MIN_PATIENCE = 0.1        # seconds of silence before an unanswered request counts as lost
    PATIENCE_FACTOR = 4.0     # ... times the time the device took per byte so far

    def __init__(self, client, t: Transfer):     # a client.Client (imported by it, not here)
        self.c, self.t = client, t
        self.pending: deque[_Chunk] = deque()
        self.fresh = 0                              # offset of data not cut into chunks yet
        self.live: OrderedDict[int, _Send] = OrderedDict()  # seq → send, in request order
        self.owner: dict[int, _Send] = {}          # seq → its latest send (late answers count)
        self.order = 0
        self.progress = -1        # the latest request (in order) the device is known to be done with
        self.done_bytes = 0
        self.since_answer = time.monotonic()       # last answer, or start
        self.last_rx = self.since_answer           # last byte received
        self.gave_up = 0.0                         # last request counted lost for silence

    # -- sending ------------------------------------------------------------------------------

    def _next_chunk(self) -> _Chunk | None:
        size = self.c._chunk_size()
        while self.pending:
            ch = self.pending.popleft()
            if ch.done:
                continue
            if 2 * ch.length <= 3 * size:
                return ch
            # the payload size shrank well below it since it was cut: send its data anew,
            # shorter (not for a little less: that would leave a runt chunk behind)
            ch.done = True
            self.c.stats.abandoned += 1
            self.pending.appendleft(_Chunk(ch.offset + size, ch.length - size,
                                           self.c._new_exchange()))
            return _Chunk(ch.offset, size, self.c._new_exchange())
        if self.fresh >= self.t.total:
            return None
        n = min(size, self.t.total - self.fresh)
        ch = _Chunk(self.fresh, n, self.c._new_exchange())
        self.fresh += n
        return ch

    def _send(self, ch: _Chunk) -> None:
        c = self.c
        # a sequence number is used again only once no answer to its earlier request can come
        # (the device answered a later request: answers come in order)
        seq = c._next_seq(avoid={q for q, s in self.owner.items() if s.order > self.progress})
        old = self.owner.pop(seq, None)
        if old is not None:
            old.fate_known = True
        frame = P.encode(self.t.cmd, seq, self.t.request(ch.offset, ch.length)) + c._fill
        c.stats.attempts += 1
        c.stats.resends += ch.sent
        c.stats.payload_sizes[ch.length] = c.stats.payload_sizes.get(ch.length, 0) + 1
        log_index = None
        if c.keep_log:
            log_index = len(c.stats.log)
            c.stats.log.append((ch.exchange, self.t.name, "unanswered", None))
        c.transport.write(frame, c.timeout)
        c._unread = c.transport.unread()
        s = _Send(ch, self.order, time.monotonic(), len(frame), log_index)
        self.order += 1
        ch.sent = True
        ch.live += 1
        self.live[seq] = s
        self.owner[seq] = s

    def _exposed(self, s: _Send) -> int:
        """Bytes of an exchange that must all arrive intact: request, idle fill, answer."""
        answer = P.HEADER_BYTES + P.ANSWER_HEAD.size + P.TRAILER_BYTES
        return s.nbytes + answer + (s.chunk.length if self.t.answer_carries_data else 0)

    def _in_flight(self) -> int:
        return sum(s.nbytes for s in self.live.values())

    # -- fates --------------------------------------------------------------------------------

    def _log(self, s: _Send, outcome: str, span=None) -> None:
        if s.log_index is not None:
            self.c.stats.log[s.log_index] = (s.chunk.exchange, self.t.name, outcome, span)

    def _lost(self, seq: int, outcome: str, damaged: bool = True) -> None:
        """A send that will get no intact answer: its chunk goes again unless another copy
        is on its way."""
        s = self.live.pop(seq)
        s.fate_known = True
        ch = s.chunk
        ch.live -= 1
        self._log(s, outcome)
        if damaged:
            self.c._note_outcome(True, self._exposed(s))
        if ch.done:
            return
        ch.failures += 1
        if ch.failures > self.c.retries:
            raise LinkError(f"{self.t.name}: {ch.failures} damaged exchanges in a row for the "
                            f"chunk at offset {ch.offset} (last: {outcome}); the link is too "
                            "noisy")
        if ch.live == 0:
            self.pending.appendleft(ch)

    def _lost_before(self, order: int) -> None:
        """The device answered a request: every earlier one still unanswered was lost."""
        self.progress = max(self.progress, order)
        for seq in [q for q, s in self.live.items() if s.order < order]:
            self._lost(seq, "lost")

    def _answered(self, s: _Send, frame: P.Frame) -> None:
        now = time.monotonic()
        seq = frame.seq
        self._lost_before(s.order)
        body = self.c._accept(self.t.name, frame)     # status and boot id
        if not s.fate_known:
            self.live.pop(seq, None)
            s.fate_known = True
            s.chunk.live -= 1
            self.c._note_outcome(False, self._exposed(s))
            started = max(s.at, self.since_answer)
            self.c._note_byte_time((now - started) / s.nbytes)
        self.since_answer = now
        ch = s.chunk
        if ch.done:
            self.c.stats.stale += 1
            self._log(s, "stale", (frame.start, frame.end))
            return
        self.t.check(ch.length, body)
        ch.done = True
        ch.failures = 0
        ch.body = body
        self.t.results[ch.offset] = body
        self.done_bytes += ch.length
        self._log(s, "ok", (frame.start, frame.end))

    def _oldest_lost(self, outcome: str) -> None:
        if self.live:
            self._lost(next(iter(self.live)), outcome)

    def _handle(self, events: list[P.Event]) -> None:
        c = self.c
        for ev in events:
            f = ev.frame
            if ev.kind == "frame" and f.type == P.TYPE_HELLO:
                c.stats.stale += 1          # a reboot: the boot id of the next answer tells
            elif ev.kind == "frame" and f.type == P.TYPE_NAK:
                reason = f.payload[:1]      # TOO_LONG too: chunks fit, so a damaged length
                s = self.owner.get(f.seq) if f.seq else None
                if s is not None or f.seq == 0:
                    c.stats.naks += 1
                    c.stats.truncated += reason == bytes([P.Nak.TRUNCATED])
                if s is not None:
                    self._lost_before(s.order)
                    if not s.fate_known:
                        self._lost(f.seq, "nak")
                elif f.seq == 0:              # a request whose start was damaged or lost:
                    self._oldest_lost("nak")  # the oldest unanswered one, most likely
                else:
                    c.stats.stale += 1
            elif ev.kind == "frame":
                s = self.owner.get(f.seq)
                if s is None or f.type != (self.t.cmd | P.RESPONSE_FLAG):
                    c.stats.stale += 1
                else:
                    self._answered(s, f)
            else:
                # a damaged answer: to the request its header names, else the oldest one
                c.stats.bad_frames += 1
                s = self.owner.get(f.seq) if ev.kind == "bad_crc" else None
                if s is not None:
                    self._lost_before(s.order)
                    if not s.fate_known:
                        self._lost(f.seq, "bad_frame")
                else:
                    self._oldest_lost("bad_frame")

    # -- the loop -----------------------------------------------------------------------------

    def _read(self, deadline: float) -> tuple[list[P.Event], bool]:
        """Events already parsed or from the next read (which looks even when the deadline
        passed), and whether any byte arrived."""
        c = self.c
        if c._pending:
            events, c._pending = c._pending, []
            return events, True
        data = c.transport.read(4096, max(0.0, deadline - time.monotonic()))
        return (c._parser.feed(data), True) if data else ([], False)

    def _patience(self) -> float:
        """Silence after which the oldest unanswered request counts as lost: a few times what
        the device took per byte so far, for the bytes it has to read before answering it."""
        oldest = next(iter(self.live.values()))
        return max(self.MIN_PATIENCE,
                   self.PATIENCE_FACTOR * self.c._byte_time * oldest.nbytes)

    def run(self) -> dict:
        c = self.c
        hang_after = c.timeout * (1 + c.timeout_retries)
        garbled = False
        while self.done_bytes < self.t.total:
            while len(self.live) < 2 or self._in_flight() < self.WINDOW_BYTES:
                ch = self._next_chunk()
                if ch is None:
                    break
                self._send(ch)
            if not self.live:
                continue                     # (everything left was answered meanwhile)
            now = time.monotonic()
            oldest = next(iter(self.live.values()))
            quiet_from = max(self.last_rx, oldest.at, self.since_answer, self.gave_up)
            due = quiet_from + self._patience()
            if garbled:
                due = min(due, self.last_rx + c.settle)
            events, got = self._read(min(due, self.last_rx + hang_after))
            now = time.monotonic()
            if got:
                self.last_rx = now
                garbled = not events
                self._handle(events)
                continue
            if garbled:                      # bytes that made no frame, then silence
                garbled = False
                c.stats.bad_frames += 1
                self._oldest_lost("bad_frame")
                continue
            if c._device_reading():          # slow (a loaded emulator), not lost
                self.last_rx = now
                continue
            if now - self.last_rx >= hang_after - 1e-3:
                    raise LinkError(f"device did not answer {self.t.name} within {hang_after:g} s "
                                f"({len(self.live)} requests unanswered): the firmware hangs "
                                "or is not running")
            if now >= due:                   # overdue: send the oldest again
                c.stats.timeouts += 1
                self.gave_up = now
                self._lost(next(iter(self.live)), "timeout", damaged=False)
        return self.t.results
