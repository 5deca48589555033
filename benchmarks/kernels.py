"""Kernel benchmark: instructions on QEMU mps2-an386 (Cortex-M4, -icount timing).

For representative layers — the seven CMSIS-NN comparison shapes, and the patch-stage layers
of mbv2-fmnist and ImageNet MobileNetV2 run on one patch tile — it builds every layer with
TVM's default schedule (int8) and with our DSP schedule at 8/4/2-bit input activations (8-bit
output), checks every output against the integer numpy reference, and records instructions
and instructions per MAC (MACs counted densely).

    python benchmarks/kernels.py            # writes benchmarks/results/kernels.{json,md}
    python benchmarks/kernels.py --quick    # the CMSIS-NN shapes only
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tvm_quantmcu.topi import KernelSpec, get_kernel, runner
from tvm_quantmcu.topi.cases import random_case

RESULTS = Path(__file__).resolve().parent / "results"
BOARD = "mps2-an386"
OPT = "-O2"

# (name, spec, CMSIS-NN v7 instructions/MAC measured on the same emulator)
CMSIS_SHAPES = [
    ("pw 32x32x16->48", KernelSpec("conv2d", (32, 32, 16), 48, (1, 1)), 3.6),
    ("pw 8x8x64->64", KernelSpec("conv2d", (8, 8, 64), 64, (1, 1)), 2.0),
    ("pw 56x56x16->96", KernelSpec("conv2d", (56, 56, 16), 96, (1, 1)), 3.6),
    ("dw3x3 s1 32x32x48", KernelSpec("depthwise", (32, 32, 48), 48, (3, 3), (1, 1),
                                     (1, 1, 1, 1)), 7.3),
    ("dw3x3 s2 32x32x48", KernelSpec("depthwise", (32, 32, 48), 48, (3, 3), (2, 2),
                                     (0, 0, 1, 1)), 7.3),
    ("conv3x3 s2 64x64x1->16", KernelSpec("conv2d", (64, 64, 1), 16, (3, 3), (2, 2),
                                          (0, 0, 1, 1)), 9.6),
    ("conv3x3 s2 64x64x3->16", KernelSpec("conv2d", (64, 64, 3), 16, (3, 3), (2, 2),
                                          (0, 0, 1, 1)), 4.5),
]


def patch_stage_layers(model: str, n_layers: int, grid: int) -> list[tuple[str, KernelSpec]]:
    """The first conv/depthwise/pointwise layers of a zoo model, each on a top-left patch
    tile of a grid×grid split of its output (input window = tile's receptive field)."""
    from tvm_quantmcu import frontend, models
    mi = models.info(model)
    _, graph = frontend.import_model(models.get(model, pretrained=False), mi.input_shape)
    out = []
    for l in graph.layers:
        if len(out) == n_layers:
            break
        if l.op != "conv2d":
            continue
        c, h, w = graph.shapes[l.inputs[0]]
        oc, oh, ow = graph.shapes[l.output]
        th, tw = math.ceil(oh / grid), math.ceil(ow / grid)
        kh, kw = l.ksize()
        sh, sw = l.stride
        t, le = l.padding[0], l.padding[1]
        ih, iw = (th - 1) * sh + kh - t, (tw - 1) * sw + kw - le
        op = "depthwise" if l.is_depthwise else "conv2d"
        spec = KernelSpec(op, (ih, iw, c), oc, (kh, kw), (sh, sw), (t, le, 0, 0))
        out.append((f"{model} {l.name} {l.kind} tile {th}x{tw}", spec))
    return out


def with_bits(spec: KernelSpec, in_bits: int, out_bits: int = 8) -> KernelSpec:
    return KernelSpec(spec.op, spec.in_shape, spec.out_channels, spec.kernel, spec.stride,
                      spec.padding, in_bits, out_bits)


def run_layer(name: str, spec: KernelSpec, cmsis: float | None, rng, workdir: Path,
              schedules=("default", "dsp"), bits=(8, 4, 2)) -> dict:
    variants = [("default", 8)] if "default" in schedules else []
    variants += [("dsp", b) for b in bits] + ([("portable", 8)] if "portable" in schedules
                                              else [])
    cases, meta = [], []
    for sched, ib in variants:
        s = with_bits(spec, ib)
        k = get_kernel(s, sched, "cortex-m4")
        c = random_case(s, rng)
        cases.append(runner.Case(k, c.x, c.params, c.expected, c.window))
        meta.append((sched, ib, k))
    res = runner.run_qemu(cases, workdir / name.replace(" ", "_").replace(">", ""),
                          board=BOARD, timeout=900, opt=OPT)
    rows = []
    for (sched, ib, k), r in zip(meta, res):
        rows.append({"schedule": sched, "in_bits": ib, "out_bits": 8,
                     "instructions": r.instructions, "mismatches": r.mismatches,
                     "instr_per_mac": r.instructions / spec.macs,
                     "scratch_bytes": k.scratch_bytes, "flash_bytes": k.flash_bytes()})
    by = {(r["schedule"], r["in_bits"]): r for r in rows}
    d8 = by[("dsp", 8)]["instructions"]
    out = {"layer": name, "spec": spec.describe(), "macs": spec.macs, "runs": rows,
           "dsp8_vs_default": (by[("default", 8)]["instructions"] / d8
                               if ("default", 8) in by else None),
           "ratio_4bit": by[("dsp", 4)]["instructions"] / d8 if ("dsp", 4) in by else None,
           "ratio_2bit": by[("dsp", 2)]["instructions"] / d8 if ("dsp", 2) in by else None,
           "cmsis_nn_instr_per_mac": cmsis, "xpad_values": xpad_elements(spec)}
    return out


def markdown(results: list[dict], env: dict) -> str:
    lines = ["# Kernel benchmark (QEMU mps2-an386, Cortex-M4, instructions via -icount)", "",
             f"Generated by `benchmarks/kernels.py` on {env['date']}; kernels and micro-kernels "
             f"built with arm-none-eabi-gcc {OPT}. Every output was checked against the integer "
             "numpy reference (mismatches column). Instructions per MAC count MACs densely. "
             "`default` = TVM's lowering of the same compute without a schedule; `dsp` = our "
             "tensorized schedule. Output activations are 8-bit.", "",
             "| layer | MACs | default i/MAC | dsp 8b i/MAC | dsp 4b i/MAC | dsp 2b i/MAC | "
             "default÷dsp | 4b÷8b | 2b÷8b | CMSIS-NN i/MAC | mismatches |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        by = {(x["schedule"], x["in_bits"]): x for x in r["runs"]}

        def ipm(key):
            return f"{by[key]['instr_per_mac']:.2f}" if key in by else "–"

        def f(v, p=2):
            return "–" if v is None else f"{v:.{p}f}"
        bad = sum(x["mismatches"] for x in r["runs"])
        lines.append(f"| {r['layer']} | {r['macs']:,} | {ipm(('default', 8))} | "
                     f"{ipm(('dsp', 8))} | {ipm(('dsp', 4))} | {ipm(('dsp', 2))} | "
                     f"{f(r['dsp8_vs_default'])}× | {f(r['ratio_4bit'])} | "
                     f"{f(r['ratio_2bit'])} | {f(r['cmsis_nn_instr_per_mac'], 1)} | {bad} |")
    lines += ["", *analysis(results)]
    return "\n".join(lines) + "\n"


def xpad_elements(spec: KernelSpec) -> int:
    """Values the dsp schedule unpacks: the padded rows of every output row (KH × PW × C)."""
    oh, ow = spec.out_hw
    kh, kw = spec.kernel
    pw = (ow - 1) * spec.stride[1] + kw
    return oh * kh * pw * spec.in_channels


def _dsp8(runs) -> float:
    return next(x["instr_per_mac"] for x in runs if x["schedule"] == "dsp" and x["in_bits"] == 8)


def analysis(results: list[dict]) -> list[str]:
    ratios = [r["dsp8_vs_default"] for r in results if r["dsp8_vs_default"]]
    cm = [(r["layer"], r["runs"], r["cmsis_nn_instr_per_mac"]) for r in results
          if r["cmsis_nn_instr_per_mac"]]
    out = ["## Reading the table", "",
           f"* DSP vs TVM default schedule (int8): {min(ratios):.2f}× to {max(ratios):.2f}× "
           "fewer instructions. Both are compiled from the same generated-C prelude (the "
           "`unswitch-loops`/`unroll-loops` pragma helps the default schedule too).",
           "* Against CMSIS-NN (instructions/MAC, int8): " + "; ".join(
               f"{n}: {_dsp8(runs):.2f} vs {c}" for n, runs, c in cm) + ".", "",
           "### Why 4- and 2-bit inputs are not faster on this core", "",
           "The inner products widen both operands to 16-bit lanes and run one `SMLAD` per two "
           "MACs whatever the input width (a 4-bit value still occupies a 16-bit lane: the M4 "
           "has no narrower multiply), and requantization is per output value. The input width "
           "only changes the `xpad` stage, which unpacks every value of the padded rows into "
           "int16: at 8 bits a byte copy, at 4/2 bits a load, a channel-dependent shift and a "
           "mask (the schedule unrolls the values of one packed byte). The generated kernels of "
           "the three widths differ only in that stage, so the instruction difference is the "
           "unpack cost:", "",
           "| layer | xpad values | extra instr/value at 4b | at 2b | 8-bit instr/value |",
           "|---|---:|---:|---:|---:|"]
    for r in results:
        by = {(x["schedule"], x["in_bits"]): x["instructions"] for x in r["runs"]}
        if ("dsp", 4) not in by:
            continue
        n = r.get("xpad_values")
        if not n:
            continue
        d4 = (by[("dsp", 4)] - by[("dsp", 8)]) / n
        d2 = (by[("dsp", 2)] - by[("dsp", 8)]) / n
        out.append(f"| {r['layer']} | {n:,} | {d4:+.2f} | {d2:+.2f} | "
                   f"{by[('dsp', 8)] / n:.1f} |")
    def span(kind, key):
        v = [r[key] for r in results if kind in r["layer"] and r[key]]
        return f"{min(v):.2f}–{max(v):.2f}" if v else "–"
    out += ["", f"Measured ratios to 8 bits: depthwise 4-bit {span('dw', 'ratio_4bit')} / "
            f"{span('depthwise', 'ratio_4bit')} (CMSIS shapes / patch layers), 2-bit "
            f"{span('dw', 'ratio_2bit')} / {span('depthwise', 'ratio_2bit')}; pointwise 4-bit "
            f"{span('pw', 'ratio_4bit')} / {span('pointwise', 'ratio_4bit')}, 2-bit "
            f"{span('pw', 'ratio_2bit')} / {span('pointwise', 'ratio_2bit')}. The targets "
            "(≤ 0.85 at 4 bits, ≤ 0.75 at 2 bits) are not reached on this core. Depthwise "
            "layers unpack each input value about KH times (once per output row that reads "
            "it) for only 9 MACs per output, so the unpack weighs most there; pointwise layers "
            "unpack each value once for OC MACs. The 8-bit kernels were not slowed down: all "
            "widths share the same micro-kernels. Lower-bit activations do pay off in memory "
            "(2×/4× smaller feature maps, which the patch planner budgets).", "",
            "Open anomaly: the pointwise layers with 16 input channels pay 10–26 extra "
            "instructions per value at 4 bits (others about 0.5): the unpack loop GCC emits for "
            "that shape is poor; not investigated further."]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CMSIS-NN comparison shapes only")
    ap.add_argument("--out", default=str(RESULTS / "kernels"), help="output path stem")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-json", action="store_true",
                    help="only rewrite the markdown from an existing JSON result")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.from_json:
        doc = json.loads(out.with_suffix(".json").read_text())
        out.with_suffix(".md").write_text(markdown(doc["layers"], doc["env"]))
        return 0
    rng = np.random.default_rng(args.seed)
    layers = [(n, s, c) for n, s, c in CMSIS_SHAPES]
    if not args.quick:
        layers += [(n, s, None) for n, s in patch_stage_layers("mbv2-fmnist", 6, 2)]
        layers += [(n, s, None) for n, s in patch_stage_layers("mbv2-imagenet", 6, 4)]
    results = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        for name, spec, cmsis in layers:
            r = run_layer(name, spec, cmsis, rng, Path(d))
            results.append(r)
            by = {(x["schedule"], x["in_bits"]): x for x in r["runs"]}
            print(f"{name:48s} dsp8 {by[('dsp', 8)]['instr_per_mac']:.2f} i/MAC, "
                  f"default/dsp {r['dsp8_vs_default']:.2f}x, 4b {r['ratio_4bit']:.2f}, "
                  f"2b {r['ratio_2bit']:.2f}", flush=True)
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0]
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "board": BOARD,
           "opt": OPT, "gcc": gcc, "python": platform.python_version(),
           "seconds": round(time.time() - t0, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"env": env, "layers": results}, indent=1))
    out.with_suffix(".md").write_text(markdown(results, env))
    bad = sum(x["mismatches"] for r in results for x in r["runs"])
    print(f"wrote {out}.json and {out}.md ({bad} mismatching outputs)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
