"""The latency benchmark's logic without running it: the budgets it picks, the targets of #16
with the gap where missed, the tables (a policy that does not fit says why), the README
section and the report's plot from its JSON."""
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import REPO

SCRIPT = Path(REPO) / "benchmarks" / "latency.py"


@pytest.fixture(scope="module")
def lat():
    spec = importlib.util.spec_from_file_location("latency_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_budgets(lat, peaks_macs, layerwise):
    """Budgets over made-up plans: (split, grid, peak bytes, MACs)."""
    b = object.__new__(lat.Budgets)
    b.plans = [SimpleNamespace(split_index=s, grid=g, peak_sram_patch_bytes=p, macs_total=m)
               for s, g, p, m in peaks_macs]
    b.int8_min = min(p[2] for p in peaks_macs)
    b.layerwise = layerwise
    b.min_kb, b.max_kb = -(-b.int8_min // 1024), -(-layerwise // 1024)
    return b


PLANS = [(12, (4, 7), 18432, 15_800_000), (12, (4, 4), 20048, 12_800_000),
         (9, (2, 3), 30720, 9_200_000), (6, (2, 2), 32768, 8_000_000),
         (6, (1, 2), 47616, 7_900_000)]


def test_budgets_are_where_the_plan_changes(lat):
    b = fake_budgets(lat, PLANS, 81920)
    assert b.breakpoints() == [18, 20, 30, 32, 47, 80]
    assert (b.chosen(31).split_index, b.chosen(31).grid) == (9, (2, 3))
    assert b.chosen(10).grid == (4, 7)            # below the minimum: the smallest peak
    picked = b.pick(4, 32, below=True)
    assert picked[0] == 15 and {18, 32, 80} <= set(picked) and len(picked) == 5
    assert b.pick(10, None, below=False) == [18, 20, 30, 32, 47, 80]
    # below the minimum: where a plan with lower-bit patch-stage maps fits, if it does
    b.low_bit_min = 16_000
    assert b.pick(4, 32, below=True)[0] == 16
    b.low_bit_min = 18_432
    assert b.pick(4, 32, below=True)[0] == 15
    # policies are cached per plan at or above the minimum, per budget below it
    assert b.slot(47) == b.slot(60) == "6_1x2" and b.slot(15) == "12_4x7_15KB"


def row(model, kb, policy, cycles, instr, top1, stage=1e6, fits=True):
    cycles, instr = (None if v is None else int(v) for v in (cycles, instr))
    return {"model": model, "budget_kb": kb, "policy": policy, "label": policy, "fits": fits,
            "cycles_per_inference": cycles, "instructions_per_inference": instr, "top1": top1,
            "bitops_patch_stage": stage, "outlier_patch_rate": 0.1, "peak_sram_bytes": kb * 1000,
            "match_rate": 1.0, "plan": {"split_layer": "l6", "grid": [2, 2]}}


def test_targets_report_the_gap(lat):
    m = {"model": "mbv2-fmnist", "int8_min_peak_bytes": 18432, "budgets_kb": [15, 18, 32],
         "rows": [
        dict(row("mbv2-fmnist", 15, "int8", None, None, None), fits=False,
             instructions_per_inference=None, reason="exceeds"),
        row("mbv2-fmnist", 18, "int8", 30e6, 25e6, 0.92, stage=4e6),
        row("mbv2-fmnist", 18, "quantmcu-bitops", 20e6, 20e6, 0.918, stage=1e6),
        row("mbv2-fmnist", 32, "int8", 24e6, 20e6, 0.92, stage=3e6),
        row("mbv2-fmnist", 32, "quantmcu-bitops", 23e6, 19e6, 0.91, stage=2e6)]}
    t = lat.targets([m])
    small = next(x for x in t if x.get("budget") == "smallest")
    assert small["budget_kb"] == 18 and small["policy"] == "quantmcu-bitops"
    assert small["cycles_speedup"] == pytest.approx(1.5)
    assert small["instructions_speedup"] == pytest.approx(1.25)
    assert not small["met"] and small["missed_by"]["speedup"] == pytest.approx(0.15)
    at32 = next(x for x in t if x.get("budget") == 32)
    assert not at32["met"] and at32["missed_by"]["accuracy_pt"] == pytest.approx(0.5)
    bit = next(x for x in t if x.get("target") == "patch-stage BitOPs"
               and x["policy"] == "quantmcu-bitops")
    # 32 KB loses 1 pt: only the 18 KB policy (4×) counts
    assert bit["met"] and bit["ratio"] == pytest.approx(4.0) and bit["budget_kb"] == 18


def result(lat, m):
    res = {"benchmark": "latency", "board": "qemu-m4", "device_phi": False,
           "env": {"date": "2026-01-01 00:00 UTC"},
           "args": {"images": 200, "test_images": 10000, "val_images": 1000,
                    "rl_seconds": 60.0, "quick": False}, "models": [m]}
    res["targets"] = lat.targets(res["models"])
    m["smallest_fit_kb"] = lat.smallest_fits(m)
    return res


def test_markdown_says_why_a_policy_does_not_fit(lat):
    m = {"model": "mbv2-fmnist", "int8_min_peak_bytes": 18432, "layerwise_peak_bytes": 81920,
         "budgets_kb": [15, 18], "rows": [
             {"model": "mbv2-fmnist", "budget_kb": 15, "policy": "int8", "label": "int8",
              "fits": False, "planned_peak_sram_bytes": 18432,
              "reason": "planned peak 18,432 B exceeds the budget by 3,072 B"},
             row("mbv2-fmnist", 18, "int8", 30e6, 25e6, 0.92)]}
    md = lat.markdown(result(lat, m))
    assert "exceeds the budget by 3,072 B" in md
    assert "| 18 | int8 | l6 2×2 | yes | 18,000 | 25,000,000 | 30,000,000 | 1.000 |" in md
    assert "int8 patches (MCUNetV2) 18 KB" in md and "device-cost Φ yet" in md


def test_readme_section_and_report_plot_from_the_json(lat, tmp_path):
    from tvm_quantmcu.report.latency import (budget_latency, budget_latency_markdown,
                                             plot_latency_vs_budget)
    spec = importlib.util.spec_from_file_location(
        "readme_results", Path(REPO) / "benchmarks" / "readme_results.py")
    rr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rr)
    m = {"model": "mbv2-fmnist", "int8_min_peak_bytes": 18432, "layerwise_peak_bytes": 81920,
         "budgets_kb": [18, 32], "rows": [
             row("mbv2-fmnist", 18, "int8", 30_000_000, 25e6, 0.92),
             row("mbv2-fmnist", 32, "int8", 24_000_000, 20e6, 0.92),
             dict(row("mbv2-fmnist", 18, "rl", None, None, None), fits=False,
                  instructions_per_inference=None)]}
    res = result(lat, m)
    (tmp_path / "latency.json").write_text(json.dumps(res))
    text = rr.render(tmp_path)
    assert "| 18 | 30,000,000 | – |" in text and "| 32 | 24,000,000 | n/m |" in text
    assert budget_latency("mbv2-fmnist", str(tmp_path / "latency.json"))["budgets_kb"] == [18, 32]
    assert budget_latency("mcunet-fmnist", str(tmp_path / "latency.json")) is None
    md = budget_latency_markdown(m, "mbv2-fmnist", "x.png")
    assert "| 18 | 30,000,000 | – |" in md and "![latency against SRAM budget](x.png)" in md
    png = plot_latency_vs_budget([m], str(tmp_path / "l.png"))
    assert Path(png).stat().st_size > 1000


def test_merge_replaces_the_rows_a_run_measured_and_keeps_the_rest(lat):
    old = dict(row("mbv2-fmnist", 12, "int8", 30e6, 25e6, 0.92), commit="aaaaaaa")
    kept = dict(row("mbv2-fmnist", 32, "int8", 24e6, 20e6, 0.92), commit="aaaaaaa")
    base = result(lat, {"model": "mbv2-fmnist", "int8_min_peak_bytes": 12288,
                        "layerwise_peak_bytes": 81920, "budgets_kb": [12, 32],
                        "rows": [old, kept]})
    run = result(lat, {"model": "mbv2-fmnist", "int8_min_peak_bytes": 12288,
                       "layerwise_peak_bytes": 81920, "budgets_kb": [12], "rows": [
                           dict(row("mbv2-fmnist", 12, "int8", 33e6, 27e6, 0.92),
                                commit="bbbbbbb"),
                           dict(row("mbv2-fmnist", 12, "quantmcu-device", 20e6, 18e6, 0.918),
                                commit="bbbbbbb")]})
    base["models"][0]["rows"].append({"model": "mbv2-fmnist", "budget_kb": 32, "policy": "rl",
                                      "label": "rl", "fits": None, "reason": lat.NOT_RUN})
    other = result(lat, {"model": "mcunet-fmnist", "int8_min_peak_bytes": 30720,
                         "layerwise_peak_bytes": 81920, "budgets_kb": [30],
                         "rows": [row("mcunet-fmnist", 30, "int8", 40e6, 33e6, 0.93)]})
    res = lat.merge(base, [run, other])
    # in table order (the README's columns follow the rows)
    assert [(r["budget_kb"], r["policy"]) for r in res["models"][0]["rows"]] == [
        (12, "int8"), (12, "quantmcu-device"), (32, "int8"), (32, "rl")]
    rows = {(r["budget_kb"], r["policy"]): r for r in res["models"][0]["rows"]}
    assert len(rows) == 4 and rows[(12, "int8")]["commit"] == "bbbbbbb"
    assert rows[(32, "rl")]["reason"] == lat.NOT_MERGED
    assert rows[(32, "int8")] is kept
    assert [m["model"] for m in res["models"]] == ["mbv2-fmnist", "mcunet-fmnist"]
    res["targets"] = lat.targets(res["models"])
    md = lat.markdown(res)
    # rows of two trees: each names its own
    assert "trees aaaaaaa, bbbbbbb" in md and "| 1.000 | tree aaaaaaa. |" in md
    assert "| 1.650 | 91.80 | -0.20 |" in md
    with pytest.raises(SystemExit, match="cannot join"):
        lat.merge(res, [dict(run, args=dict(run["args"], images=20))])


def test_merge_of_a_missing_or_foreign_file_exits_with_one_line(lat, tmp_path, capsys):
    out = tmp_path / "latency"
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(SystemExit, match="cannot read .*latency.json"):
        lat.main(["--merge", str(tmp_path / "other.json"), "--out", str(out)])
    out.with_suffix(".json").write_text('{"args": {}, "models": []}')
    with pytest.raises(SystemExit, match="other.json is not a result"):
        lat.main(["--merge", str(tmp_path / "other.json"), "--out", str(out)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latency.json", "other.json"]

