"""`quantmcu deploy` with its defaults through a loopback proxy that flips one bit in 1 % of the
bytes and drops 0.1 % of them, both ways: every output right, within 5x the clean time."""
import json
import time

import pytest

from noisy_proxy import NoisyProxy
from mp_support import requires_qemu

IMAGES = 200


def _deploy(tmp_path, name, capsys):
    """Runs the CLI; returns its exit status, its JSON result and seconds. A run that gives no
    result fails the test with what the CLI wrote to stderr."""
    from tvm_quantmcu.cli import main
    t0 = time.monotonic()
    rc = main(["deploy", "--board", "qemu-m4", "--images", str(IMAGES), "--out",
               str(tmp_path / name), "--json"])
    seconds = time.monotonic() - t0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    if rc != 0 or not lines:
        pytest.fail(f"{name} deploy: exit {rc} after {seconds:.0f} s; stderr:\n{err[-3000:]}")
    return json.loads(lines[-1]), seconds


@pytest.mark.slow
@pytest.mark.qemu
@requires_qemu
def test_deploy_through_a_noisy_link(tmp_path, monkeypatch, capsys):
    from micro_project.templates import qemu as qemu_template
    from micro_project.templates.qemu import _free_port
    pytest.importorskip("tvm_quantmcu.models")
    clean, clean_s = _deploy(tmp_path, "clean", capsys)
    assert clean["match_rate"] == 1.0

    port = _free_port()
    proxy = NoisyProxy(port, flip=0.01, drop=0.001, seed=20)
    real_flash, real_serial = qemu_template.QemuProject.flash, qemu_template.SerialTransport
    monkeypatch.setattr(qemu_template.QemuProject, "flash", lambda self, options=None: real_flash(
        self, {**(options or {}), "serial": "socket", "port": port}))
    monkeypatch.setattr(qemu_template, "SerialTransport", lambda url: real_serial(
        f"socket://127.0.0.1:{proxy.port}"))
    try:
        noisy, noisy_s = _deploy(tmp_path, "noisy", capsys)
    finally:
        proxy.close()
    link = noisy["link"]
    with capsys.disabled():
        print(f"\nclean: {clean_s:.1f} s (session {clean['link']['session_seconds']} s); "
              f"noisy: {noisy_s:.1f} s (session {link['session_seconds']} s); "
              f"ratio {noisy_s / clean_s:.2f}\n{proxy.summary()}\n"
              f"client: {link['summary']}\n"
              f"resends {link['resends']}, NAKs {link['naks']} (truncated {link['truncated']}), "
              f"damaged answers {link['damaged_answers']}, timeouts {link['timeouts']}, "
              f"payload sizes {link['payload_sizes']}")
    # the link really was that noisy, both ways
    assert proxy.flipped > 0.008 * proxy.moved and proxy.dropped > 0.0006 * proxy.moved
    assert link["resends"] > 0 and link["naks"] > 0 and len(link["payload_sizes"]) > 1
    # every one of the 200 outputs equals the integer reference: no wrong answer was accepted
    assert noisy["images"] == IMAGES and noisy["match_rate"] == 1.0
    assert noisy["mismatched_images"] == []
    # ... nor a wrong timing: the same images take the same instructions as on the clean link
    assert abs(noisy["instructions_per_inference"] - clean["instructions_per_inference"]) <= 1
    assert all(abs(a - b) <= 1 for a, b in zip(noisy["instructions_min_max"],
                                                clean["instructions_min_max"]))
    assert noisy_s <= 5 * clean_s
