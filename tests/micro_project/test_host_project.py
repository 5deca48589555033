"""The project API with the host template: options, generate/build/flash/transport, and the
whole RPC path against the integer reference."""
import json

import numpy as np
import pytest

import micro_project
from micro_project import protocol as P
from micro_project.client import Client, DeviceError, ModelMismatch
from micro_project.project_api import ProjectError

from mp_support import requires_gcc

pytestmark = requires_gcc


def test_server_info_lists_options_per_method():
    info = micro_project.get_template("host").server_info_query()
    assert info.platform_name == "host" and info.is_template
    names = {o.name: o for o in info.project_options}
    assert {"max_payload", "cc", "sanitize"} <= set(names)
    assert names["sanitize"].accepts("build") and not names["sanitize"].accepts("flash")
    for t in micro_project.TEMPLATES:
        assert micro_project.get_template(t).server_info_query().platform_name == t


def test_option_errors_name_the_problem(host_project, model_dirs, tmp_path):
    with pytest.raises(ProjectError, match="unknown option 'board'"):
        host_project.build({"board": "x"})
    with pytest.raises(ProjectError, match="does not apply to flash"):
        host_project.flash({"sanitize": True})
    with pytest.raises(ProjectError, match="max_payload: expected an integer"):
        micro_project.get_template("host").generate_project(
            model_dirs["tiny"].directory, tmp_path / "p", {"max_payload": "big"})
    with pytest.raises(ProjectError, match="holds no C sources"):
        micro_project.get_template("host").generate_project(tmp_path, tmp_path / "p2")
    with pytest.raises(ProjectError, match="needs option 'board'"):
        micro_project.get_template("zephyr").generate_project(
            model_dirs["tiny"].directory, tmp_path / "z")
    with pytest.raises(ProjectError, match="unknown template"):
        micro_project.get_template("arduino")


def test_generated_project_is_self_contained(host_project, model_dirs):
    d = host_project.project_dir
    meta = json.loads((d / "project.json").read_text())
    assert meta["template"] == "host" and meta["model"]["hash"] == model_dirs["tiny"].hash
    for f in ("core/src/qmcu_server.c", "core/src/qmcu_frame.c", "core/include/qmcu_model_api.h",
              "hal/qmcu_hal_host.c", "model/qmcu_model.c"):
        assert (d / f).exists(), f
    again = micro_project.open_project(d)
    assert type(again).__name__ == "HostProject" and again.binary == host_project.binary


def test_inference_is_bit_exact_with_the_integer_reference(host_project, model_dirs):
    model = model_dirs["tiny"]
    rng = np.random.default_rng(0)
    host_project.open_transport()
    try:
        client = host_project.client()
        info = client.check_model(model.hash)
        assert (info.board, info.input_bytes, info.output_bytes, info.n_kernels) == \
            ("host", model.input_bytes, model.output_bytes, 2)
        assert info.input_bytes > info.max_payload     # uploads take several frames
        for _ in range(20):
            x = rng.integers(0, 256, model.input_bytes, dtype=np.uint8).tobytes()
            out, timing = client.infer(x)
            assert out == model.reference(x)
            assert timing.repeat == 1 and timing.ticks > 0
        t = client.run(repeat=5)
        assert t.repeat == 5 and t.ticks_per_run > 0
        assert client.read_output() == out            # a repeated run leaves the same output
        assert client.run_kernel(1, repeat=3).repeat == 3
    finally:
        host_project.close_transport()


def test_device_errors_carry_the_device_message(host_project, model_dirs):
    model = model_dirs["tiny"]
    host_project.open_transport()
    try:
        client = host_project.client()
        with pytest.raises(DeviceError, match="qmcu_run returned -7") as e:
            client.infer(b"FAIL" + bytes(model.input_bytes - 4))
        assert e.value.status == P.Status.MODEL and e.value.command == "run"
        with pytest.raises(DeviceError, match="past the end of the input"):
            client.write_input(b"xy", offset=model.input_bytes - 1)
        with pytest.raises(DeviceError, match="past the end of the output"):
            client.read_output(length=4, offset=model.output_bytes - 2)
        with pytest.raises(DeviceError, match="kernel id 9 out of range: model has 2"):
            client.run_kernel(9)
        with pytest.raises(DeviceError, match="repeat must be within 1..100000"):
            client.run(repeat=0)
        with pytest.raises(DeviceError, match="unknown command 0x33"):
            client.call(0x33)
        # the session still works after errors
        assert client.ping(b"still here") == b"still here"
    finally:
        host_project.close_transport()


def test_reset_clears_buffers(host_project, model_dirs):
    model = model_dirs["tiny"]
    host_project.open_transport()
    try:
        client = host_project.client()
        x = bytes(range(256)) * 3
        out, _ = client.infer(x)
        client.reset()
        assert client.read_output() == bytes(model.output_bytes)
        client.run()
        assert client.read_output() == model.reference(bytes(model.input_bytes))
    finally:
        host_project.close_transport()


def test_bad_protocol_version_is_refused_with_a_message(host_project):
    host_project.open_transport()
    try:
        client = host_project.client()
        host_project.write_transport(P.encode(P.Cmd.PING, 77, b"", version=3), 1.0)
        events = []
        while not any(e.kind == "frame" for e in events):
            events += P.Parser().feed(host_project.read_transport(256, 2.0))
        f = next(e.frame for e in events if e.kind == "frame")
        assert f.seq == 77 and f.payload[0] == P.Status.BAD_VERSION and len(f.payload) > 5
        assert b"protocol version 3 not supported" in f.payload
        assert client.ping(b"ok") == b"ok"
    finally:
        host_project.close_transport()


def test_firmware_exit_is_reported_with_its_status(host_project):
    from micro_project.transport import TransportClosed
    host_project.open_transport()
    try:
        t = host_project.transport
        client = Client(t, timeout=2.0)
        client.connect()
        t.proc.stdin.close()                           # the firmware sees EOF and exits 0
        t.proc.stdin = None
        with pytest.raises(TransportClosed, match="exited with status 0"):
            for _ in range(50):
                t.read(100, 0.5)
    finally:
        host_project.close_transport()


def test_session_is_the_whole_flow_in_one_call(model_dirs, tmp_path):
    """generate → build → session (flash, transport, connect, model check) → client."""
    model = model_dirs["tiny"]
    project = micro_project.get_template("host").generate_project(model.directory,
                                                                  tmp_path / "p")
    project.build()
    x = bytes(range(256)) * 3
    with project.session(expected_hash=model.hash) as client:
        assert client.infer(x)[0] == model.reference(x)
    assert project.transport is None
    with pytest.raises(ModelMismatch):
        with project.session(expected_hash="ffffffffffffffff"):
            pass
    assert project.transport is None


@pytest.mark.parametrize("max_payload", [64, 65, 100, 4096])
def test_info_and_inference_at_every_payload_size(model_dirs, tmp_path, max_payload):
    """INFO fits in the smallest allowed frame (the model hash whole, later strings cut or left
    out), and uploads/downloads split to the device's size."""
    model = model_dirs["tiny"]
    project = micro_project.get_template("host").generate_project(
        model.directory, tmp_path / "p", {"max_payload": max_payload})
    project.build()
    x = bytes((i * 13) % 256 for i in range(model.input_bytes))
    with project.session(expected_hash=model.hash) as client:
        info = client.info()
        assert info.max_payload == max_payload and info.model_hash == model.hash
        assert info.input_bytes == model.input_bytes
        assert client.infer(x)[0] == model.reference(x)
        assert max(client.stats.payload_sizes) <= max_payload - 8
