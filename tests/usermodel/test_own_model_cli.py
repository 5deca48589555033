"""Acceptance: a LeNet-style model of a user's own (net.py: conv-ReLU-maxpool ×2, flatten,
two linear layers, normalisation in forward), trained here on a Fashion-MNIST subset, goes
through `quantmcu eval`, `search` and `deploy` from its file, checkpoint and data."""
import json

import pytest

from helpers import have, requires_dataset
from tvm_quantmcu.cli import main
from usermodel_support import NET, fmnist_subset_npz, train

pytestmark = [requires_dataset, pytest.mark.slow]


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    ckpt = train("make", str(d))
    return ["--model", f"{NET}:make", "--checkpoint", ckpt,
            "--data", fmnist_subset_npz(d / "data.npz")], d


def _run(capsys, *argv):
    rc = main([*argv, "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out.strip().splitlines()[-1])


def test_eval_int8_within_one_point(own, capsys):
    args, _ = own
    res = _run(capsys, "eval", *args)
    assert res["model"] == "net-make" and res["images"] == 2000
    assert res["fp32_top1"] > 0.7
    assert abs(res["fp32_top1"] - res["int_top1"]) <= 0.01, res


@pytest.mark.skipif(not (have("qemu-system-arm") and have("arm-none-eabi-gcc")),
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_search_then_deploy_on_qemu_m4(own, capsys):
    args, d = own
    pol = d / "policy.json"
    res = _run(capsys, "search", *args, "--lambda", "0.2", "--limit", "500", "--out", str(pol),
               "--no-progress")
    assert res["model"] == "net-make" and res["vdpc_calibration"]["calibration_patches"] > 0
    dep = _run(capsys, "deploy", *args, "--board", "qemu-m4", "--policy-file", str(pol),
               "--images", "20", "--out", str(d / "fw"), "--no-progress")
    assert dep["match_rate"] == 1.0 and dep["images"] == 20
    assert dep["plan"]["split_index"] is not None and dep["instructions_per_inference"] > 0
    # the policy's budget is its own: another one is refused, nothing rebuilt
    rc = main(["deploy", *args, "--board", "host", "--policy-file", str(pol), "--sram-kb",
               "7", "--out", str(d / "other")])
    assert rc == 2 and "--sram-kb 7" in capsys.readouterr().err
    assert not (d / "other").exists()
