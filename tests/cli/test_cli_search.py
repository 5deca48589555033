"""`quantmcu search` refuses bad input with one clear line and a non-zero exit."""
import pytest

from test_cli_basics import quantmcu


@pytest.mark.parametrize("args, words", [
    (["--lambda", "1.5"], "[0, 1]"),
    (["--lambda", "-0.1"], "[0, 1]"),
    (["--lambda", "abc"], "'auto'"),
    (["--policy", "magic"], "invalid choice"),
    (["--sram-kb", "0.5"], "smallest achievable peak"),
])
def test_bad_input(args, words):
    r = quantmcu("search", "--model", "mbv2-fmnist", "--limit", "10", *args)
    assert r.returncode != 0
    assert words in r.stderr and "Traceback" not in r.stderr


def test_search_int8_and_quantmcu_json(tmp_path):
    import json
    from helpers import trained
    if not trained("mbv2-fmnist"):
        pytest.skip("mbv2-fmnist has no trained checkpoint")
    r = quantmcu("search", "--model", "mbv2-fmnist", "--policy", "int8", "--limit", "60",
                 "--json", "--engine", "sim")
    assert r.returncode == 0, r.stderr
    base = json.loads(r.stdout)
    assert base["bitops_patch_stage_vs_int8"] == 1.0 and base["outlier_patch_rate"] == 0.0
    assert base["engine"] == "sim"
    out = tmp_path / "p.json"
    r = quantmcu("search", "--model", "mbv2-fmnist", "--policy", "quantmcu", "--lambda", "0.05",
                 "--limit", "60", "--json", "--out", str(out), "--engine", "c")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for key in ("policy", "top1", "images", "bitops_patch_stage", "bitops_total",
                "bitops_patch_stage_vs_int8", "bitops_total_vs_int8", "outlier_patch_rate",
                "peak_sram_bytes", "flash_bytes", "search_seconds", "lambda"):
        assert key in res
    assert res["lambda"] == 0.05 and res["bitops_patch_stage_vs_int8"] > 1.0
    assert res["engine"] == "c" and res["w_bits"]     # VDQS lowered some weights at λ=0.05
    assert json.loads(out.read_text())["model"] == "mbv2-fmnist"
