"""benchmarks/cmsis_nn.py (CMSIS-NN side by side with our kernels) and the Cortex-M55 kernel
table that reads its measurement: refusing a folder that is not CMSIS-NN, the CMSIS-NN call it
generates for identical data, and the columns both tables take from its JSON."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO
from tvm_quantmcu.topi import KernelSpec, get_kernel
from tvm_quantmcu.topi.cases import random_case

BENCH = Path(REPO) / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


cmsis_nn = _load("cmsis_nn")
kernels = _load("kernels")


def _doc(ours_i=0.8, theirs_i=1.0, ours_c=1.3, theirs_c=1.2):
    run = lambda i, c: {"instructions": int(i * 100), "cycles": int(c * 100), "mismatches": 0,
                        "instr_per_mac": i, "cycles_per_mac": c}
    builds = {b: {"ours": run(ours_i, ours_c), "cmsis_nn": run(theirs_i, theirs_c),
                  "ours_vs_cmsis_nn": {"instructions": ours_i / theirs_i,
                                       "cycles": ours_c / theirs_c}} for b in ("mve", "dsp")}
    return {"benchmark": "cmsis-nn-m55",
            "env": {"board": "mps3-an547", "date": "2026-01-01 00:00 UTC", "opt": "-O2",
                    "gcc": "arm-none-eabi-gcc (x) 12", "cmsis_nn": "v7.0.0",
                    "command": "python benchmarks/cmsis_nn.py --cmsis-nn DIR --m55"},
            "layers": [{"layer": name, "spec": s.describe(), "macs": 100, "builds": builds}
                       for name, s in kernels.M55_SHAPES]}


def test_refuses_a_folder_that_is_not_cmsis_nn(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH / "cmsis_nn.py"), "--cmsis-nn",
                        str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert "not a CMSIS-NN checkout" in r.stderr and str(tmp_path) in r.stderr
    assert not (tmp_path / "cmsis_nn_m55.json").exists()


@pytest.mark.parametrize("spec", [
    KernelSpec("depthwise", (6, 5, 12), 12, (3, 3), (2, 1), (1, 1, 1, 1)),
    KernelSpec("conv2d", (7, 6, 3), 5, (3, 3), (2, 2), (1, 1, 1, 1))],
    ids=["depthwise", "conv2d"])
def test_cmsis_call_gets_the_case_in_its_conventions(spec):
    """Offsets and bounds shifted by 128 (int8 = uint8 − 128), strides and padding as (w, h),
    filters in CMSIS-NN's layouts, shifts 31 − n."""
    case = random_case(spec, np.random.default_rng(3))
    raw = case.raw
    decl, call = cmsis_nn.cmsis_call(spec, raw)
    off = f"{128 - raw['zp_in']}, {raw['zp_out'] - 128}"
    act = f"{{{raw['lo'] - 128}, {raw['hi'] - 128}}}"
    if spec.op == "depthwise":
        assert f"= {{{off}, 1, {{1, 2}}, {{1, 1}}, {{1, 1}}, {act}}};" in decl
        assert "f_d = {1, 3, 3, 12}" in decl and "arm_depthwise_conv_wrapper_s8(" in call
    else:
        assert f"= {{{off}, {{2, 2}}, {{1, 1}}, {{1, 1}}, {act}}};" in decl
        assert "f_d = {5, 3, 3, 3}" in decl and "arm_convolve_wrapper_s8(" in call
    src = cmsis_nn.program(get_kernel(spec, "dsp", "cortex-m55"), case)
    shifts = src.split("cs[]")[1].split("{")[1].split("}")[0]
    assert [int(v) for v in shifts.split(",")] == (31 - np.asarray(raw["n"])).tolist()
    w = raw["w"][:, 0].transpose(1, 2, 0) if spec.op == "depthwise" else \
        raw["w"].transpose(0, 2, 3, 1)
    weights = src.split("cw[]")[1].split("{")[1].split("}")[0]
    assert [int(v) for v in weights.split(",")] == w.reshape(-1).tolist()


def test_m55_kernel_table_reads_the_measured_cmsis_nn_figures(tmp_path):
    path = tmp_path / "cmsis_nn_m55.json"
    path.write_text(json.dumps(_doc()))
    theirs = kernels.cmsis_m55(path)
    assert set(theirs) == {n for n, _ in kernels.M55_SHAPES}
    first = theirs[kernels.M55_SHAPES[0][0]]
    assert first["mve"]["instr_per_mac"] == 1.0 and first["dsp"]["cycles_per_mac"] == 1.2
    assert "--cmsis-nn DIR --m55" in first["source"] and "v7.0.0" in first["source"]
    assert kernels.cmsis_m55(tmp_path / "missing.json") == {}
    # a row as run_m55 makes it: our MVE 0.8 i/MAC, 1.3 c/MAC against CMSIS-NN's 1.0 / 1.2
    runs = [{"schedule": s, "in_bits": b, "instr_per_mac": 0.8, "cycles_per_mac": 1.3,
             "mismatches": 0} for s, _, b in kernels.M55_VARIANTS]
    row = {"layer": "pw", "macs": 100, "runs": runs, "mve_vs_dsp": 1.0, "cmsis_nn": first,
           "mve_vs_cmsis_mve": 0.8, "mve_vs_cmsis_mve_cycles": 1.3 / 1.2}
    md = kernels.markdown_m55([row], {"date": "d", "gcc": "arm-none-eabi-gcc (x) 12"})
    assert "| 1.000 | 1.200 | 1.000 | 1.200 | 0.80× | 1.08× |" in md
    assert "missed on pw (cycles)." in md and "--cmsis-nn DIR --m55" in md
    bare = {k: v for k, v in row.items() if "cmsis" not in k}
    md = kernels.markdown_m55([bare], {"date": "d", "gcc": "g"})
    assert "CMSIS-NN columns are empty" in md and "| – | – | – | – | – | – |" in md


def test_cmsis_nn_markdown_names_the_shapes_over_cmsis_nn(tmp_path):
    md = cmsis_nn.markdown(_doc())
    assert md.count("| mve |") == len(kernels.M55_SHAPES) == md.count("| dsp |")
    assert "| 0.80× |" in md and "| 1.08× |" in md
    assert "everywhere except" in md and "(cycles)" in md and "(instructions)" not in md
    assert "CMSIS_NN_USE_SINGLE_ROUNDING" in md
