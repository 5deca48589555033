"""`quantmcu deploy` with its defaults through a loopback proxy that flips one bit in 1 % of the
bytes and drops 0.1 % of them, both ways: every output right, within 5x the clean time."""
import json
import time

import pytest

from noisy_proxy import NoisyProxy
from mp_support import requires_qemu


def _deploy(tmp_path, name, capsys):
    from tvm_quantmcu.cli import main
    t0 = time.monotonic()
    rc = main(["deploy", "--board", "qemu-m4", "--images", "200", "--out", str(tmp_path / name),
               "--json"])
    seconds = time.monotonic() - t0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return rc, res, seconds


@pytest.mark.slow
@pytest.mark.qemu
@requires_qemu
def test_deploy_through_a_noisy_link(tmp_path, monkeypatch, capsys):
    from micro_project.templates import qemu as qemu_template
    from micro_project.templates.qemu import _free_port
    pytest.importorskip("tvm_quantmcu.models")
    rc, clean, clean_s = _deploy(tmp_path, "clean", capsys)
    assert rc == 0 and clean["match_rate"] == 1.0

    port = _free_port()
    proxy = NoisyProxy(port, flip=0.01, drop=0.001, seed=20)
    real_flash, real_serial = qemu_template.QemuProject.flash, qemu_template.SerialTransport
    monkeypatch.setattr(qemu_template.QemuProject, "flash", lambda self, options=None: real_flash(
        self, {**(options or {}), "serial": "socket", "port": port}))
    monkeypatch.setattr(qemu_template, "SerialTransport", lambda url: real_serial(
        f"socket://127.0.0.1:{proxy.port}"))
    try:
        rc, noisy, noisy_s = _deploy(tmp_path, "noisy", capsys)
    finally:
        proxy.close()
    link = noisy["link"]
    with capsys.disabled():
        print(f"\nclean: {clean_s:.1f} s (session {clean['link']['session_seconds']} s); "
              f"noisy: {noisy_s:.1f} s (session {link['session_seconds']} s), "
              f"ratio {noisy_s / clean_s:.2f}\n{proxy.summary()}\nclient: {link['summary']}")
    assert proxy.flipped > 0.005 * proxy.moved and proxy.dropped > 0.0003 * proxy.moved
    assert rc == 0 and noisy["images"] == 200 and noisy["match_rate"] == 1.0
    assert noisy["mismatched_images"] == []
    assert link["resends"] > 0 and link["naks"] > 0 and len(link["payload_sizes"]) > 1
    assert noisy_s <= 5 * clean_s
