"""Session epochs: a device that reboots mid-session is noticed, and no output of another boot
(or of the zeroed input a reboot leaves) is ever returned as the answer to an input."""
import pytest

from micro_project import protocol as P
from micro_project.client import Client, DeviceReset, InputLost
from micro_project.transport import ProcessTransport, Transport

from mp_support import requires_gcc


class RebootableDevice(Transport):
    """The host firmware behind one link; reboot() replaces the process by a fresh one (the
    link stays, like a board reset behind a UART)."""

    def __init__(self, binary):
        self.argv = [str(binary)]
        self.boots = 0
        self.proc = self._boot()

    def _boot(self) -> ProcessTransport:
        self.boots += 1
        return ProcessTransport(self.argv, f"host firmware (boot {self.boots})")

    def reboot(self) -> None:
        self.proc.close()
        self.proc = self._boot()

    def read(self, n, timeout):
        return self.proc.read(n, timeout)

    def write(self, data, timeout=None):
        self.proc.write(data, timeout)

    def close(self):
        self.proc.close()


@pytest.fixture
def device(host_project):
    d = RebootableDevice(host_project.binary)
    yield d
    d.close()


@requires_gcc
def test_answers_carry_one_boot_id_per_boot(device):
    client = Client(device)
    client.connect()
    first = client.boot_id
    assert first is not None and client.ping(b"x") == b"x" and client.boot_id == first
    device.reboot()
    with pytest.raises(DeviceReset, match=f"boot id {first:#010x}, now 0x"):
        client.ping(b"y")
    assert client.boot_id != first and client.stats.reboots == 1
    assert client.ping(b"z") == b"z"           # the new epoch is the session's from now on


@requires_gcc
def test_reset_between_write_input_and_run_is_detected(device, model_dirs):
    model = model_dirs["tiny"]
    x = bytes((7 * i + 3) % 256 for i in range(model.input_bytes))
    zero_output = model.reference(bytes(model.input_bytes))
    assert model.reference(x) != zero_output
    client = Client(device)
    client.connect()
    client.write_input(x)
    device.reboot()                            # the input is gone: the device holds zeros
    with pytest.raises(DeviceReset, match="rebooted before answering run"):
        client.run()
    # nothing of the new boot is taken as this input's output until the input is rewritten
    with pytest.raises(InputLost, match="write the input again"):
        client.read_output()
    with pytest.raises(InputLost):
        client.run()
    client.write_input(x)
    client.run()
    assert client.read_output() == model.reference(x)


@requires_gcc
def test_reset_between_run_and_read_output_is_detected(device, model_dirs):
    model = model_dirs["tiny"]
    x = bytes((5 * i + 1) % 256 for i in range(model.input_bytes))
    client = Client(device)
    client.connect()
    client.write_input(x)
    client.run()
    device.reboot()
    with pytest.raises(DeviceReset):
        client.read_output()


@requires_gcc
def test_infer_uploads_again_after_a_reboot(device, model_dirs):
    """A reboot while infer() is under way: the input goes up again, the output is right."""
    model = model_dirs["tiny"]
    x = bytes((3 * i + 11) % 256 for i in range(model.input_bytes))
    client = Client(device)
    client.connect()
    real_call = client.call
    rebooted = []

    def call(cmd, *a, **kw):
        if cmd == P.Cmd.RUN and not rebooted:  # reset after the upload, before the run
            rebooted.append(1)
            device.reboot()
        return real_call(cmd, *a, **kw)

    client.call = call
    out, _ = client.infer(x)
    assert out == model.reference(x)
    assert client.stats.reboots == 1 and client.stats.reuploads == 1
