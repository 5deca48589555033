"""Kernel registry: (op, shapes, bits, schedule, target) → generated C kernel + metadata.

A :class:`Kernel` holds the C source TVM generated for one :class:`KernelSpec` under one
schedule, the micro-kernel sources it links against, and its costs: scratch (the stack arrays
of the generated code plus the micro-kernels' gather buffer) and, when the Arm toolchain is
installed, flash (``.text`` of the compiled kernel and micro-kernels for the target CPU).
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from micro_project.board_table import CPUS

from . import build, compute, mve, schedules

UKERNEL_DIR = Path(__file__).resolve().parent / "ukernels"
UKERNEL_HEADER = UKERNEL_DIR / "qmcu_ukernels.h"          # the one the kernels include
UKERNEL_HEADERS = sorted(UKERNEL_DIR.glob("*.h"))         # it and the headers it includes
# their text as this process found them: a long run (a search, a benchmark) keeps building
# with the headers its kernel code was imported with, even when the working tree changes under
# it (a header added later would otherwise be included but never copied)
UKERNEL_SOURCES = {h.name: h.read_bytes() for h in UKERNEL_HEADERS}

# target → gcc CPU flags (None: the host compiler). DSP and Helium micro-kernels are chosen by
# the C preprocessor (__ARM_FEATURE_DSP, __ARM_FEATURE_MVE), so the same generated source
# serves every target (mve.py; the knob isa="dsp" keeps the DSP ones on a Helium target).
TARGETS = {"host": None,
           **{name: ("-mthumb", *cpu.gcc_flags) for name, cpu in CPUS.items()}}

# Compiler choices of our schedules, as a pragma of the generated file: the padding condition
# of the xpad loop is invariant in its channel loop, so let gcc unswitch it (part of -O3) into
# a plain copy; unroll the short micro-kernel loops; keep zero-fill loops inline rather than
# memset calls; and skip the scheduling pass before register allocation, which hoists loads
# and makes the register-blocked micro-kernels spill. The ``default`` schedule (TVM's
# lowering as emitted) is compiled without it unless the knob ``loop_pragma`` asks for it.
PRAGMA = ('#pragma GCC optimize("unswitch-loops", "unroll-loops", "no-schedule-insns", '
          '"no-tree-loop-distribute-patterns")')


def prelude(loop_pragma: bool, requant_at: str = "end") -> str:
    return ("#include <stdint.h>\n#ifndef TVM_DLL\n#define TVM_DLL\n#endif\n"
            + (f"#if defined(__GNUC__) && !defined(__clang__)\n{PRAGMA}\n#endif\n"
               if loop_pragma else "")
            + ("#define QMCU_REQUANT_AT_PAIR 1\n" if requant_at == "pair" else "")
            + '#include "qmcu_ukernels.h"\n')


def lowbit_w_prelude(lw_pairs: int | str = "auto") -> str:
    """The packed low-bit-weight micro-kernels' header, with the output-channel pairs per
    pass (knob lw_pairs: 2, 1, or "auto": 2)."""
    return ((f"#define QMCU_LW_PAIRS {lw_pairs}\n" if lw_pairs != "auto" else "")
            + '#include "qmcu_ukernels_lowbit_w.h"\n')


@dataclass
class Kernel:
    spec: compute.KernelSpec
    schedule: str
    target: str
    knobs: dict
    name: str
    source: str
    scratch_bytes: int
    _flash: int | None = field(default=None, repr=False)

    @property
    def isa(self) -> str:
        """The micro-kernel implementation this kernel runs on its target: "mve", "dsp" or
        "c" (portable)."""
        return mve.micro_kernel_isa(self.target, self.knobs)

    def write(self, out_dir) -> list[Path]:
        """Write the kernel's C file (and the micro-kernel headers it includes) into out_dir;
        returns the sources to compile."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        p = out / f"{self.name}.c"
        p.write_text(self.source)
        for name, text in UKERNEL_SOURCES.items():
            hdr = out / name
            if not hdr.exists() or hdr.read_bytes() != text:
                hdr.write_bytes(text)
        return [p]

    def flash_bytes(self) -> int | None:
        """.text + .rodata of the compiled kernel (micro-kernels inlined) for this target."""
        if self._flash is None and TARGETS[self.target] and shutil.which("arm-none-eabi-gcc"):
            with tempfile.TemporaryDirectory() as d:
                src = self.write(d)[0]
                obj = Path(d) / (src.stem + ".o")
                subprocess.run(["arm-none-eabi-gcc", *TARGETS[self.target], "-O2",
                                "-ffunction-sections", "-c", str(src), "-o", str(obj)],
                               check=True, capture_output=True)
                out = subprocess.run(["arm-none-eabi-size", str(obj)], check=True,
                                     capture_output=True, text=True).stdout
                self._flash = int(out.splitlines()[1].split()[0])
        return self._flash


def kernel_name(spec: compute.KernelSpec, schedule: str, knobs: dict) -> str:
    key = repr((spec, schedule, sorted(knobs.items())))
    return f"qmcu_{spec.op}_{schedule}_{hashlib.sha1(key.encode()).hexdigest()[:10]}"


_CACHE: dict = {}


def get_kernel(spec: compute.KernelSpec, schedule: str = "dsp", target: str = "cortex-m4",
               knobs: dict | None = None) -> Kernel:
    """The compiled kernel for `spec` (cached). Raises UnsupportedKernel naming the op, the
    shapes and the bits when no kernel exists."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    # The default schedule is TVM's lowering as emitted: no pragma unless asked for.
    knobs = {**schedules.DEFAULT_KNOBS, "loop_pragma": schedule != "default", **(knobs or {})}
    if knobs.get(mve.ISA_KNOB, "auto") == "auto":
        knobs.pop(mve.ISA_KNOB, None)       # the default: not part of the kernel's name
    else:
        mve.check_knob(knobs[mve.ISA_KNOB])
    key = (spec, schedule, target, tuple(sorted(knobs.items())))
    if key not in _CACHE:
        comp = compute.make_compute(spec)
        func = schedules.schedule(comp, schedule, knobs)
        name = kernel_name(spec, schedule, knobs)
        body = build.build_c(func, name).replace("#define TVM_EXPORTS\n", "")
        # requant_at only concerns the fused micro-kernels: elsewhere it leaves the file as is
        fused = "qmcu_conv(" in body or "qmcu_dw(" in body or "qmcu_conv_lw(" in body
        src = _abi_params_used(mve.prelude(knobs) + prelude(knobs["loop_pragma"],
                                       knobs["requant_at"] if fused else "end")
                               + (lowbit_w_prelude(knobs["lw_pairs"])
                                  if "qmcu_conv_lw" in body else "")
                               + ('#include "qmcu_ukernels_narrow_w.h"\n'
                                  if "qmcu_conv_wn" in body else "") + body,
                               name)
        _CACHE[key] = Kernel(spec, schedule, target, knobs, name, src,
                             _scratch(src, spec, schedule,
                                      mve.micro_kernel_isa(target, knobs)))
    return _CACHE[key]


_ABI_PARAMS = ("x", "w", "bias", "mult", "shift", "qp", "y", "in_h", "in_w", "pad_t", "pad_l")


def _abi_params_used(src: str, name: str) -> str:
    """Kernels share one ABI, so some ignore some arguments (an add has no bias, a 1×1 conv
    ignores pad_t): say so in the body, so the C builds quietly with -Wall -Wextra."""
    i = src.rindex(f"void {name}(")
    j = src.index("{", i) + 1
    return src[:j] + "\n  " + " ".join(f"(void){a};" for a in _ABI_PARAMS) + src[j:]


_ARRAY = re.compile(r"^\s*(u?int(8|16|32|64)_t)\s+\w+\[(\d+)\];", re.M)


def _scratch(src: str, spec: compute.KernelSpec, schedule: str, isa: str = "dsp") -> int:
    total = sum(int(n) * int(bits) // 8 for _, bits, n in _ARRAY.findall(src))
    if isa == "mve":          # Helium micro-kernels: their own buffer (mve.py), no gathering
        return total + mve.scratch_bytes(spec, src)
    if schedule == "dsp" and ("qmcu_conv(" in src or "qmcu_conv_acc(" in src):
        # Fewer input channels than one activation word: the DSP micro-kernel gathers the
        # window of each of (up to) two pixels as int16 into the shared qmcu_gather buffer.
        if compute.gathers(spec):
            kh, kw = compute.kernel_taps(spec)
            total += 2 * 2 * (kh * kw * spec.in_channels + 4)
    return total
