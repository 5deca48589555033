"""`quantmcu report` on a zoo model: the whole command (needs the trained checkpoint) and the
reuse of the search benchmark's JSON. Both import the model through TVM: slow."""
import json
import os

import matplotlib.image as mpimg
import pytest

from tvm_quantmcu import report
from tvm_quantmcu.cli import main
from helpers import requires_dataset, trained


def _check_report(out, printed: list[str]):
    md_path = os.path.join(out, "report.md")
    assert printed[0] == md_path
    md = open(md_path).read()
    for name in report.PNG_FILES.values():
        path = os.path.join(out, name)
        assert path in printed
        img = mpimg.imread(path)
        assert img.ndim == 3 and 250 <= img.shape[0] <= 3000 and 400 <= img.shape[1] <= 4000
        assert f"]({name})" in md
    linked = {l.split("](")[1].split(")")[0] for l in md.splitlines() if l.startswith("![")}
    assert linked == set(report.PNG_FILES.values())
    assert "quantmcu deploy" in md
    return md


@pytest.mark.slow
@requires_dataset
def test_report_command_on_trained_mbv2(tmp_path, capsys):
    if not trained("mbv2-fmnist"):
        pytest.skip("mbv2-fmnist has no trained checkpoint "
                    "(python -m tvm_quantmcu.models.train --model mbv2-fmnist)")
    out = str(tmp_path / "rep")
    rc = main(["report", "--model", "mbv2-fmnist", "--out", out, "--images", "200",
               "--rl-seconds", "5", "--recompute"])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    md = _check_report(out, printed)
    assert "computed for this report on 200" in md
    data = json.load(open(os.path.join(out, "report.json")))
    names = [r["policy"] for r in data["policies"]]
    assert {"int8", "layerwise-int8", "quantmcu", "rl"} <= set(names)
    int8 = next(r for r in data["policies"] if r["policy"] == "int8")
    assert int8["bitops_patch_stage_vs_int8"] == pytest.approx(1.0)
    assert int8["top1"] > 0.7                     # a trained net, not random weights
    assert all(r["images"] == 200 for r in data["policies"])


@pytest.mark.slow
def test_report_reuses_the_benchmark_json(tmp_path, capsys):
    """A benchmark entry for the model and budget is used as is (no measuring)."""
    from tvm_quantmcu.report.collect import _architecture_plan
    _, plan = _architecture_plan("mbv2-fmnist", 32 * 1024)
    maps = [l.output for l in plan.stage_layers if l.output != plan.stage_output]
    bits = {maps[0]: 4, maps[1]: 2}
    p, q = plan.grid

    def row(name, top1, ratio, lam=None, b=None):
        return {"policy": name, "lambda": lam, "top1": top1, "images": 10000,
                "bitops_patch_stage": 1e6 / ratio, "bitops_patch_stage_vs_int8": ratio,
                "bitops_total_vs_int8": ratio, "outlier_patch_rate": 0.03,
                "outlier_patch_rate_per_position": [[0.01 * (i + j) for j in range(q)]
                                                    for i in range(p)],
                "peak_sram_bytes": 30000, "flash_bytes": 200000, "bits": b or {},
                "search_seconds": 0.5}
    bench = {"images": 10000, "models": [{
        "model": "mbv2-fmnist", "threshold": 4.2,
        "plan": {"split_layer": plan.split_layer, "grid": list(plan.grid), "sram_kb": 32},
        "policies": [row("layerwise-int8", 0.9123, 1.0), row("int8", 0.9121, 1.0),
                     row("quantmcu", 0.9087, 1.87, 0.15, bits), row("rl", 0.9011, 1.4)],
        "front": [row("quantmcu", 0.9121, 1.0, 1.0), row("quantmcu", 0.9087, 1.87, 0.15, bits),
                  row("quantmcu", 0.85, 3.1, 0.0, {m: 2 for m in maps})]}]}
    path = tmp_path / "search.json"
    path.write_text(json.dumps(bench))
    out = str(tmp_path / "rep")
    assert main(["report", "--model", "mbv2-fmnist", "--out", out,
                 "--benchmark-json", str(path)]) == 0
    md = _check_report(out, capsys.readouterr().out.split())
    assert "reused from the search benchmark" in md
    assert "| quantmcu | 0.15 | 0.9087 | 10000 | 1.87× |" in md
    data = json.load(open(os.path.join(out, "report.json")))
    assert data["bits_low"] == bits and data["lam"] == 0.15
    assert [r["pareto"] for r in data["front"]] == [True, True, True]
    # another budget is not covered by the file: report.from_benchmark declines it
    assert report.from_benchmark("mbv2-fmnist", 64, str(path)) is None
