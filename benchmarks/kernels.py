"""Kernel benchmark: instructions and modelled cycles on QEMU mps2-an386 (Cortex-M4).

For representative layers — the seven CMSIS-NN comparison shapes, and the patch-stage layers
of mbv2-fmnist and ImageNet MobileNetV2 run on one patch tile — it builds every layer with
TVM's default schedule (int8; as TVM emits it, and again with the loop pragma of our
schedules) and with our DSP schedule at 8/4/2-bit input activations (8-bit output), checks
every output against the integer numpy reference, and records instructions (-icount timer) and
modelled Cortex-M4 cycles (micro_project/qemu_plugin) per MAC (MACs counted densely). For the DSP kernels it also records where the instructions go
(products, requantization, padded input and loops) on a two-row slice of each layer
(tvm_quantmcu.topi.profile).

    python benchmarks/kernels.py            # writes benchmarks/results/kernels.{json,md}
    python benchmarks/kernels.py --quick    # the CMSIS-NN shapes only
    python benchmarks/kernels.py --m55      # Cortex-M55: DSP vs Helium micro-kernels
                                            # (benchmarks/results/kernels_m55.{json,md}),
                                            # with CMSIS-NN's figures measured by
                                            # benchmarks/cmsis_nn.py --cmsis-nn DIR --m55
"""
from __future__ import annotations

import argparse
import dataclasses
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
from tvm_quantmcu.topi.compute import packs_weights
from tvm_quantmcu.topi.profile import OTHER, profile, slice_spec

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


# Cortex-M55 (QEMU mps3-an547, --m55): the shapes of the Helium comparison. CMSIS-NN v7's
# figures on them (its MVE and DSP-only builds, instructions and modelled cycles) are read from
# benchmarks/cmsis_nn.py's measurement (results/cmsis_nn_m55.json).
M55_BOARD = "mps3-an547"
M55_SHAPES = [
    ("pw 56x56x16->96", KernelSpec("conv2d", (56, 56, 16), 96, (1, 1))),
    ("pw 8x8x64->64", KernelSpec("conv2d", (8, 8, 64), 64, (1, 1))),
    ("dw3x3 s1 p1 32x32x48", KernelSpec("depthwise", (32, 32, 48), 48, (3, 3), (1, 1),
                                        (1, 1, 1, 1))),
    ("conv3x3 s2 p1 64x64x3->16", KernelSpec("conv2d", (64, 64, 3), 16, (3, 3), (2, 2),
                                             (1, 1, 1, 1))),
]
CMSIS_M55 = RESULTS / "cmsis_nn_m55.json"
# (label, knobs, input bits): our DSP micro-kernels kept on the M55, and the Helium ones
M55_VARIANTS = [("dsp", {"isa": "dsp"}, 8), ("mve", {}, 8), ("mve", {}, 4), ("mve", {}, 2)]


def cmsis_m55(path: Path = CMSIS_M55) -> dict:
    """layer → CMSIS-NN's measured figures per build ("mve", "dsp": instr_per_mac,
    cycles_per_mac, mismatches) from benchmarks/cmsis_nn.py --m55, with the command and
    date; empty when it has not been run."""
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    env = doc["env"]
    return {r["layer"]: {**{b: x["cmsis_nn"] for b, x in r["builds"].items()},
                         "source": f"`{env['command']}` (CMSIS-NN {env['cmsis_nn']}, "
                                   f"{env['date']})"}
            for r in doc["layers"]}


def run_m55(rng, workdir: Path) -> list[dict]:
    """The M55 shapes under each variant, one QEMU program per case (the board has 512 KiB of
    flash for the test data), instructions and modelled Cortex-M55 cycles."""
    theirs = cmsis_m55()
    out = []
    for name, spec in M55_SHAPES:
        runs = []
        for label, knobs, ib in M55_VARIANTS:
            s = with_bits(spec, ib)
            k = get_kernel(s, "dsp", "cortex-m55", knobs)
            c = random_case(s, rng)
            r, = runner.run_qemu([runner.Case(k, c.x, c.params, c.expected, c.window)],
                                 workdir / f"m55_{len(out)}_{len(runs)}", board=M55_BOARD,
                                 timeout=1800, opt=OPT, cycles=True)
            runs.append({"schedule": label, "isa": k.isa, "in_bits": ib, "out_bits": 8,
                         "instructions": r.instructions, "mismatches": r.mismatches,
                         "instr_per_mac": r.instructions / spec.macs, "cycles": r.cycles,
                         "cycles_per_mac": r.cycles / spec.macs,
                         "scratch_bytes": k.scratch_bytes, "flash_bytes": k.flash_bytes()})
        row = {"layer": name, "spec": spec.describe(), "macs": spec.macs, "runs": runs,
               "mve_vs_dsp": runs[1]["instructions"] / runs[0]["instructions"]}
        cm = theirs.get(name)
        if cm:
            row["cmsis_nn"] = cm
            row["mve_vs_cmsis_mve"] = runs[1]["instr_per_mac"] / cm["mve"]["instr_per_mac"]
            row["mve_vs_cmsis_mve_cycles"] = (runs[1]["cycles_per_mac"]
                                              / cm["mve"]["cycles_per_mac"])
        out.append(row)
        vs = (f" ({row['mve_vs_cmsis_mve']:.2f}x CMSIS-NN MVE instructions, "
              f"{row['mve_vs_cmsis_mve_cycles']:.2f}x cycles)" if cm else "")
        print(f"{name:30s} mve {runs[1]['instr_per_mac']:.3f} i/MAC{vs}, dsp "
              f"{runs[0]['instr_per_mac']:.3f}", flush=True)
    return out


def markdown_m55(results: list[dict], env: dict) -> str:
    src = next((r["cmsis_nn"]["source"] for r in results if r.get("cmsis_nn")), None)
    lines = ["# Kernel benchmark on the Cortex-M55 (QEMU mps3-an547, Helium)", "",
             f"Generated by `benchmarks/kernels.py --m55` on {env['date']}; built with "
             f"{env['gcc'].split(' (')[0]} {OPT} -mcpu=cortex-m55. Every output checked against "
             "the integer numpy reference (mismatches column). `dsp` = our DSP micro-kernels "
             "kept on the M55 (knob `isa=\"dsp\"`), `mve` = the Helium micro-kernels "
             "(`topi/ukernels/qmcu_ukernels_mve.h`) the M55 target selects, at 8/4/2-bit "
             "inputs (8-bit outputs). i/MAC = instructions per MAC (-icount timer); c/MAC = "
             "modelled Cortex-M55 cycles per MAC (QEMU plugin, `cpu=m55`; "
             "`micro_project/qemu_plugin/README.md`). CMSIS-NN v7 columns: its MVE build and "
             "its DSP-only build on the same emulator and plugin, measured bit-exactly on "
             "identical data side by side with our MVE / DSP kernels by "
             + (src if src else "`benchmarks/cmsis_nn.py --cmsis-nn DIR --m55` (not "
                "run: the CMSIS-NN columns are empty)")
             + " (benchmarks/results/cmsis_nn_m55.md has the same-program ratios).", "",
             "| layer | MACs | dsp i/MAC | mve 8b i/MAC | mve 4b i/MAC | mve 2b i/MAC | "
             "dsp c/MAC | mve 8b c/MAC | CMSIS-NN MVE i/MAC | CMSIS-NN MVE c/MAC | "
             "CMSIS-NN DSP i/MAC | CMSIS-NN DSP c/MAC | mve ÷ CMSIS-NN MVE (instr) | "
             "mve ÷ CMSIS-NN MVE (cycles) | mve ÷ dsp | mismatches |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        by = {(x["schedule"], x["in_bits"]): x for x in r["runs"]}
        cm = r.get("cmsis_nn") or {}

        def f(key, what="instr_per_mac"):
            v = by[key].get(what)
            return "–" if v is None else f"{v:.3f}"

        def t(build, what):
            v = cm.get(build, {}).get(what)
            return "–" if v is None else f"{v:.3f}"

        def ratio(k):
            return f"{r[k]:.2f}×" if k in r else "–"
        bad = sum(x["mismatches"] for x in r["runs"])
        lines.append(f"| {r['layer']} | {r['macs']:,} | {f(('dsp', 8))} | {f(('mve', 8))} | "
                     f"{f(('mve', 4))} | {f(('mve', 2))} | {f(('dsp', 8), 'cycles_per_mac')} | "
                     f"{f(('mve', 8), 'cycles_per_mac')} | {t('mve', 'instr_per_mac')} | "
                     f"{t('mve', 'cycles_per_mac')} | {t('dsp', 'instr_per_mac')} | "
                     f"{t('dsp', 'cycles_per_mac')} | {ratio('mve_vs_cmsis_mve')} | "
                     f"{ratio('mve_vs_cmsis_mve_cycles')} | {r['mve_vs_dsp']:.2f}× | {bad} |")
    measured = [r for r in results if "mve_vs_cmsis_mve" in r]
    if measured:
        over = [f"{r['layer']} ({m})" for r in measured
                for m, k in (("instructions", "mve_vs_cmsis_mve"),
                             ("cycles", "mve_vs_cmsis_mve_cycles")) if r[k] > 1.0]
        lines += ["", "Target: at most CMSIS-NN's MVE instructions and modelled cycles per "
                  "MAC on every shape: " + (f"missed on {', '.join(over)}." if over else
                                            f"met on all {len(measured)}.")]
    return "\n".join(lines) + "\n"


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


# (label, schedule, knobs, input bits); "default" is TVM's lowering compiled as emitted,
# "default+pragma" the same with the loop pragma our schedules put in their files.
VARIANTS = [("default", "default", {}, 8), ("default+pragma", "default", {"loop_pragma": True}, 8),
            ("dsp", "dsp", {}, 8), ("dsp", "dsp", {}, 4), ("dsp", "dsp", {}, 2)]


# (activation bits, weight bits) of the packed low-bit-weight kernels (topi/wpack.py), run in
# the same QEMU program as the variants above for conv2d/dense layers; a4w8/a2w8 are the dsp
# 4b/2b rows.
WEIGHT_PAIRS = [(4, 4), (2, 4), (4, 2), (2, 2)]


def run_layer(name: str, spec: KernelSpec, cmsis: float | None, rng, workdir: Path,
              breakdown: bool = True) -> dict:
    cases, meta = [], []
    # every variant of the layer draws from the same stream: the same output zero point,
    # clamp and multipliers (the requantization's cost depends on the clamp), the
    # activations and weights in their own ranges
    seed = int(rng.integers(1 << 31))
    pairs = WEIGHT_PAIRS if spec.op in ("conv2d", "dense") else []
    for label, sched, knobs, ib in VARIANTS + [(f"dsp w{wb}", "dsp", {}, (ib, wb))
                                               for ib, wb in pairs]:
        s = with_bits(spec, ib) if isinstance(ib, int) else \
            dataclasses.replace(with_bits(spec, ib[0]), w_bits=ib[1])
        k = get_kernel(s, sched, "cortex-m4", knobs)
        c = random_case(s, np.random.default_rng(seed))
        cases.append(runner.Case(k, c.x, c.params, c.expected, c.window))
        meta.append((label, ib, k))
    res = runner.run_qemu(cases, workdir / name.replace(" ", "_").replace(">", ""),
                          board=BOARD, timeout=1800, opt=OPT, cycles=True)
    lowbit = [{"in_bits": ib[0], "w_bits": ib[1], "packed": packs_weights(k.spec),
               "instructions": r.instructions, "mismatches": r.mismatches,
               "instr_per_mac": r.instructions / spec.macs, "cycles": r.cycles,
               "cycles_per_mac": r.cycles / spec.macs}
              for (label, ib, k), r in zip(meta, res) if not isinstance(ib, int)]
    meta, res = meta[:len(VARIANTS)], res[:len(VARIANTS)]
    rows = []
    for (label, ib, k), r in zip(meta, res):
        rows.append({"schedule": label, "in_bits": ib, "out_bits": 8,
                     "instructions": r.instructions, "mismatches": r.mismatches,
                     "instr_per_mac": r.instructions / spec.macs,
                     "cycles": r.cycles, "cycles_per_mac": r.cycles / spec.macs,
                     "scratch_bytes": k.scratch_bytes, "flash_bytes": k.flash_bytes()})
    by = {(r["schedule"], r["in_bits"]): r["instructions"] for r in rows}
    d8 = by[("dsp", 8)]
    oh, ow = spec.out_hw
    out = {"layer": name, "spec": spec.describe(), "macs": spec.macs,
           "macs_per_output": spec.macs / (oh * ow * spec.out_channels), "runs": rows,
           "in_channels": spec.in_channels,
           "default_vs_dsp8": by[("default", 8)] / d8,
           "default_pragma_vs_dsp8": by[("default+pragma", 8)] / d8,
           "ratio_4bit": by[("dsp", 4)] / d8, "ratio_2bit": by[("dsp", 2)] / d8,
           "cmsis_nn_instr_per_mac": cmsis,
           "ranking_agrees": ranking_agrees(rows)}
    if lowbit:
        c8 = next(r["cycles"] for r in rows if (r["schedule"], r["in_bits"]) == ("dsp", 8))
        for x in lowbit:
            x["vs_int8"], x["cycles_vs_int8"] = x["instructions"] / d8, x["cycles"] / c8
        out["lowbit_weights"] = lowbit
    if breakdown:
        out["breakdown"] = layer_breakdown(spec)
        if lowbit:
            out["breakdown_lowbit"] = lowbit_breakdown(spec)
    return out


def ranking_agrees(rows: list[dict]) -> bool:
    """Do instructions and modelled cycles order the row's variants the same way?"""
    by_i = sorted(range(len(rows)), key=lambda i: (rows[i]["instructions"], i))
    by_c = sorted(range(len(rows)), key=lambda i: (rows[i]["cycles"], i))
    return by_i == by_c


def layer_breakdown(spec: KernelSpec) -> dict:
    """Instructions per output value by part of the DSP kernel, at 8/4/2-bit inputs, on a
    two-row slice of the layer."""
    out = {}
    for ib in (8, 4, 2):
        p = profile(slice_spec(with_bits(spec, ib)))
        if p.mismatches:
            raise RuntimeError(f"profiled kernel {p.spec.describe()} disagrees with the "
                               f"reference ({p.mismatches} bytes)")
        out[str(ib)] = {"slice": p.spec.describe(), **p.per_output()}
    return out


# (activation, weight) bits whose packed kernels are profiled by part
PROFILED_PAIRS = [(4, 4), (2, 4), (2, 2)]


def lowbit_breakdown(spec: KernelSpec) -> dict:
    """Instructions per output value by part of the packed low-bit-weight kernels (where
    they are selected), on the same two-row slice as layer_breakdown."""
    out = {}
    for ib, wb in PROFILED_PAIRS:
        s = dataclasses.replace(with_bits(spec, ib), w_bits=wb)
        if not packs_weights(s):
            continue
        p = profile(slice_spec(s))
        if p.mismatches:
            raise RuntimeError(f"profiled kernel {p.spec.describe()} disagrees with the "
                               f"reference ({p.mismatches} bytes)")
        out[f"a{ib}w{wb}"] = {"slice": p.spec.describe(), **p.per_output()}
    return out


def lowbit_parts_markdown(results: list[dict]) -> list[str]:
    """Products (the packed multiply loop with its field extraction) against int8's, and the
    shared requantization, per output value."""
    rows = [r for r in results if r.get("breakdown_lowbit") and r.get("breakdown")]
    if not rows:
        return []
    names = [f"a{a}w{w}" for a, w in PROFILED_PAIRS]
    out = ["", "### Where the instructions go (packed low-bit weights)", "",
           "Instructions per output value on the same two-row slices (`topi.profile`): "
           "*products* = `conv_lw` (the packed multiplies, drains, the fields' extraction "
           "and 2^k scaling, the activation sums) against `conv_dsp` of int8; *requant* = "
           "`requant_out`, the same function for both; ÷int8 = products over int8's "
           "products. The requantization is shared, so a cheaper one lowers both sides of "
           "the ratios above; the products column is the packed kernels' own gain.", "",
           "| layer | MACs/output | int8 products | " + " | ".join(
               f"{n} products (÷int8)" for n in names) + " | requant int8 / " + " / ".join(
               names) + " |",
           "|---|---:|---:|" + "---:|" * len(names) + "---:|"]
    for r in rows:
        b8, bl = r["breakdown"]["8"], r["breakdown_lowbit"]

        def cell(n):
            return (f"{bl[n]['products']:.1f} ({bl[n]['products'] / b8['products']:.2f})"
                    if n in bl else "–")
        rq = " / ".join(f"{bl[n]['requant']:.1f}" if n in bl else "–" for n in names)
        out.append(f"| {r['layer']} | {r['macs_per_output']:.0f} | {b8['products']:.1f} | "
                   + " | ".join(cell(n) for n in names) + f" | {b8['requant']:.1f} / {rq} |")
    return out


def markdown(results: list[dict], env: dict) -> str:
    lines = ["# Kernel benchmark (QEMU mps2-an386, Cortex-M4: instructions via -icount, "
             "modelled cycles)", "",
             f"Generated by `benchmarks/kernels.py` on {env['date']}; kernels and micro-kernels "
             f"built with {env['gcc'].split(' (')[0]} {OPT}. Every output was checked against "
             "the integer numpy reference (mismatches column); the variants of a layer share one "
             "random stream (the same output zero point, clamp and multipliers, activations "
             "and weights each in their range). Instructions per MAC count MACs "
             "densely; output activations are 8-bit. `default` = TVM's lowering of the same "
             "compute without a schedule, compiled as TVM emits it; `default+pragma` = the same "
             "C compiled with the `#pragma GCC optimize(...)` line our schedules put in their "
             "files (it helps the default too); `dsp` = our tensorized schedule. c/MAC = modelled "
             "Cortex-M4 cycles per MAC (QEMU plugin `micro_project/qemu_plugin`: the TRM's cost "
             "per instruction, zero-wait memory); *rank* = whether instructions and cycles order "
             "the row's five variants the same way.", "",
             "| layer | MACs | default i/MAC | default+pragma i/MAC | dsp 8b i/MAC | dsp 4b i/MAC "
             "| dsp 2b i/MAC | default c/MAC | dsp 8b c/MAC | dsp 4b c/MAC | dsp 2b c/MAC | "
             "rank | default÷dsp | (default+pragma)÷dsp | 4b÷8b | 2b÷8b | "
             "CMSIS-NN i/MAC | mismatches |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|"
             "---:|---:|"]
    for r in results:
        by = {(x["schedule"], x["in_bits"]): x for x in r["runs"]}

        def ipm(key, what="instr_per_mac"):
            return f"{by[key][what]:.2f}" if key in by and by[key].get(what) else "–"

        def cpm(key):
            return ipm(key, "cycles_per_mac")
        rank = {True: "agree", False: "differ"}.get(r.get("ranking_agrees"), "–")

        def f(v, p=2):
            return "–" if v is None else f"{v:.{p}f}"
        bad = sum(x["mismatches"] for x in r["runs"])
        lines.append(f"| {r['layer']} | {r['macs']:,} | {ipm(('default', 8))} | "
                     f"{ipm(('default+pragma', 8))} | {ipm(('dsp', 8))} | {ipm(('dsp', 4))} | "
                     f"{ipm(('dsp', 2))} | {cpm(('default', 8))} | {cpm(('dsp', 8))} | "
                     f"{cpm(('dsp', 4))} | {cpm(('dsp', 2))} | {rank} | "
                     f"{f(r['default_vs_dsp8'])}× | "
                     f"{f(r['default_pragma_vs_dsp8'])}× | {f(r['ratio_4bit'])} | "
                     f"{f(r['ratio_2bit'])} | {f(r['cmsis_nn_instr_per_mac'], 1)} | {bad} |")
    lines += ["", *analysis(results), *lowbit_markdown(results),
              *lowbit_parts_markdown(results)]
    return "\n".join(lines) + "\n"


def lowbit_markdown(results: list[dict]) -> list[str]:
    """The (activation, weight) bit pairs of the conv2d/dense layers against int8 (dsp 8b of
    the same run), in instructions and modelled cycles."""
    rows = [r for r in results if r.get("lowbit_weights")]
    if not rows:
        return []
    pairs = [(x["in_bits"], x["w_bits"]) for x in rows[0]["lowbit_weights"]]
    names = [f"a{a}w{w}" for a, w in pairs] + ["a4w8", "a2w8"]
    out = ["", "## Low-bit weights: (activation, weight) bits against int8", "",
           "Same QEMU run as the table above; ÷int8 = instructions (cycles) of the pair over "
           "`dsp 8b`. a4w4…a2w2 use the packed low-bit-weight micro-kernels "
           "(`topi/wpack.py`: two output channels per `SMLAD` lane) where "
           "`compute.packs_weights` selects them; cells marked *int8 w* ran the int8-weight "
           "kernel (gathered windows, one weight word per channel pair); a4w8 and a2w8 are "
           "the dsp 4b/2b rows.", "",
           "| layer | MACs/output | " + " | ".join(f"{n} i÷int8" for n in names) + " | "
           + " | ".join(f"{n} c÷int8" for n in names) + " | mismatches |",
           "|---|---:|" + "---:|" * (2 * len(names)) + "---:|"]
    for r in rows:
        lw = r["lowbit_weights"]
        by = {(x["schedule"], x["in_bits"]): x for x in r["runs"]}
        d8 = by[("dsp", 8)]

        def cell(x, key):
            return f"{x[key]:.2f}" + ("" if x.get("packed", True) else " *int8 w*")
        w8 = [{"vs_int8": by[("dsp", b)]["instructions"] / d8["instructions"],
               "cycles_vs_int8": by[("dsp", b)]["cycles"] / d8["cycles"]} for b in (4, 2)]
        bad = sum(x["mismatches"] for x in lw)
        out.append(f"| {r['layer']} | {r['macs_per_output']:.0f} | "
                   + " | ".join(cell(x, "vs_int8") for x in lw + w8) + " | "
                   + " | ".join(cell(x, "cycles_vs_int8") for x in lw + w8) + f" | {bad} |")
    return out + ["", *lowbit_targets(rows)]


# issue targets for layers with >= 16 input channels: pair -> largest ratio to int8
LOWBIT_TARGETS = {(4, 4): 0.70, (2, 4): 0.55, (2, 2): 0.55, (4, 8): 1.0, (2, 8): 1.0}


def lowbit_targets(rows: list[dict]) -> list[str]:
    """How many layers with ≥ 16 input channels meet the target ratio of each pair, in
    instructions and in modelled cycles."""
    wide = [r for r in rows if r.get("in_channels", 0) >= 16]
    if not wide:
        return []
    parts = []
    for (a, w), t in LOWBIT_TARGETS.items():
        ri, rc = [], []
        for r in wide:
            if w == 8:
                by = {(x["schedule"], x["in_bits"]): x for x in r["runs"]}
                d8 = by[("dsp", 8)]
                ri.append(by[("dsp", a)]["instructions"] / d8["instructions"])
                rc.append(by[("dsp", a)]["cycles"] / d8["cycles"])
            else:
                x = next(x for x in r["lowbit_weights"] if (x["in_bits"], x["w_bits"]) == (a, w))
                ri.append(x["vs_int8"])
                rc.append(x["cycles_vs_int8"])
        parts.append(f"a{a}w{w} ≤ {t:.2f}×: {sum(v <= t for v in ri)} of {len(wide)} in "
                     f"instructions ({_span(ri)}), {sum(v <= t for v in rc)} in cycles "
                     f"({_span(rc)})")
    return [f"Layers with ≥ 16 input channels ({len(wide)}), against the targets: "
            + "; ".join(parts) + "."]


def _dsp8(runs) -> float:
    return next(x["instr_per_mac"] for x in runs if x["schedule"] == "dsp" and x["in_bits"] == 8)


def _span(values) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if values else "–"


def cycles_summary(results: list[dict]) -> list[str]:
    """Modelled cycles per instruction of the DSP kernels, and the rows whose variants
    instructions and cycles order differently."""
    cpi = [x["cycles"] / x["instructions"] for r in results for x in r["runs"]
           if x["schedule"] == "dsp" and x.get("cycles")]
    if not cpi:
        return []
    differ = [r["layer"] for r in results if r.get("ranking_agrees") is False]
    return [f"* Modelled cycles per instruction (dsp, all widths): {_span(cpi)}; instructions "
            f"and cycles rank a row's five variants alike in {len(results) - len(differ)} of "
            f"{len(results)} rows" + (f" (they differ in {', '.join(differ)}: there the "
                                      "dsp widths lie within a few percent in instructions)"
                                      if differ else "") + "."]


def analysis(results: list[dict]) -> list[str]:
    ratios = [r["default_vs_dsp8"] for r in results]
    ratios_p = [r["default_pragma_vs_dsp8"] for r in results]
    below = [r["layer"] for r in results if r["default_vs_dsp8"] < 3]
    cm = [(r["layer"], _dsp8(r["runs"]), r["cmsis_nn_instr_per_mac"]) for r in results
          if r["cmsis_nn_instr_per_mac"]]
    over = [n for n, d, c in cm if d > c]
    r4 = [r["ratio_4bit"] for r in results]
    r2 = [r["ratio_2bit"] for r in results]
    out = ["## Reading the table", "",
           f"* DSP vs TVM's default schedule (int8): {_span(ratios)}× fewer instructions than "
           "the default as TVM emits it" + (f"; below 3× for {', '.join(below)}" if below else
                                            ", ≥ 3× for every layer")
           + f"; {_span(ratios_p)}× against the default compiled with our loop pragma.",
           "* Against CMSIS-NN (instructions/MAC, int8): " + "; ".join(
               f"{n}: {d:.2f} vs {c}" for n, d, c in cm) + "."
           + (f" Above CMSIS-NN: {', '.join(over)}." if over else
              " No more instructions than CMSIS-NN on any of the seven shapes."),
           f"* Lower-bit inputs: 4-bit ÷ 8-bit {_span(r4)}, 2-bit ÷ 8-bit {_span(r2)} "
           f"(targets ≤ 0.85 and ≤ 0.75: met for {sum(v <= 0.85 for v in r4)} and "
           f"{sum(v <= 0.75 for v in r2)} of {len(results)} layers). Why, below.",
           *cycles_summary(results), "",
           "## Where the instructions go (DSP schedule)", "",
           "Instructions per output value, measured by part on a two-row slice of each layer "
           "(`tvm_quantmcu.topi.profile`: every executed instruction of the kernel attributed "
           "to its function): *products* = the inner products (`conv_dsp`/`dw_dsp`; also per "
           "MAC), *requant* = requantization, clamp and packing (`requant_out`), *window* = the "
           "generated kernel around them (padded input rows, zeroing the accumulators, loops, "
           "calls).", "",
           "| layer | MACs per output | products 8b / 4b / 2b | products per MAC 8b / 4b / 2b "
           "| requant 8b / 4b / 2b | window 8b / 4b / 2b |",
           "|---|---:|---:|---:|---:|---:|"]
    per_mac = {k: [] for k in ("8", "4", "2")}
    for r in results:
        b = r.get("breakdown")
        if not b:
            continue
        k = r["macs_per_output"]
        for bits in per_mac:
            per_mac[bits].append(b[bits]["products"] / k)

        def cols(part, scale=1.0, p=1):
            return " / ".join(f"{b[x][part] / scale:.{p}f}" for x in ("8", "4", "2"))
        out.append(f"| {r['layer']} | {k:g} | {cols('products')} | {cols('products', k, 2)} | "
                   f"{cols('requant')} | {cols(OTHER)} |")
    if per_mac["8"]:
        rq = [r["breakdown"][b]["requant"] for r in results if r.get("breakdown")
              for b in per_mac]
        out += ["", "Products per MAC: " + ", ".join(
            f"{b}-bit {_span(v)}" for b, v in per_mac.items())
            + f"; requantization {_span(rq)} instructions per output value at every width."]
    out += ["", *INPUT_WIDTHS]
    return out


INPUT_WIDTHS = [
    "### What 4- and 2-bit inputs can gain on this core (8-bit weights)",
    "",
    "The Cortex-M4 has no multiply narrower than 16 bits: with 8-bit weights no two products "
    "share a lane, so `SMLAD` does two MACs whatever the width of the activations, and the "
    "multiplies dominate. What the width can change is the unpacking. At 8 bits each channel "
    "pair's pass unpacks every activation word again (`UXTB16`, plain and `ROR #8`: per 16 "
    "MACs of two pixels × two channels 4 loads, 4 `UXTB16`, 4 `SXTB16`, 8 `SMLAD`). conv2d "
    "windows of 4/2-bit activations read a word at a time are instead *widened* once per call "
    "(`widen`: per packed word and pixel one load, then one `AND` with a shifted register and "
    "one store per lane pair, the weights being stored in the matching lane order, "
    "`compute.lane_pos`), and the channel-pair loop, in assembly, reads the lane pairs as "
    "words: per 16 MACs 6 loads in one run, 4 `SXTB16`, 8 `SMLAD` (18 instructions against "
    "20, and loads that pipeline). The widening costs about one instruction per value and "
    "pixel, paid once for all output channels: the gain grows with the output channels (16: "
    "about parity; 64–96: 0.85–0.88× of 8 bits' instructions). Where a layer's channel count "
    "is not a multiple of a word (8 channels at 4 bits, 16 at 2 bits) the last word of each "
    "pixel has empty lanes: the 24-channel pointwise layer mbv2-fmnist l3 multiplies a third "
    "more lanes at 2 bits than at 8. Convolutions with fewer channels than a word are gathered "
    "value by value (im2col of one pixel), which costs about the same at every width. "
    "Requantization is per output value and independent of the input width. Lower-bit "
    "activations also pay off in memory (2×/4× smaller feature maps, which the patch planner "
    "budgets).",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CMSIS-NN comparison shapes only")
    ap.add_argument("--out", default=str(RESULTS / "kernels"), help="output path stem")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-breakdown", action="store_true",
                    help="skip the per-part instruction profile of the DSP kernels")
    ap.add_argument("--from-json", action="store_true",
                    help="only rewrite the markdown from an existing JSON result")
    ap.add_argument("--m55", action="store_true",
                    help="the Cortex-M55 comparison instead (QEMU mps3-an547, DSP and Helium "
                         "micro-kernels): writes benchmarks/results/kernels_m55.{json,md}")
    args = ap.parse_args(argv)
    if args.m55:
        return main_m55(args)
    out = Path(args.out)
    if args.from_json:
        doc = json.loads(out.with_suffix(".json").read_text())
        out.with_suffix(".md").write_text(markdown(doc["layers"], doc["env"]))
        return 0
    rng = np.random.default_rng(args.seed)
    layers = [(n, s, c) for n, s, c in CMSIS_SHAPES]
    if not args.quick:
        layers += [(n, s, None) for n, s in patch_stage_layers("mbv2-fmnist", 7, 2)]
        layers += [(n, s, None) for n, s in patch_stage_layers("mbv2-imagenet", 6, 4)]
    results = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        for name, spec, cmsis in layers:
            r = run_layer(name, spec, cmsis, rng, Path(d), breakdown=not args.no_breakdown)
            results.append(r)
            print(f"{name:40s} dsp8 {_dsp8(r['runs']):.2f} i/MAC, default/dsp "
                  f"{r['default_vs_dsp8']:.2f}x (pragma {r['default_pragma_vs_dsp8']:.2f}x), "
                  f"4b {r['ratio_4bit']:.2f}, 2b {r['ratio_2bit']:.2f}", flush=True)
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0]
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "board": BOARD,
           "opt": OPT, "gcc": gcc, "python": platform.python_version(),
           "seconds": round(time.time() - t0, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"env": env, "layers": results}, indent=1))
    out.with_suffix(".md").write_text(markdown(results, env))
    bad = sum(x["mismatches"] for r in results
              for x in r["runs"] + r.get("lowbit_weights", []))
    print(f"wrote {out}.json and {out}.md ({bad} mismatching outputs)")
    return 1 if bad else 0


def main_m55(args) -> int:
    out = RESULTS / "kernels_m55" if args.out == str(RESULTS / "kernels") else Path(args.out)
    if args.from_json:
        doc = json.loads(out.with_suffix(".json").read_text())
        out.with_suffix(".md").write_text(markdown_m55(doc["layers"], doc["env"]))
        return 0
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        results = run_m55(np.random.default_rng(args.seed), Path(d))
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0]
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "board": M55_BOARD,
           "opt": OPT, "gcc": gcc, "python": platform.python_version(),
           "seconds": round(time.time() - t0, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"benchmark": "kernels-m55", "env": env,
                                                    "layers": results}, indent=1))
    out.with_suffix(".md").write_text(markdown_m55(results, env))
    bad = sum(x["mismatches"] for r in results for x in r["runs"])
    print(f"wrote {out}.json and {out}.md ({bad} mismatching outputs)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
