"""`quantmcu tune`: options, one-line errors, and (slow) tune then deploy --tuning-db."""
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, requires_dataset, requires_trained
from micro_project import qemu


def quantmcu(*args, timeout=1800):
    return subprocess.run([sys.executable, "-m", "tvm_quantmcu.cli", *args], cwd=REPO,
                          capture_output=True, text=True, env=dict(os.environ),
                          timeout=timeout)


def main(capsys, *args) -> tuple[int, str, str]:
    from tvm_quantmcu.cli import main as cli_main
    rc = cli_main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(capsys, "tune", "--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--trials", "--db", "--tracker", "--key", "--workers", "--json"):
        assert opt in out


@pytest.mark.parametrize("args,words", [
    (["--trials", "-1"], ["--trials"]),
    (["--workers", "0"], ["--workers"]),
    (["--model", "mbv2-imagenet"], ["architecture-only", "mbv2-fmnist"]),
])
def test_bad_options_are_one_line_errors(capsys, args, words):
    rc, _, err = main(capsys, "tune", *args)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert all(w in err for w in words)


@pytest.mark.skipif(not qemu.have_toolchain(), reason="needs qemu-system-arm, arm-none-eabi-gcc")
def test_a_file_as_database_is_refused_before_any_work(capsys, tmp_path):
    f = tmp_path / "db"
    f.write_text("not a directory")
    rc, _, err = main(capsys, "tune", "--db", str(f), "--json")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert str(f) in err and "directory" in err


@pytest.mark.slow
@requires_dataset
@requires_trained("mbv2-fmnist")
@pytest.mark.skipif(not qemu.have_toolchain(), reason="needs qemu-system-arm, arm-none-eabi-gcc")
def test_tune_then_deploy_with_the_database(tmp_path):
    db = tmp_path / "db"
    r = quantmcu("tune", "--model", "mbv2-fmnist", "--trials", "2", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)
    assert sum(t["trials"] for t in res["tasks"]) <= 2
    assert all(t["default_instructions"] > 0 for t in res["tasks"])
    e2e = res["kernel_instructions_per_inference"]
    assert 0 < e2e["tuned"] <= e2e["default"]
    again = json.loads(quantmcu("tune", "--model", "mbv2-fmnist", "--trials", "2", "--db",
                                str(db), "--json").stdout)
    assert again["new_measurements"] == 0
    r = quantmcu("deploy", "--images", "3", "--tuning-db", str(db), "--out",
                 str(tmp_path / "out"), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["match_rate"] == 1.0
