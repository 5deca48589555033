"""`quantmcu deploy`: end to end on the host and on QEMU, Zephyr generation, bad input."""
import json
import re

import pytest

from helpers import have, requires_dataset
from micro_project import qemu
from tvm_quantmcu.cli import main

pytestmark = requires_dataset

needs_qemu = pytest.mark.skipif(not (have("qemu-system-arm") and have("arm-none-eabi-gcc")),
                                reason="needs qemu-system-arm and arm-none-eabi-gcc "
                                       "(apt-get install qemu-system-arm gcc-arm-none-eabi "
                                       "libnewlib-arm-none-eabi)")


def _deploy(capsys, *argv):
    rc = main(["deploy", "--json", *argv])
    out = capsys.readouterr().out
    return rc, json.loads(out.strip().splitlines()[-1])


def test_host_deploy_matches_reference(tmp_path, capsys):
    rc, res = _deploy(capsys, "--board", "host", "--images", "8", "--out", str(tmp_path))
    assert rc == 0
    assert res["match_rate"] == 1.0 and res["images"] == 8
    assert res["device_top1"] == res["reference_top1"]
    assert res["arena_bytes"] > 0 and (tmp_path / "model" / "qmcu_model.c").exists()
    # the arena the linked program reserves is the one the generator planned
    assert res["arena_bytes_linked"] == res["arena_bytes"]
    assert "arena (peak SRAM" in (tmp_path / "memory.md").read_text()


@needs_qemu
@pytest.mark.qemu
def test_qemu_m4_deploy_counts_instructions(tmp_path, capsys):
    rc, res = _deploy(capsys, "--board", "qemu-m4", "--policy", "int8", "--images", "4",
                      "--out", str(tmp_path))
    assert rc == 0 and res["match_rate"] == 1.0
    assert res["counter"] == "cmsdk-timer0"
    assert res["instructions_per_inference"] > 1_000_000
    lo, hi = res["instructions_min_max"]
    assert 0 < lo <= res["instructions_per_inference"] <= hi
    if qemu.cycle_plugin() is not None:      # built by .ci/setup
        assert res["instructions_per_inference"] < res["cycles_per_inference"] \
            < 3 * res["instructions_per_inference"]
    assert res["flash_bytes"] > res["flash_sections"]["weights"] > 0


def test_zephyr_without_a_tree_generates_and_says_what_is_missing(tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)
    monkeypatch.chdir(tmp_path)
    rc, res = _deploy(capsys, "--board", "zephyr:nucleo_f746zg", "--policy", "int8",
                      "--out", "rel/out")
    assert rc == 0
    app = tmp_path / "rel" / "out" / "app"
    assert (app / "CMakeLists.txt").exists() and (app / "prj.conf").exists()
    assert "usart3" in (app / "boards" / "nucleo_f746zg.overlay").read_text()
    assert any("west build -b nucleo_f746zg" in c for c in res["west_build_commands"])
    assert res["west_flash_command"].startswith("west flash")
    assert "ZEPHYR_BASE is not set" in res["missing"] and "west init" in res["missing"]
    assert "cortex-m7" in res["board_facts"] and "match_rate" not in res


@pytest.mark.skipif(not have("arm-none-eabi-gcc"), reason="flash is measured with "
                    "arm-none-eabi-gcc (apt-get install gcc-arm-none-eabi)")
def test_a_model_too_big_for_the_board_fails_before_anything_is_written(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)
    out = tmp_path / "o"
    rc = main(["deploy", "--board", "zephyr:qemu_cortex_m3", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert re.search(r"zephyr:qemu_cortex_m3: the model needs [\d,]+ B of flash .* but the "
                     r"board has 262,144 B", err[0]), err
    assert not out.exists()


@pytest.mark.parametrize("argv, msg", [
    (["--board", "qemu-m99"], "unknown board 'qemu-m99'"),
    (["--board", "host", "--images", "0"], "--images must be at least 1"),
    (["--board", "zephyr:no_such_board"], "unknown board 'no_such_board'"),
    (["--model", "mbv2-imagenet"], "architecture-only"),
    (["--board", "host", "--tuning-db", "/no/such/db"], "is not a tuning database"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, msg):
    rc = main(["deploy", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err, err


def _policy_file(tmp_path, model="mbv2-fmnist", policy="int8"):
    """A saved policy file (the shipped one: what `quantmcu search --out` writes)."""
    from tvm_quantmcu.models.policies import policy_path
    path = tmp_path / f"{model}.{policy}.json"
    path.write_text(open(policy_path(model, policy)).read())
    return str(path)


def test_deploy_policy_file_on_host(tmp_path, capsys):
    pf = _policy_file(tmp_path)
    rc, res = _deploy(capsys, "--board", "host", "--images", "4", "--policy-file", pf,
                      "--out", str(tmp_path / "o"))
    assert rc == 0 and res["match_rate"] == 1.0 and res["policy"] == "int8"
    assert res["sram_kb"] == 32.0 and res["plan"] == {"split_index": 6, "grid": [2, 2]}
    # the same budget as the file's is no conflict
    rc, res = _deploy(capsys, "--board", "host", "--images", "2", "--policy-file", pf,
                      "--sram-kb", "32", "--out", str(tmp_path / "o2"))
    assert rc == 0 and res["match_rate"] == 1.0


def test_deploy_policy_file_budget_conflict_is_an_error(tmp_path, capsys):
    pf = _policy_file(tmp_path)
    out = tmp_path / "o"
    rc = main(["deploy", "--board", "host", "--policy-file", pf, "--sram-kb", "64",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "32 KB" in err and "--sram-kb 64" in err
    assert not out.exists()                       # no search, nothing written
