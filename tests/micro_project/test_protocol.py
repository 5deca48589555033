"""The wire format on the host side: encoding, checksums, the streaming parser."""
import struct
import zlib

from hypothesis import given, settings, strategies as st

from micro_project import protocol as P


def test_checksums_match_their_definitions():
    assert P.crc32(b"123456789") == 0xCBF43926          # CRC-32/ISO-HDLC check value
    assert P.crc8(b"123456789") == 0xF4                  # CRC-8/SMBUS (poly 0x07) check value


def test_frame_layout():
    f = P.encode(P.Cmd.PING, 7, b"abc")
    assert f[:4] == bytes([0xA5, 2, 0x01, 7])
    assert struct.unpack("<H", f[4:6])[0] == 3
    assert f[6] == P.crc8(f[:6])
    assert f[7:10] == b"abc"
    assert struct.unpack("<I", f[10:])[0] == zlib.crc32(f[:10])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=600)),
                min_size=1, max_size=6), st.binary(max_size=40))
def test_parser_recovers_frames_between_garbage(frames, garbage):
    # garbage without sync bytes before every frame: all frames come out intact, in order
    junk = garbage.replace(bytes([P.SYNC]), b"")
    stream = b"".join(junk + P.encode(t, s, p) for t, s, p in frames)
    parser = P.Parser()
    events = []
    for i in range(0, len(stream), 37):                  # arbitrary chunking
        events += parser.feed(stream[i:i + 37])
    got = [(e.frame.type, e.frame.seq, e.frame.payload) for e in events if e.kind == "frame"]
    assert got == [(t, s, bytes(p)) for t, s, p in frames]


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.integers(0, 10_000), st.integers(1, 255))
def test_any_single_corruption_is_detected(payload, pos, xor):
    frame = bytearray(P.encode(P.Cmd.WRITE_INPUT, 3, payload))
    frame[pos % len(frame)] ^= xor
    events = P.Parser().feed(bytes(frame) + b"\x00" * 700)
    assert not any(e.kind == "frame" and e.frame.payload == payload and e.frame.seq == 3
                   and e.frame.type == P.Cmd.WRITE_INPUT for e in events)


def test_parser_resyncs_on_a_sync_byte_inside_a_bad_header():
    good = P.encode(P.Cmd.INFO, 9)
    stream = bytes([P.SYNC, 1, 2]) + good                # a torn header, then a frame
    events = P.Parser().feed(stream)
    assert events[0].kind == "bad_header"
    assert [e.frame.seq for e in events if e.kind == "frame"] == [9]


def test_too_long_and_bad_version_are_reported():
    ev = P.Parser(max_payload=16).feed(P.encode(1, 1, bytes(17)))
    assert ev[0].kind == "too_long"
    ev = P.Parser().feed(P.encode(1, 1, b"x", version=3))
    assert ev[0].kind == "bad_version" and ev[0].frame.version == 3


def test_info_roundtrip():
    body = P.INFO_FIXED.pack(1, 1, 512, 768, 10, 810, 2, 25_000_000)
    for s in (b"abcd", b"m", b"mps2-an386", b"cmsdk-timer0"):
        body += bytes([len(s)]) + s
    info = P.unpack_info(body)
    assert info["board"] == "mps2-an386" and info["counter_hz"] == 25_000_000
    assert info["model_hash"] == "abcd" and info["max_payload"] == 512
