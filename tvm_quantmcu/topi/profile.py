"""Where a kernel's instructions go: per-function instruction counts of one kernel call on QEMU.

QEMU runs one instruction per translation block (``-singlestep``) and logs every block it
executes (``-d exec,nochain``); the program counters are attributed to the functions of the
ELF (``arm-none-eabi-nm``). The DSP kernels split into parts by function:

* ``products``: the inner products (``conv_dsp``/``dw_dsp`` and the window gather),
* ``requant``: requantization, clamp and packing of the outputs (``qmcu_requant8`` etc.),
* ``window+loops``: the generated kernel itself (the padded input rows, the zeroing of the
  accumulators, loop and call overhead).

Only these functions are counted: the test program around the call (its ``memset`` of the
output buffer, the timer reads) is not.

The log holds one line per instruction: profile small slices of a layer (:func:`slice_spec`).
"""
from __future__ import annotations

import collections
import dataclasses
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from micro_project import qemu

from .cases import random_case
from .compute import KernelSpec
from .registry import get_kernel
from .runner import Case, qemu_program

PARTS = {"products": ("conv_dsp", "conv_dsp_tail", "dw_dsp", "dw_dsp_tail", "gather",
                     "conv_mve", "dw_mve", "conv_lw", "conv_lw_tail", "conv_ref", "dw_ref"),
         "requant": ("qmcu_requant8", "qmcu_requant8_gen", "qmcu_requant8_px", "qmcu_requant4",
                     "qmcu_requant2", "qmcu_rq_channel_n32")}
OTHER = "window+loops"


def slice_spec(spec: KernelSpec, rows: int = 2) -> KernelSpec:
    """The same layer computing only `rows` output rows (same width, channels, padding)."""
    if spec.op in ("dense", "add") or spec.out_hw[0] <= rows:
        return spec
    kh, sh = spec.kernel[0], spec.stride[0]
    t, l, b, r = spec.padding
    h = max((rows - 1) * sh + kh - t - b, 1)
    return dataclasses.replace(spec, in_shape=(h,) + spec.in_shape[1:])


@dataclass
class Profile:
    spec: KernelSpec
    parts: dict          # part → instructions
    mismatches: int

    @property
    def outputs(self) -> int:
        oh, ow = self.spec.out_hw
        return oh * ow * self.spec.out_channels

    def per_output(self) -> dict:
        return {k: v / self.outputs for k, v in self.parts.items()}


def _part(symbol: str) -> str:
    base = symbol.split(".")[0]
    for part, names in PARTS.items():
        if base in names:
            return part
    return OTHER


def profile(spec: KernelSpec, schedule: str = "dsp", board: str = "mps2-an386",
            seed: int = 0, timeout: float = 600.0) -> Profile:
    """Instructions of one call of the `schedule` kernel of `spec`, by part."""
    k = get_kernel(spec, schedule, qemu.get_board(board).cpu)
    c = random_case(spec, np.random.default_rng(seed))
    case = Case(k, c.x, c.params, c.expected, c.window)
    b = qemu.get_board(board)
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        srcs = k.write(out)
        (out / "main.c").write_text(qemu_program([case]))
        elf = qemu.build_elf([out / "main.c", *srcs], b, out,
                             extra_cflags=("-Wl,--defsym=STACK_SIZE=0x40000",))
        cmd = qemu.qemu_command(elf, b)
        log = out / "exec.log"
        cmd[1:1] = ["-singlestep", "-d", "exec,nochain", "-D", str(log)]
        run = subprocess.run(cmd, capture_output=True, timeout=timeout)
        text = run.stdout.decode("utf-8", "replace")
        m = re.search(r"case 0 (\d+)", text)
        if m is None:
            raise RuntimeError(f"profiling run of {spec.describe()} printed no result:\n{text}")
        ranges = _functions(elf, k.name)
        counts: collections.Counter = collections.Counter()
        pcs = re.compile(r"\[[0-9a-f]+/([0-9a-f]+)/")
        with open(log) as f:
            for line in f:
                hit = pcs.search(line)
                if hit:
                    pc = int(hit.group(1), 16)
                    for lo, hi, part in ranges:
                        if lo <= pc < hi:
                            counts[part] += 1
                            break
    return Profile(spec, {p: counts.get(p, 0) for p in (*PARTS, OTHER)}, int(m.group(1)))


def _functions(elf: Path, kernel: str) -> list[tuple[int, int, str]]:
    """(start, end, part) of the kernel's functions (the generated one and the micro-kernel
    functions, constant-propagated clones included)."""
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True,
                        check=True).stdout
    own = set(PARTS["products"] + PARTS["requant"]) | {kernel}
    out = []
    for line in nm.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tTW" and f[3].split(".")[0] in own:
            lo = int(f[0], 16) & ~1
            out.append((lo, lo + int(f[1], 16), _part(f[3])))
    return out
