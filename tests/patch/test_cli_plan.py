"""`quantmcu plan`: chosen plan, candidate table, JSON, plot, and the no-fit error."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tvm_quantmcu import cli
from tvm_quantmcu.cli import plan as plan_cmd

JSON_KEYS = {"split_layer", "grid", "input_patch_hw", "macs_total", "macs_patch_stage",
             "overhead_patch_stage_pct", "overhead_total_pct", "peak_sram_layerwise_bytes",
             "peak_sram_patch_bytes", "fits"}


@pytest.fixture
def shared_graph(zoo, monkeypatch):
    """Let the command reuse the session's imported layer graphs."""
    monkeypatch.setattr(plan_cmd, "_layer_graph", lambda ref: zoo(ref.name)[1])


def test_plan_below_layerwise_peak_json(shared_graph, capsys):
    assert cli.main(["plan", "--model", "mbv2-fmnist", "--sram-kb", "26", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert JSON_KEYS <= set(res)
    assert res["peak_sram_layerwise_bytes"] > 26 * 1024 >= res["peak_sram_patch_bytes"]
    assert res["fits"] is True
    p, q = res["grid"]
    assert len(res["patches"]) == p * q
    assert max(pt["window"][1] - pt["window"][0] for pt in res["patches"]) == \
        res["input_patch_hw"][0]
    assert sum(pt["macs"] for pt in res["patches"]) == res["macs_patch_stage"]
    assert res["peak_sram_layerwise_bytes"] >= 3 * res["peak_sram_patch_bytes"]
    table = res["candidates"]
    assert len(table) > 100 and all(JSON_KEYS <= set(r) for r in table)
    fitting = [r for r in table if r["fits"]]
    # the chosen plan has the least overhead among the fitting candidates
    assert res["overhead_total_pct"] == min(r["overhead_total_pct"] for r in fitting)
    assert any(r["grid"][0] != r["grid"][1] for r in table)


def test_plan_table_and_plot(shared_graph, capsys, tmp_path):
    png = tmp_path / "mem.png"
    assert cli.main(["plan", "--model", "mbv2-fmnist", "--sram-kb", "40",
                     "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "chosen: split after" in out and "candidates (" in out
    assert out.count(" yes") + out.count(" no") > 100
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_plan_layerwise_fits(shared_graph, capsys):
    assert cli.main(["plan", "--model", "mbv2-fmnist", "--sram-kb", "100", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["layerwise"] is True and res["split_layer"] is None
    assert cli.main(["plan", "--model", "mbv2-fmnist", "--sram-kb", "100", "--json",
                     "--patch-only"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["split_layer"] is not None and res["fits"]


def test_plan_user_errors(shared_graph, capsys):
    assert cli.main(["plan", "--model", "nope", "--sram-kb", "10"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert cli.main(["plan", "--sram-kb", "-1"]) == 2


def test_plan_budget_nothing_meets_exits_nonzero():
    """The real command: one clear line with the smallest achievable peak, exit status 2."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run([sys.executable, "-m", "tvm_quantmcu.cli", "plan", "--model",
                        "mbv2-fmnist", "--sram-kb", "4"], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 2
    err = [l for l in r.stderr.splitlines() if l.startswith("quantmcu plan: error:")]
    assert len(err) == 1, r.stderr
    assert "smallest achievable peak is 12288 B" in err[0]
    assert r.stdout == ""
