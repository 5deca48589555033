"""`quantmcu --help`, `models`, `eval`, and the one-line errors on bad input."""
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, requires_dataset, requires_trained


def quantmcu(*args, env=None, timeout=600):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "tvm_quantmcu.cli", *args], cwd=REPO,
                          capture_output=True, text=True, env=e, timeout=timeout)


def test_help_lists_commands():
    r = quantmcu("--help")
    assert r.returncode == 0
    for cmd in ("models", "eval"):
        assert cmd in r.stdout


def test_models_json():
    r = quantmcu("models", "--json")
    assert r.returncode == 0
    names = {m["model"] for m in json.loads(r.stdout)}
    assert {"mbv2-fmnist", "mcunet-fmnist", "mbv2-imagenet", "mcunet-320kb"} <= names


def test_unknown_model_lists_known_ones():
    r = quantmcu("eval", "--model", "nope", "--limit", "1")
    assert r.returncode != 0
    assert "nope" in r.stderr and "mbv2-fmnist" in r.stderr and "mcunet-fmnist" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_dataset_names_apt_package(tmp_path):
    r = quantmcu("eval", "--limit", "1", env={"QUANTMCU_FMNIST_DIR": str(tmp_path)})
    assert r.returncode != 0
    assert "apt-get install" in r.stderr and "dataset-fashion-mnist" in r.stderr
    assert "Traceback" not in r.stderr


def test_corrupt_checkpoint_one_line_error(tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(os.urandom(64))
    r = quantmcu("eval", "--limit", "1", "--checkpoint", str(bad))
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip() and "Warning" not in l
             and not l.startswith(" ")]
    assert len(lines) == 1 and str(bad) in lines[0]


def test_architecture_only_model_refused():
    r = quantmcu("eval", "--model", "mbv2-imagenet", "--limit", "1")
    assert r.returncode != 0 and "architecture-only" in r.stderr


@requires_dataset
@requires_trained("mbv2-fmnist")
def test_eval_json_on_a_few_images():
    r = quantmcu("eval", "--model", "mbv2-fmnist", "--limit", "200", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["images"] == 200 and res["bits"] == 8
    assert res["fp32_top1"] > 0.85 and res["int_top1"] >= res["fp32_top1"] - 0.03
