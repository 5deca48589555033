"""Pipelined transfers (micro_project/stream.py) against a scripted device that loses chosen
requests or answers: only the lost chunks are sent again, every byte lands where it belongs."""
import struct
import time

import pytest

from micro_project import protocol as P
from micro_project.client import Client, LinkError
from micro_project.transport import Transport

INPUT, OUTPUT, MAX_PAYLOAD = 1000, 300, 64


class ScriptedDevice(Transport):
    """Answers requests at once and in order, like the firmware; loses the requests and the
    answers whose positions (counting every request it was sent) are listed."""

    def __init__(self, lose_requests=(), lose_answers=(), silent=False):
        self.parser = P.Parser()
        self.input, self.output = bytearray(INPUT), bytes(range(256)) + bytes(OUTPUT - 256)
        self.lose_requests, self.lose_answers = set(lose_requests), set(lose_answers)
        self.silent = silent
        self.requests = 0
        self.out = bytearray()

    def _answer(self, f: P.Frame) -> bytes:
        head = P.ANSWER_HEAD.pack(P.Status.OK, 0x1234)
        if f.type == P.Cmd.INFO:
            fixed = P.INFO_FIXED.pack(P.VERSION, 1, MAX_PAYLOAD, INPUT, OUTPUT, 0, 0, 1000)
            return head + fixed + b"\x04hash\x01m\x01b\x01c"
        if f.type == P.Cmd.WRITE_INPUT:
            (off,) = struct.unpack_from("<I", f.payload)
            self.input[off:off + len(f.payload) - 4] = f.payload[4:]
            return head
        if f.type == P.Cmd.READ_OUTPUT:
            off, n = struct.unpack("<IH", f.payload)
            return head + self.output[off:off + n]
        return head + f.payload          # PING

    def write(self, data, timeout=None):
        for ev in self.parser.feed(bytes(data)):
            assert ev.kind == "frame"
            i, self.requests = self.requests, self.requests + 1
            if i in self.lose_requests or (self.silent and i > 1):
                continue
            answer = P.encode(ev.frame.type | P.RESPONSE_FLAG, ev.frame.seq,
                              self._answer(ev.frame))
            if i not in self.lose_answers:
                self.out += answer

    def read(self, n, timeout):
        if not self.out:
            time.sleep(min(timeout or 0, 0.01))
            return b""
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data


def _client(device, **kw):
    c = Client(device, timeout=0.5, idle_fill=0, **kw)
    c.connect()                       # requests 0 (PING) and 1 (INFO)
    return c


def test_only_lost_chunks_are_sent_again():
    device = ScriptedDevice(lose_requests={3, 9}, lose_answers={5, 12})
    c = _client(device, payload=50)
    data = bytes((7 * i) % 251 for i in range(INPUT))
    c.write_input(data)
    assert bytes(device.input) == data
    assert c.stats.resends == 4                   # two lost requests, two lost answers
    assert c.stats.exchanges == 2 + INPUT // 50
    assert c.stats.payload_sizes == {50: INPUT // 50 + 4}


def test_downloads_come_back_in_order_despite_losses():
    device = ScriptedDevice(lose_requests={2}, lose_answers={4, 5})
    c = _client(device, payload=40)
    assert c.read_output() == device.output
    assert c.stats.resends == 3


def test_a_device_that_stops_answering_is_given_up_on():
    device = ScriptedDevice(silent=True)
    c = _client(device, payload=50)
    t0 = time.monotonic()
    with pytest.raises(LinkError, match="did not answer write_input"):
        c.write_input(bytes(INPUT))
    assert time.monotonic() - t0 < 3.0           # timeout 0.5 s, tried twice
