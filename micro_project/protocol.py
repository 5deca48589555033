"""The RPC wire format, host side (the device side is firmware/src/qmcu_frame.c; the two agree
byte for byte, see PROTOCOL.md): frame encoding, checksums and a streaming parser."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

SYNC = 0xA5
IDLE = 0x00          # fill after a request: ignored between frames, completes a short one
VERSION = 2
HEADER_BYTES = 7
TRAILER_BYTES = 4
RESPONSE_FLAG = 0x80
TYPE_NAK = 0xFE
TYPE_HELLO = 0xFD
HELLO_PAYLOAD = b"qmcu" + bytes([VERSION])
DEFAULT_MAX_PAYLOAD = 512


class Cmd(IntEnum):
    PING = 0x01
    INFO = 0x02
    WRITE_INPUT = 0x03
    RUN = 0x04
    READ_OUTPUT = 0x05
    RUN_KERNEL = 0x06
    RESET = 0x07


class Status(IntEnum):
    OK = 0
    UNKNOWN_COMMAND = 1
    BAD_ARGUMENTS = 2
    OUT_OF_RANGE = 3
    MODEL = 4
    NO_KERNEL = 5
    BAD_VERSION = 6


class Nak(IntEnum):
    BAD_CRC = 1
    TOO_LONG = 2
    BAD_HEADER = 3
    TRUNCATED = 4      # the frame stopped short (the device's inter-byte timeout)


ANSWER_HEAD = struct.Struct("<BI")        # status, boot id: the start of every answer payload


def crc8(data: bytes) -> int:
    """CRC-8, polynomial 0x07, initial value 0 (the header check)."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode(type_: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame (max 65535)")
    head = bytes([SYNC, version, type_ & 0xFF, seq & 0xFF]) + struct.pack("<H", len(payload))
    body = head + bytes([crc8(head)]) + bytes(payload)
    return body + struct.pack("<I", crc32(body))


@dataclass(frozen=True)
class Frame:
    version: int
    type: int
    seq: int
    payload: bytes
    start: int = 0        # stream offset of the first byte (for diagnostics and tests)
    end: int = 0


@dataclass(frozen=True)
class Event:
    kind: str             # "frame" | "bad_crc" | "too_long" | "bad_version" | "bad_header"
    frame: Frame | None = None


class Parser:
    """Byte-stream → frames, with the same resynchronisation rule as the firmware."""

    def __init__(self, max_payload: int = 0xFFFF):
        self.max_payload = max_payload
        self.buf = bytearray()
        self.need = 0
        self.offset = 0          # stream offset of buf[0]
        self.consumed = 0        # total bytes fed

    def reset(self) -> None:
        """Forget any partial frame (stream offsets keep counting)."""
        self._restart()

    def skip(self, n: int) -> None:
        """Account for n bytes of the stream that were read but not parsed."""
        self.consumed += n

    def feed(self, data: bytes) -> list[Event]:
        events = []
        for b in data:
            ev = self._feed_byte(b)
            if ev is not None:
                events.append(ev)
        return events

    def _describe(self, payload: bytes = b"") -> Frame:
        b = self.buf
        return Frame(b[1], b[2], b[3], bytes(payload), self.offset,
                     self.offset + len(self.buf))

    def _restart(self) -> None:
        self.buf.clear()
        self.need = 0

    def _feed_byte(self, b: int) -> Event | None:
        self.consumed += 1
        if not self.buf:
            if b != SYNC:
                return None
            self.offset = self.consumed - 1
        self.buf.append(b)
        if self.need == 0:
            if len(self.buf) < HEADER_BYTES:
                return None
            if crc8(self.buf[:HEADER_BYTES - 1]) != self.buf[HEADER_BYTES - 1]:
                i = 1
                while i < len(self.buf) and self.buf[i] != SYNC:
                    i += 1
                self.offset += i
                del self.buf[:i]
                return Event("bad_header")
            length = self.buf[4] | self.buf[5] << 8
            if self.buf[1] != VERSION:
                ev = Event("bad_version", self._describe())
                self._restart()
                return ev
            if length > self.max_payload:
                ev = Event("too_long", self._describe())
                self._restart()
                return ev
            self.need = HEADER_BYTES + length + TRAILER_BYTES
            return None
        if len(self.buf) < self.need:
            return None
        body = bytes(self.buf[:-TRAILER_BYTES])
        (got,) = struct.unpack("<I", self.buf[-TRAILER_BYTES:])
        frame = self._describe(body[HEADER_BYTES:])
        self._restart()
        return Event("frame" if crc32(body) == got else "bad_crc", frame)


# Payload layouts -------------------------------------------------------------------------------

INFO_FIXED = struct.Struct("<BBHIIIII")   # proto, api, max_payload, in, out, arena, kernels, hz


def pack_write_input(offset: int, data: bytes) -> bytes:
    return struct.pack("<I", offset) + bytes(data)


def pack_read_output(offset: int, length: int) -> bytes:
    return struct.pack("<IH", offset, length)


def pack_run(repeat: int = 1) -> bytes:
    return struct.pack("<I", repeat)


def pack_run_kernel(kernel_id: int, repeat: int = 1) -> bytes:
    return struct.pack("<II", kernel_id, repeat)


def unpack_timing(body: bytes) -> tuple[int, int]:
    """RUN / RUN_KERNEL answer (after the status byte): (repeat, total ticks)."""
    if len(body) != 12:
        raise ValueError(f"timing answer of {len(body)} bytes, expected 12")
    return struct.unpack("<IQ", body)


def unpack_answer(payload: bytes) -> tuple[int, int, bytes]:
    """An answer payload → (status, boot id, the rest)."""
    if len(payload) < ANSWER_HEAD.size:
        raise ValueError(f"answer of {len(payload)} bytes, shorter than its status and boot id")
    status, boot_id = ANSWER_HEAD.unpack_from(payload)
    return status, boot_id, bytes(payload[ANSWER_HEAD.size:])


def unpack_info(body: bytes) -> dict:
    if len(body) < INFO_FIXED.size:
        raise ValueError(f"info answer of {len(body)} bytes, expected at least {INFO_FIXED.size}")
    fields = INFO_FIXED.unpack_from(body)
    keys = ("protocol_version", "model_api_version", "max_payload", "input_bytes",
            "output_bytes", "arena_bytes", "n_kernels", "counter_hz")
    info = dict(zip(keys, fields))
    pos = INFO_FIXED.size
    for key in ("model_hash", "model_name", "board", "counter_name"):
        if pos >= len(body):          # a small max_payload leaves the last strings out
            info[key] = ""
            continue
        n = body[pos]
        info[key] = body[pos + 1:pos + 1 + n].decode("utf-8", "replace")
        pos += 1 + n
    return info
