"""Narrow sub-byte weights with 8-bit activations: what storing 4/2-bit weights at their width
costs in time and saves in flash, on QEMU mps2-an386 (Cortex-M4).

For the layer-wise layers of mbv2-fmnist (whole 8×8 / 4×4 tensors, where most of its weights
are) and a 3×3 convolution, every layer is built with our DSP schedule at int8 weights and at
4/2-bit weights (stored narrow: topi/wnib.py, qmcu_conv_wn), each output checked against the
integer reference; rows give instructions (-icount timer) and modelled Cortex-M4 cycles
(micro_project/qemu_plugin) and the bytes the layer's weight array takes in flash.

    python benchmarks/narrow_weights.py   # writes benchmarks/results/narrow_weights.{json,md}
"""
from __future__ import annotations

import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from tvm_quantmcu.topi import KernelSpec, get_kernel, runner
from tvm_quantmcu.topi.cases import random_case
from tvm_quantmcu.topi.compute import stores_narrow_weights
from tvm_quantmcu.topi.params import stored_bytes

RESULTS = Path(__file__).resolve().parent / "results"
BOARD = "mps2-an386"
LAYERS = [
    ("pw 8x8x64->256 (l20)", KernelSpec("conv2d", (8, 8, 64), 256, (1, 1))),
    ("pw 8x8x256->64 (l22)", KernelSpec("conv2d", (8, 8, 256), 64, (1, 1))),
    ("pw 4x4x96->384 (l27)", KernelSpec("conv2d", (4, 4, 96), 384, (1, 1))),
    ("pw 4x4x384->96 (l29)", KernelSpec("conv2d", (4, 4, 384), 96, (1, 1))),
    ("conv3x3 9x9x16->32", KernelSpec("conv2d", (9, 9, 16), 32, (3, 3))),
    ("dense 256->10 (l33)", KernelSpec("dense", (1, 1, 256), 10)),
]
W_BITS = (8, 4, 2)


def main() -> None:
    rng = np.random.default_rng(0)
    cases, keys = [], []
    for name, base in LAYERS:
        for wb in W_BITS:
            spec = dataclasses.replace(base, w_bits=wb)
            assert wb == 8 or stores_narrow_weights(spec), spec.describe()
            k = get_kernel(spec, "dsp", "cortex-m4")
            c = random_case(spec, rng)
            cases.append(runner.Case(k, c.x, c.params, c.expected, c.window))
            keys.append((name, spec, stored_bytes(c.params.w)))
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        res = runner.run_qemu(cases, d, board=BOARD, timeout=900)
    rows = []
    for (name, spec, wbytes), r in zip(keys, res):
        rows.append({"layer": name, "spec": spec.describe(), "w_bits": spec.w_bits,
                     "macs": spec.macs, "mismatches": int(r.mismatches),
                     "instructions": r.instructions, "cycles": r.cycles,
                     "weight_bytes": wbytes})
    for r in rows:
        base = next(b for b in rows if b["layer"] == r["layer"] and b["w_bits"] == 8)
        r["instructions_vs_int8"] = round(r["instructions"] / base["instructions"], 3)
        r["cycles_vs_int8"] = (round(r["cycles"] / base["cycles"], 3)
                               if r["cycles"] and base["cycles"] else None)
        r["weight_bytes_vs_int8"] = round(r["weight_bytes"] / base["weight_bytes"], 3)
    out = {"benchmark": "narrow_weights", "board": BOARD, "rows": rows,
           "env": {"python": platform.python_version(), "seconds": round(time.time() - t0, 1)}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "narrow_weights.json").write_text(json.dumps(out, indent=1) + "\n")
    md = ["# Narrow sub-byte weights with 8-bit activations (QEMU mps2-an386)", "",
          "DSP schedule, 8-bit activations in and out; 4/2-bit weights stored at their width "
          "(`topi/wnib.py`). Ratios against int8 weights of the same layer, measured side by "
          "side in one QEMU run. Weight bytes: the layer's weight array in flash (with the "
          "per-channel exponents of the narrow layout).", "",
          "| layer | w | mismatches | instructions | vs int8 | cycles | vs int8 | weight B "
          "| vs int8 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['layer']} | {r['w_bits']} | {r['mismatches']} | "
                  f"{r['instructions']:,} | {r['instructions_vs_int8']:.3f}× | "
                  f"{r['cycles'] or 0:,} | {r['cycles_vs_int8'] or 0:.3f}× | "
                  f"{r['weight_bytes']:,} | {r['weight_bytes_vs_int8']:.3f}× |")
    (RESULTS / "narrow_weights.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
