"""CMSIS-NN side by side with our kernels on QEMU: instructions and modelled cycles.

For each comparison shape of the kernel benchmark it builds one program holding our kernel and
CMSIS-NN's int8 wrapper (``arm_convolve_wrapper_s8`` / ``arm_depthwise_conv_wrapper_s8``,
which pick the kernel TFLM would run) on identical data — the same input, weights, bias,
multipliers and shifts — runs it on QEMU under ``-icount`` with the cycles plugin, and checks
both outputs byte for byte against the integer numpy reference.

    python benchmarks/cmsis_nn.py --cmsis-nn DIR --m55   # Cortex-M55 (QEMU mps3-an547)
    python benchmarks/cmsis_nn.py --cmsis-nn DIR --m4    # Cortex-M4 (QEMU mps2-an386)

DIR is your CMSIS-NN checkout (https://github.com/ARM-software/CMSIS-NN, measured with tag
v7.0.0); its ``Include/`` and the int8 sources of ``Source/`` are compiled for the board's CPU
with the flags of our kernels (``-O2``). Nothing of it is copied into the results or the
repository. ``--m55`` measures two builds per shape: Helium (CMSIS-NN's MVE code, our MVE
micro-kernels) and DSP-only (CMSIS-NN compiled with ``-mcpu=cortex-m55+nomve``, our DSP
micro-kernels, knob ``isa="dsp"``); ``--m4`` the DSP build on the Cortex-M4 board. Results go to
``benchmarks/results/cmsis_nn_{m55,m4}.{json,md}``; ``benchmarks/kernels.py`` reads them for
its CMSIS-NN columns.

Rounding: CMSIS-NN is compiled with ``CMSIS_NN_USE_SINGLE_ROUNDING``. Its requantization then
computes round-half-up(acc·M / 2^n) — our integer semantics (shared/DESIGN.md §4), with its
shift = 31 − n — so its int8 outputs are our uint8 outputs minus 128 and one expected output
checks both (input_offset = 128 − zp_in, output_offset = zp_out − 128, activation bounds
lo − 128 … hi − 128). Single rounding is also the cheaper of CMSIS-NN's two requantizations.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kernels import BOARD, CMSIS_SHAPES, M55_BOARD, M55_SHAPES, OPT
from micro_project import qemu
from tvm_quantmcu.topi import KernelSpec, get_kernel
from tvm_quantmcu.topi.cases import random_case

RESULTS = Path(__file__).resolve().parent / "results"
# (label, extra CPU flags for CMSIS-NN, our knobs) per board
BUILDS = {
    M55_BOARD: [("mve", (), {}), ("dsp", ("-mcpu=cortex-m55+nomve",), {"isa": "dsp"})],
    BOARD: [("dsp", (), {})],
}
SCRATCH_BYTES = 256 * 1024        # CMSIS-NN's context buffer (im2col); checked on the device
BIG = 64 * 1024                   # arrays above this go to the boards' large RAM region
SKIP = ("_f16", "_f32", "_s4", "lstm", "svdf")       # and int16-only sources


class CmsisNNError(RuntimeError):
    pass


def cmsis_sources(root: Path) -> list[Path]:
    """The int8 convolution sources and the support functions they use."""
    conv = sorted((root / "Source" / "ConvolutionFunctions").glob("*s8*.c"))
    support = sorted((root / "Source" / "NNSupportFunctions").glob("*.c")) + sorted(
        (root / "Source" / "TransposeFunctions").glob("*s8*.c"))     # the depthwise wrapper
    srcs = [p for p in conv + support if not any(s in p.name for s in SKIP)
            and ("s8" in p.name or "s16" not in p.name)]
    if not (root / "Include" / "arm_nnfunctions.h").is_file() or not srcs:
        raise CmsisNNError(f"{root} is not a CMSIS-NN checkout (no Include/arm_nnfunctions.h "
                           "and Source/ConvolutionFunctions/*s8*.c); pass the repository's "
                           "top folder, e.g. a clone of github.com/ARM-software/CMSIS-NN")
    return srcs


def cmsis_version(root: Path) -> str:
    """The checkout's tag (or commit); the folder's name when it is not a git checkout."""
    v = subprocess.run(["git", "-C", str(root), "describe", "--tags", "--always"],
                       capture_output=True, text=True).stdout.strip()
    return v or root.name


def cmsis_library(root: Path, board: qemu.Board, cpu_flags: tuple, opt: str,
                  out: Path) -> Path:
    """CMSIS-NN's int8 sources compiled for the board (plus `cpu_flags`) into a static
    library in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in cmsis_sources(root):
        obj = out / (src.stem + ".o")
        cmd = ["arm-none-eabi-gcc", *board.cflags, *cpu_flags, "-mthumb", opt, "-std=gnu11",
               "-ffunction-sections", "-fdata-sections", "-DCMSIS_NN_USE_SINGLE_ROUNDING",
               f"-I{root / 'Include'}", "-c", str(src), "-o", str(obj)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode:
            raise CmsisNNError(f"compiling {src} failed:\n{p.stderr.strip()}")
        objs.append(str(obj))
    lib = out / "libcmsis_nn.a"
    subprocess.run(["arm-none-eabi-ar", "rcs", str(lib), *objs], check=True)
    return lib


def _array(name: str, ctype: str, a, big: bool = False, const: bool = True) -> str:
    vals = ",".join(str(int(v)) for v in np.asarray(a).reshape(-1))
    sec = ', section(".bigram")' if big else ""
    return (f"static {'const ' if const else ''}{ctype} {name}[] "
            f"__attribute__((aligned(16){sec})) = {{{vals}}};\n")


def cmsis_call(spec: KernelSpec, raw: dict) -> tuple[str, str]:
    """(declarations, call) of CMSIS-NN's wrapper for `spec` on the arrays cx (input),
    cw, cb, cm, cs, with ctx set up, writing ybuf; the call's status in `st`."""
    h, w, c = spec.in_shape
    oh, ow = spec.out_hw
    kh, kw = spec.kernel
    sh, sw = spec.stride
    pt, pl = spec.padding[0], spec.padding[1]
    oc = spec.out_channels
    act = f"{{{raw['lo'] - 128}, {raw['hi'] - 128}}}"
    common = (f"{128 - raw['zp_in']}, {raw['zp_out'] - 128}")
    dims = (f"    const cmsis_nn_dims in_d = {{1, {h}, {w}, {c}}}, "
            f"out_d = {{1, {oh}, {ow}, {oc}}}, b_d = {{1, 1, 1, {oc}}};\n"
            "    cmsis_nn_per_channel_quant_params qp = {(int32_t *)cm, (int32_t *)cs};\n")
    if spec.op == "depthwise":
        decl = dims + (f"    const cmsis_nn_dims f_d = {{1, {kh}, {kw}, {c}}};\n"
                       f"    const cmsis_nn_dw_conv_params cp = {{{common}, 1, {{{sw}, {sh}}}, "
                       f"{{{pl}, {pt}}}, {{1, 1}}, {act}}};\n"
                       "    int32_t need = arm_depthwise_conv_wrapper_s8_get_buffer_size("
                       "&cp, &in_d, &f_d, &out_d);\n")
        call = ("st = arm_depthwise_conv_wrapper_s8(&ctx, &cp, &qp, &in_d, cx, &f_d, cw, &b_d, "
                "cb, &out_d, (int8_t *)ybuf);")
    else:
        decl = dims + (f"    const cmsis_nn_dims f_d = {{{oc}, {kh}, {kw}, {c}}};\n"
                       f"    const cmsis_nn_conv_params cp = {{{common}, {{{sw}, {sh}}}, "
                       f"{{{pl}, {pt}}}, {{1, 1}}, {act}}};\n"
                       "    int32_t need = arm_convolve_wrapper_s8_get_buffer_size("
                       "&cp, &in_d, &f_d, &out_d);\n")
        call = ("st = arm_convolve_wrapper_s8(&ctx, &cp, &qp, &in_d, cx, &f_d, cw, &b_d, cb, "
                "&out_d, (int8_t *)ybuf);")
    return decl, call


def program(kernel, case) -> str:
    """main(): our kernel, then CMSIS-NN's, each timed alone (regions 1 and 2 after the empty
    region 0) and checked against the expected bytes: ``case <0|1> <mismatches> <ticks>``."""
    spec, raw = case.spec, case.raw
    w_, b_, m_, n_, q_ = case.params.arrays()
    e = case.expected
    ny, nx = len(e), case.x.size
    if spec.op == "depthwise":
        cw = raw["w"][:, 0].transpose(1, 2, 0)           # [1, KH, KW, C]
    else:
        cw = raw["w"].transpose(0, 2, 3, 1)              # OHWI
    h, w, _ = spec.in_shape
    win = case.window
    decl, call = cmsis_call(spec, raw)
    return (
        "#include <stdint.h>\n#include <string.h>\n#include \"hal.h\"\n"
        "#include \"arm_nnfunctions.h\"\n"
        f"void {kernel.name}(void*, void*, void*, void*, void*, void*, void*, int32_t, "
        "int32_t, int32_t, int32_t);\n"
        + _array("x", "uint8_t", case.x) + _array("w", "int8_t", w_)
        + _array("b", "int32_t", b_) + _array("m", "int32_t", m_)
        + _array("n", "int32_t", n_) + _array("q", "int32_t", q_)
        + _array("e", "uint8_t", e)
        + _array("cw", "int8_t", cw) + _array("cb", "int32_t", raw["bias"])
        + _array("cm", "int32_t", raw["M"]) + _array("cs", "int32_t", 31 - np.asarray(raw["n"]))
        + f"static uint8_t ybuf[{ny + 16}] __attribute__((aligned(16)"
        + (', section(".bigram")' if ny > BIG else "") + "));\n"
        + f"static int8_t cx[{nx + 16}] __attribute__((aligned(16)"
        + (', section(".bigram")' if nx > BIG else "") + "));\n"
        + f"static int8_t scratch[{SCRATCH_BYTES}] __attribute__((aligned(16), "
          "section(\".bigram\")));\n"
        + "static void report(int i, int bad, uint32_t t) {\n"
          "    hal_puts(\"case \"); hal_put_u32(i); hal_puts(\" \"); hal_put_u32(bad);\n"
          "    hal_puts(\" \"); hal_put_u32(t); hal_puts(\"\\n\");\n}\n"
        + "int main(void) {\n    int bad = 0, failures = 0;\n"
          "    uint32_t t0 = hal_timer_read();\n"
          "    uint32_t overhead = hal_timer_read() - t0;\n"
        + f"    memset(ybuf, 0xA5, {ny});\n    t0 = hal_timer_read();\n"
        + f"    {kernel.name}((void*)x, (void*)w, (void*)b, (void*)m, (void*)n, (void*)q, ybuf, "
          f"{win[0]}, {win[1]}, {win[2]}, {win[3]});\n"
        + "    uint32_t t = hal_timer_read() - t0 - overhead;\n"
        + f"    for (int j = 0; j < {ny}; j++) bad += ybuf[j] != e[j];\n"
          "    failures += bad != 0;\n    report(0, bad, t);\n"
        + f"    for (int j = 0; j < {nx}; j++) cx[j] = (int8_t)(x[j] ^ 0x80);\n"
        + decl
        + f"    if (need > {SCRATCH_BYTES}) {{ hal_puts(\"scratch \"); hal_put_u32(need); "
          "hal_puts(\"\\n\"); return 2; }\n"
          "    memset(scratch, 0, need > 0 ? need : 0);\n"
          "    cmsis_nn_context ctx = {scratch, need};\n"
          "    arm_cmsis_nn_status st;\n"
        + f"    memset(ybuf, 0xA5, {ny});\n    t0 = hal_timer_read();\n"
        + f"    {call}\n"
        + "    t = hal_timer_read() - t0 - overhead;\n    bad = 0;\n"
        + f"    for (int j = 0; j < {ny}; j++) bad += (uint8_t)(ybuf[j] ^ 0x80) != e[j];\n"
        + f"    if (st != ARM_CMSIS_NN_SUCCESS) bad = {ny};\n"
          "    failures += bad != 0;\n    report(1, bad, t);\n"
          "    return failures ? 1 : 0;\n}\n")


def run_shape(name: str, spec: KernelSpec, board: qemu.Board, builds: list, libs: dict,
              root: Path, rng, work: Path, opt: str) -> dict:
    """Both libraries on one random case of `spec`, per build."""
    case = random_case(spec, rng)
    row = {"layer": name, "spec": spec.describe(), "macs": spec.macs, "builds": {}}
    for label, _, knobs in builds:
        k = get_kernel(spec, "dsp", board.cpu, knobs)
        d = work / f"{name.replace(' ', '_').replace('>', '')}_{label}"
        d.mkdir(parents=True, exist_ok=True)
        main = d / "main.c"
        main.write_text(program(k, case))
        srcs = list(dict.fromkeys([main, *k.write(d), libs[label]]))
        elf = qemu.build_elf(srcs, board, d, include_dirs=[root / "Include"], opt=opt,
                             defines=("CMSIS_NN_USE_SINGLE_ROUNDING",),
                             extra_cflags=("-Wl,--defsym=STACK_SIZE=0x40000",))
        counts = d / "counts.txt"
        r = qemu.run_elf(elf, board, timeout=1800, counts=counts)
        if r.timed_out:
            raise CmsisNNError(f"QEMU timed out running {elf}")
        got = {}
        for line in r.text.splitlines():
            f = line.split()
            if len(f) == 4 and f[0] == "case":
                got[int(f[1])] = (int(f[2]), int(f[3]))
        regions = qemu.CountsFile(counts).regions()
        if len(got) != 2 or len(regions) != 3:
            raise CmsisNNError(f"{elf} (exit {r.exit_code}) reported {len(got)} of 2 cases, "
                               f"{len(regions)} of 3 timed regions:\n{r.text[-2000:]}")
        runs = {}
        for i, who in enumerate(("ours", "cmsis_nn")):
            bad, ticks = got[i]
            c = regions[i + 1] - regions[0]
            ins = board.instructions(ticks)
            runs[who] = {"instructions": ins, "cycles": c.cycles, "mismatches": bad,
                         "instr_per_mac": ins / spec.macs, "cycles_per_mac": c.cycles / spec.macs}
        runs["ours"]["isa"] = k.isa
        runs["ours_vs_cmsis_nn"] = {
            "instructions": runs["ours"]["instructions"] / runs["cmsis_nn"]["instructions"],
            "cycles": runs["ours"]["cycles"] / runs["cmsis_nn"]["cycles"]}
        row["builds"][label] = runs
        o, t = runs["ours"], runs["cmsis_nn"]
        print(f"{name:28s} {label}: ours {o['instr_per_mac']:.3f} i/MAC "
              f"{o['cycles_per_mac']:.3f} c/MAC, CMSIS-NN {t['instr_per_mac']:.3f} i/MAC "
              f"{t['cycles_per_mac']:.3f} c/MAC, mismatches {o['mismatches']}/"
              f"{t['mismatches']}", flush=True)
    return row


def markdown(doc: dict) -> str:
    env = doc["env"]
    builds = [b for b, *_ in BUILDS[env["board"]]]
    cpu = "Cortex-M55" if env["board"] == M55_BOARD else "Cortex-M4"
    lines = [f"# CMSIS-NN vs our kernels on the {cpu} (QEMU {env['board']})", "",
             f"Generated by `{env['command']}` on {env['date']}: CMSIS-NN {env['cmsis_nn']} "
             f"and our kernels built with {env['gcc'].split(' (')[0]} {env['opt']}, one "
             "program per shape and build holding both on identical data (same input, "
             "weights, bias, multipliers and shifts; CMSIS-NN with "
             "`CMSIS_NN_USE_SINGLE_ROUNDING`, our rounding rule, so one expected output checks "
             "both: mismatches column, ours/theirs). i/MAC = instructions per MAC (-icount "
             "timer), c/MAC = modelled cycles per MAC (QEMU plugin `micro_project/qemu_plugin`"
             + (", `cpu=m55`" if env["board"] == M55_BOARD else "") + "). CMSIS-NN runs its "
             "wrapper (`arm_convolve_wrapper_s8`, `arm_depthwise_conv_wrapper_s8`).", "",
             "| layer | build | MACs | ours i/MAC | CMSIS-NN i/MAC | ours ÷ CMSIS-NN (instr) "
             "| ours c/MAC | CMSIS-NN c/MAC | ours ÷ CMSIS-NN (cycles) | mismatches |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["layers"]:
        for b in builds:
            x = r["builds"][b]
            o, t, q = x["ours"], x["cmsis_nn"], x["ours_vs_cmsis_nn"]
            lines.append(f"| {r['layer']} | {b} | {r['macs']:,} | {o['instr_per_mac']:.3f} | "
                         f"{t['instr_per_mac']:.3f} | {q['instructions']:.2f}× | "
                         f"{o['cycles_per_mac']:.3f} | {t['cycles_per_mac']:.3f} | "
                         f"{q['cycles']:.2f}× | {o['mismatches']} / {t['mismatches']} |")
    for b in builds:
        over = [(r["layer"], m) for r in doc["layers"] for m in ("instructions", "cycles")
                if r["builds"][b]["ours_vs_cmsis_nn"][m] > 1.0]
        lines += ["", f"{b}: ours at most CMSIS-NN's "
                  + ("instructions and modelled cycles on every shape." if not over else
                     "figure everywhere except " + ", ".join(f"{n} ({m})" for n, m in over)
                     + ".")]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cmsis-nn", required=True, metavar="DIR",
                    help="your CMSIS-NN checkout (its Include/ and Source/ folders)")
    cpu = ap.add_mutually_exclusive_group()
    cpu.add_argument("--m55", action="store_true",
                     help="Cortex-M55, QEMU mps3-an547: Helium and DSP-only builds (default)")
    cpu.add_argument("--m4", action="store_true",
                     help="Cortex-M4, QEMU mps2-an386: the seven CMSIS-NN shapes of kernels.py")
    ap.add_argument("--out", help="output path stem (default benchmarks/results/cmsis_nn_m55 "
                                  "or _m4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-json", action="store_true",
                    help="only rewrite the markdown from an existing JSON result")
    args = ap.parse_args(argv)
    tag = "m4" if args.m4 else "m55"
    out = Path(args.out) if args.out else RESULTS / f"cmsis_nn_{tag}"
    if args.from_json:
        out.with_suffix(".md").write_text(markdown(json.loads(out.with_suffix(".json")
                                                              .read_text())))
        return 0
    root = Path(args.cmsis_nn).resolve()
    try:
        cmsis_sources(root)
    except CmsisNNError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    board = qemu.get_board(BOARD if args.m4 else M55_BOARD)
    shapes = [(n, s) for n, s, _ in CMSIS_SHAPES] if args.m4 else list(M55_SHAPES)
    version = cmsis_version(root)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="cmsis-nn-") as d:
        work = Path(d)
        libs = {label: cmsis_library(root, board, flags, OPT, work / f"lib_{label}")
                for label, flags, _ in BUILDS[board.name]}
        layers = [run_shape(n, s, board, BUILDS[board.name], libs, root, rng, work, OPT)
                  for n, s in shapes]
    gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True,
                         text=True).stdout.splitlines()[0]
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "board": board.name,
           "opt": OPT, "gcc": gcc, "python": platform.python_version(), "cmsis_nn": version,
           "rounding": "CMSIS_NN_USE_SINGLE_ROUNDING",
           "command": f"python benchmarks/cmsis_nn.py --cmsis-nn DIR --{tag}",
           "seconds": round(time.time() - t0, 1)}
    doc = {"benchmark": f"cmsis-nn-{tag}", "env": env, "layers": layers}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    out.with_suffix(".md").write_text(markdown(doc))
    bad = sum(x[w]["mismatches"] for r in layers for x in r["builds"].values()
              for w in ("ours", "cmsis_nn"))
    print(f"wrote {out}.json and {out}.md ({bad} mismatching outputs)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
