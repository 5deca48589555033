"""Fault tests: a link that corrupts bytes, firmware that hangs, the wrong model."""
import os
import time

import numpy as np
import pytest

import micro_project
from micro_project.client import Client, LinkError, ModelMismatch
from micro_project.testmodel import write_test_model
from micro_project.transport import Transport

from mp_support import qemu_descendants, requires_gcc, requires_qemu


class CorruptingTransport(Transport):
    """Replaces each byte, in both directions, with probability `rate` by a different value.
    Remembers which writes (request attempts) and which read-stream offsets it damaged."""

    def __init__(self, inner: Transport, rate: float, seed: int):
        self.inner, self.rate = inner, rate
        self.rng = np.random.default_rng(seed)
        self.writes = 0
        self.damaged_writes: set[int] = set()
        self.read_offset = 0
        self.damaged_offsets: list[int] = []
        self.bytes_moved = 0
        self.bytes_damaged = 0

    def _damage(self, data: bytes) -> tuple[bytes, np.ndarray]:
        buf = np.frombuffer(data, np.uint8).copy()
        hit = np.flatnonzero(self.rng.random(len(buf)) < self.rate)
        buf[hit] ^= self.rng.integers(1, 256, len(hit)).astype(np.uint8)
        self.bytes_moved += len(buf)
        self.bytes_damaged += len(hit)
        return buf.tobytes(), hit

    def write(self, data, timeout=None):
        frame_bytes = 11 + (data[4] | data[5] << 8)    # then the idle fill
        data, hit = self._damage(bytes(data))
        if (hit < frame_bytes).any():
            self.damaged_writes.add(self.writes)
        self.writes += 1
        self.inner.write(data, timeout)

    def read(self, n, timeout):
        data = self.inner.read(n, timeout)
        if not data:
            return data
        data, hit = self._damage(data)
        self.damaged_offsets += [self.read_offset + int(i) for i in hit]
        self.read_offset += len(data)
        return data

    def close(self):
        self.inner.close()


@pytest.fixture(scope="module")
def small_host_project(tmp_path_factory):
    """A model with a 36-byte input and 64-byte frames: at 1 % of bytes damaged, about half of
    the exchanges get through intact."""
    root = tmp_path_factory.mktemp("noisy")
    model = write_test_model(root / "model", name="tiny-6x6", input_shape=(1, 6, 6), hidden=8,
                             classes=4)
    project = micro_project.get_template("host").generate_project(
        model.directory, root / "proj", {"max_payload": 64})
    project.build()
    return project, model


@requires_gcc
def test_one_percent_byte_corruption_is_always_detected(small_host_project):
    project, model = small_host_project
    project.open_transport()
    noisy = CorruptingTransport(project.transport, rate=0.01, seed=1234)
    client = Client(noisy, timeout=0.3, run_timeout=0.3, retries=30, timeout_retries=8,
                    drain_quiet=0.01, settle=0.04, keep_log=True)
    rng = np.random.default_rng(5)
    wrong = 0
    try:
        client.connect(retry_timeout=0.3)
        info = client.info()
        assert info.max_payload == 64 and info.model_hash == model.hash
        while client.stats.exchanges < 1000:
            x = rng.integers(0, 256, model.input_bytes, dtype=np.uint8).tobytes()
            out, timing = client.infer(x, repeat=int(rng.integers(1, 4)))
            wrong += out != model.reference(x)
            payload = rng.bytes(int(rng.integers(0, 40)))
            wrong += client.ping(payload) != payload
    finally:
        project.close_transport()
    s = client.stats
    assert wrong == 0
    assert s.exchanges >= 1000
    # the link really was noisy: about 1 % of all bytes, many exchanges resent
    assert 0.007 < noisy.bytes_damaged / noisy.bytes_moved < 0.013
    assert s.resends > 200 and s.naks > 50 and s.bad_frames > 50
    # no answer the host accepted contained a damaged byte ...
    accepted = [span for (_, _, outcome, span) in s.log if outcome == "ok"]
    assert len(accepted) == s.exchanges - s.abandoned     # (those were sent anew, shorter)
    starts = np.array([a for a, _ in accepted])
    ends = np.array([b for _, b in accepted])
    for off in noisy.damaged_offsets:
        i = np.searchsorted(starts, off, side="right") - 1
        assert i < 0 or off >= ends[i], f"damaged byte {off} inside an accepted answer"
    # ... and no damaged request was answered: when the attempt that sent one still ends
    # "ok", the answer is the late one of an earlier intact copy of the same request (its
    # attempt gave up first, e.g. on a loaded machine slower than the 0.3 s timeout)
    assert len(s.log) == noisy.writes
    late = 0
    for i in noisy.damaged_writes:
        exchange, _, outcome, _ = s.log[i]
        if outcome == "ok":
            late += 1
            assert any(s.log[j][0] == exchange and j not in noisy.damaged_writes
                       for j in range(i)), f"damaged request {i} was answered as if intact"
    print(f"\n{s.exchanges} exchanges, {s.attempts} attempts, {s.resends} resends "
          f"({s.naks} NAKs, {s.bad_frames} damaged answers, {s.timeouts} timeouts); "
          f"{noisy.bytes_damaged} of {noisy.bytes_moved} bytes damaged; {late} late answers")


@requires_gcc
def test_hanging_firmware_is_given_up_on(model_dirs, tmp_path):
    project = micro_project.get_template("host").generate_project(
        model_dirs["hang"].directory, tmp_path / "proj")
    project.build()
    project.open_transport()
    proc = project.transport.proc
    try:
        client = project.client(run_timeout=2.0)
        client.write_input(bytes(model_dirs["hang"].input_bytes))
        t0 = time.monotonic()
        with pytest.raises(LinkError, match="did not answer run within 4 s .*hangs"):
            client.run()
        assert time.monotonic() - t0 < 10
    finally:
        project.close_transport()
    assert proc.poll() is not None


@requires_gcc
def test_model_hash_mismatch_is_refused(host_project, model_dirs):
    host_project.open_transport()
    try:
        client = host_project.client()
        with pytest.raises(ModelMismatch, match=f"hash {model_dirs['tiny'].hash}.*expects "
                                                f"hash 0000000000000000"):
            client.check_model("0000000000000000")
        assert client.check_model(model_dirs["tiny"].hash).model_name == "tiny-dense"
    finally:
        host_project.close_transport()


@requires_qemu
@pytest.mark.qemu
def test_hanging_firmware_on_qemu_is_given_up_on_and_qemu_ends(model_dirs, tmp_path):
    t0 = time.monotonic()
    project = micro_project.get_template("qemu").generate_project(
        model_dirs["hang"].directory, tmp_path / "proj")
    project.build()
    project.flash()
    pid = project.qemu_pid
    project.open_transport()
    try:
        client = project.client(run_timeout=3.0)
        client.check_model(model_dirs["hang"].hash)
        client.write_input(bytes(model_dirs["hang"].input_bytes))
        t_run = time.monotonic()
        with pytest.raises(LinkError, match="did not answer run within 6 s"):
            client.run()
    finally:
        project.close_transport()
    assert time.monotonic() - t_run < 10
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert qemu_descendants() == []
    print(f"\nhang detected and QEMU gone after {time.monotonic() - t_run:.1f} s "
          f"(whole test {time.monotonic() - t0:.1f} s)")


@requires_gcc
def test_idle_fill_completes_a_request_that_lost_a_byte(host_project):
    """A request that lost a byte is completed by the idle fill behind it and NAKed BAD_CRC at
    once (not TRUNCATED after the inter-byte timeout); idle bytes alone draw no answer."""
    from micro_project import protocol as P
    host_project.open_transport()
    t = host_project.transport
    try:
        def answer(timeout=2.0):
            parser = P.Parser()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for ev in parser.feed(t.read(256, deadline - time.monotonic())):
                    return ev
            return None

        assert answer().frame.type == P.TYPE_HELLO
        t.write(bytes([P.IDLE]) * 5)
        assert answer(0.6) is None                   # no TRUNCATED NAK for idle fill
        frame = P.encode(P.Cmd.PING, 9, b"lost byte")
        t.write(frame[:10] + frame[11:] + bytes([P.IDLE]) * 2)
        ev = answer()
        assert ev.kind == "frame" and ev.frame.type == P.TYPE_NAK and ev.frame.seq == 9
        assert ev.frame.payload == bytes([P.Nak.BAD_CRC])
        client = host_project.client()
        assert client.ping(b"after") == b"after"
    finally:
        host_project.close_transport()


class FlipDropTransport(Transport):
    """Flips one bit in a byte with probability `flip` and drops a byte with probability
    `drop`, both ways (what tests/micro_project/noisy_proxy.py does to a socket)."""

    def __init__(self, inner: Transport, flip: float, drop: float, seed: int):
        self.inner, self.flip, self.drop = inner, flip, drop
        self.rng = np.random.default_rng(seed)
        self.written = 0

    def _damage(self, data: bytes) -> bytes:
        buf = np.frombuffer(data, np.uint8).copy()
        hit = np.flatnonzero(self.rng.random(len(buf)) < self.flip)
        buf[hit] ^= (1 << self.rng.integers(0, 8, len(hit))).astype(np.uint8)
        return buf[self.rng.random(len(buf)) >= self.drop].tobytes()

    def write(self, data, timeout=None):
        self.written += len(data)
        self.inner.write(self._damage(bytes(data)), timeout)

    def read(self, n, timeout):
        data = self.inner.read(n, timeout)
        return self._damage(data) if data else data

    def unread(self):
        return self.inner.unread()

    def close(self):
        self.inner.close()


@requires_gcc
def test_pipelined_uploads_resend_only_the_damaged_chunks(host_project, model_dirs):
    """Through 1 % bit flips and 0.1 % dropped bytes both ways, every output is right and an
    inference costs well under four times the input's bytes (one request at a time, with
    frames of the best size for that, cost five): chunks shrink to a few tens of bytes,
    requests are pipelined, and only the damaged chunks are sent again."""
    model = model_dirs["tiny"]
    host_project.open_transport()
    noisy = FlipDropTransport(host_project.transport, flip=0.01, drop=0.001, seed=7)
    client = Client(noisy, timeout=2.0, run_timeout=2.0)
    rng = np.random.default_rng(3)
    try:
        client.connect()
        sent_before = noisy.written
        images = 20
        for _ in range(images):
            x = rng.integers(0, 256, model.input_bytes, dtype=np.uint8).tobytes()
            out, _ = client.infer(x)
            assert out == model.reference(x)
    finally:
        host_project.close_transport()
    s = client.stats
    assert s.resends > 0 and s.naks > 0 and s.shrinks > 0
    assert min(s.payload_sizes) < 64 < max(s.payload_sizes)
    per_image = (noisy.written - sent_before) / images
    assert per_image < 3.5 * model.input_bytes, (per_image, s.summary())
    print(f"\n{per_image:.0f} bytes sent per {model.input_bytes}-byte input; {s.summary()}")


@requires_gcc
def test_a_resent_run_is_answered_again_not_run_again(host_project):
    """A copy of the last run request (the host resends one whose answer it lost) gets the
    same answer, byte for byte (its tick count too: the model did not run again); the same
    run asked under a new sequence number runs again."""
    from micro_project import protocol as P
    host_project.open_transport()
    t = host_project.transport
    parser = P.Parser()

    def answer(frame: bytes) -> P.Frame:
        t.write(frame)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for ev in parser.feed(t.read(256, deadline - time.monotonic())):
                if ev.kind == "frame" and ev.frame.type != P.TYPE_HELLO:
                    return ev.frame
        raise AssertionError("no answer")

    try:
        run = P.encode(P.Cmd.RUN, 21, P.pack_run(3))
        first, again = answer(run), answer(run)
        assert first.type == P.Cmd.RUN | P.RESPONSE_FLAG and first.payload[0] == P.Status.OK
        assert again.payload == first.payload
        fresh = answer(P.encode(P.Cmd.RUN, 22, P.pack_run(3)))
        assert fresh.payload[:5] == first.payload[:5] and fresh.payload != first.payload
        # anything executed in between forgets the run: its copy then runs again
        answer(P.encode(P.Cmd.PING, 23, b"x"))
        assert answer(P.encode(P.Cmd.RUN, 22, P.pack_run(3))).payload != fresh.payload
    finally:
        host_project.close_transport()
