"""`quantmcu report`: plots and markdown from synthetic numbers (no checkpoint needed), the
atomic output directory, and the CLI's one-line errors."""
import os

import matplotlib.image as mpimg
import numpy as np
import pytest

from tvm_quantmcu import report
from tvm_quantmcu.cli import main
from tvm_quantmcu.report.build import OutputDirError, check_output_dir


def _row(name, top1, ratio, lam=None, bits=None, rate=0.0):
    return {"policy": name, "lambda": lam, "top1": top1, "images": 100,
            "bitops_patch_stage": 1e6 / ratio, "bitops_patch_stage_vs_int8": ratio,
            "bitops_total_vs_int8": 1 + (ratio - 1) / 3, "outlier_patch_rate": rate,
            "peak_sram_bytes": 30000, "flash_bytes": 250000, "bits": bits or {},
            "search_seconds": 0.1}


def _small_graph():
    """A MobileNetV2-like net small enough to analyse in milliseconds (no TVM import)."""
    from tvm_quantmcu.graph import Graph, Layer
    rng = np.random.default_rng(0)
    w = lambda *s: rng.normal(0, 0.3, s).astype(np.float32)      # noqa: E731
    b = lambda n: np.zeros(n, np.float32)                          # noqa: E731
    layers = [
        Layer("l0", "conv2d", ["x"], "t0", w(8, 1, 3, 3), b(8), (2, 2), (1, 1, 1, 1), act="relu6"),
        Layer("l1", "conv2d", ["t0"], "t1", w(8, 1, 3, 3), b(8), (1, 1), (1, 1, 1, 1),
              groups=8, act="relu6"),
        Layer("l2", "conv2d", ["t1"], "t2", w(8, 8, 1, 1), b(8)),
        Layer("l3", "add", ["t0", "t2"], "t3"),
        Layer("l4", "conv2d", ["t3"], "t4", w(16, 8, 3, 3), b(16), (2, 2), (1, 1, 1, 1),
              act="relu6"),
        Layer("l5", "conv2d", ["t4"], "t5", w(32, 16, 1, 1), b(32), act="relu6"),
        Layer("l6", "avgpool", ["t5"], "t6", kernel=(16, 16), stride=(16, 16)),
        Layer("l7", "dense", ["t6"], "t7", w(10, 32), b(10)),
    ]
    return Graph("x", (1, 64, 64), layers, "t7")


@pytest.fixture(scope="module")
def data():
    """ReportData from a real patch analysis of a small graph and made-up measurements:
    exercises every plot and table without a checkpoint."""
    from tvm_quantmcu import patch
    graph = _small_graph()
    plan = patch.analyze(graph, "l4", (2, 2))
    budget = (plan.peak_sram_patch_bytes + plan.peak_sram_layerwise_bytes) // 2
    maps = [l.output for l in plan.stage_layers if l.output != plan.stage_output]
    bits = {"t0": 4, "t1": 2, "t3": 4}
    lw, p8, low = report.memory_profiles(graph, plan, bits)
    p, q = plan.grid
    front = [dict(_row("quantmcu", 0.91 - 0.1 * lam0, 1 + 2 * lam0, lam, bits), pareto=True)
             for lam, lam0 in ((1.0, 0.0), (0.3, 0.4), (0.1, 0.8), (0.0, 1.0))]
    policies = [_row("layerwise-int8", 0.912, 1.0), _row("int8", 0.912, 1.0),
                _row("quantmcu", 0.905, 2.1, 0.1, bits, 0.05), _row("memory-driven", 0.88, 1.3),
                _row("rl", 0.89, 1.6)]
    return report.ReportData(
        model="mbv2-fmnist", sram_budget_bytes=budget, plan=plan.summary(budget),
        layer_names=[l.name for l in graph.layers], split_index=plan.split_index,
        mem_layerwise=lw, mem_patch8=p8, mem_low=low, stage_maps=maps, bits_low=bits,
        outlier_per_position=(np.arange(p * q).reshape(p, q) / (4 * p * q)).tolist(),
        outlier_source="synthetic", policies=policies, front=front,
        source="synthetic test numbers", lam=0.1, threshold=3.5)


@pytest.fixture(scope="module")
def built(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    return root, report.build_report(data, str(root / "rep"))


def test_memory_profiles_are_consistent(data):
    n = len(data.layer_names)
    assert len(data.mem_layerwise) == len(data.mem_patch8) == len(data.mem_low) == n
    # packing sub-byte maps can only shrink the patch stage; the rest runs at 8 bits
    assert all(lo <= hi for lo, hi in zip(data.mem_low, data.mem_patch8))
    assert max(data.mem_low[:data.split_index + 1]) < max(data.mem_patch8[:data.split_index + 1])
    assert data.mem_low[data.split_index + 1:] == data.mem_patch8[data.split_index + 1:]
    assert max(data.mem_patch8) == data.plan["peak_sram_patch_bytes"] <= data.sram_budget_bytes
    assert max(data.mem_layerwise) == data.plan["peak_sram_layerwise_bytes"]


def test_report_writes_markdown_and_every_png(data, built):
    tmp_path, files = built
    out = tmp_path / "rep"
    md = open(files["markdown"]).read()
    for key, name in report.PNG_FILES.items():
        assert files[key] == str(out / name)
        img = mpimg.imread(files[key])
        h, w = img.shape[:2]
        assert 250 <= h <= 3000 and 400 <= w <= 4000, (name, img.shape)
        assert img.std() > 0.05                      # not a blank canvas
        assert f"]({name})" in md                    # embedded with a relative link
    linked = {l.split("](")[1].split(")")[0] for l in md.splitlines() if l.startswith("![")}
    assert linked == set(report.PNG_FILES.values())
    assert all(os.path.exists(out / f) for f in linked)
    assert "## Latency" in md and "benchmarks/deploy.py" in md   # no device rows here
    s = data.plan
    assert f"`{s['split_layer']}`" in md and f"{s['macs_total']:,}" in md
    assert f"{s['peak_sram_layerwise_bytes']:,} B" in md
    for r in data.policies:
        assert f"| {r['policy']} |" in md and f"{r['top1']:.4f}" in md
    assert "2.10×" in md                             # QuantMCU's patch-stage ratio
    # no temporary directories left next to the report
    assert sorted(os.listdir(tmp_path)) == ["rep"]


def test_rerun_replaces_a_previous_report(data, built):
    tmp_path, _ = built
    out = tmp_path / "rep"
    (out / "memory.png").write_bytes(b"stale")
    report.build_report(data, str(out))
    assert mpimg.imread(str(out / "memory.png")).ndim == 3
    assert sorted(os.listdir(tmp_path)) == ["rep"]


def test_failed_render_leaves_no_half_written_report(data, tmp_path, monkeypatch):
    import tvm_quantmcu.report.build as build

    def broken(*a, **k):
        raise RuntimeError("plot failed")
    monkeypatch.setattr(build, "plot_memory", broken)
    with pytest.raises(RuntimeError):
        report.build_report(data, str(tmp_path / "rep"))
    assert os.listdir(tmp_path) == []


def test_output_dir_checks(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputDirError, match="not a directory"):
        check_output_dir(str(f))
    d = tmp_path / "other"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="not a report"):
        check_output_dir(str(d))
    # a parent the process may not write to (simulated: root ignores permission bits)
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    try:
        os.access = lambda p, mode: False if str(p) == str(ro) else real_access(p, mode)
        with pytest.raises(OutputDirError, match="not writable"):
            check_output_dir(str(ro / "rep"))
    finally:
        os.access = real_access


def test_plot_input_errors(tmp_path):
    with pytest.raises(ValueError, match="outside the patch stage"):
        report.bits.plot_bits(["a"], {"b": 4}, "t", str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="p×q grid"):
        report.bits.plot_outliers([], "t", str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="lengths"):
        report.memory.plot_memory(["a", "b"], [1, 2], [1], [1, 2], 0, 10, "t",
                                  str(tmp_path / "x.png"))


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["report", "--model", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "mbv2-fmnist" in err
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["report", "--model", "mbv2-fmnist", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a directory" in err
    assert main(["report", "--images", "0"]) == 2


def test_latency_section_and_plot_from_deploy_rows(data, tmp_path):
    import dataclasses
    rows = [{"board": b, "policy": p, "instructions_per_inference": n, "match_rate": 1.0,
             "images": 10}
            for b, p, n in (("qemu-m4", "int8", 27_500_000), ("qemu-m4", "quantmcu", 26_000_000),
                            ("qemu-m7", "int8", 25_000_000))]
    files = report.build_report(dataclasses.replace(data, latency=rows), str(tmp_path / "r"))
    md = open(files["markdown"]).read()
    assert "| qemu-m4 | quantmcu | 26,000,000 | 1.0000 |" in md
    assert "](latency.png)" in md
    img = mpimg.imread(files["latency"])
    assert img.std() > 0.05


def test_latency_rows_only_for_the_benchmarked_model(tmp_path):
    import json
    from tvm_quantmcu.report.latency import latency_rows
    p = tmp_path / "deploy.json"
    p.write_text(json.dumps({"benchmark": "deploy", "model": "mbv2-fmnist", "rows": [
        {"board": "qemu-m4", "policy": "int8", "instructions_per_inference": 5,
         "match_rate": 1.0, "images": 3},
        {"board": "host", "policy": "int8", "instructions_per_inference": None}]}))
    assert [r["board"] for r in latency_rows("mbv2-fmnist", str(p))] == ["qemu-m4"]
    assert latency_rows("mcunet-fmnist", str(p)) == []
    assert latency_rows("mbv2-fmnist", str(tmp_path / "missing.json")) == []
