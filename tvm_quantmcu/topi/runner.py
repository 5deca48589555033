"""Run generated kernels: on the host (gcc + ctypes) and on QEMU (a generated test program
that checks the output against the expected bytes and times the kernel with Timer0)."""
from __future__ import annotations

import ctypes
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..quant.packing import packed_bytes
from .params import KernelParams
from .registry import Kernel

CACHE_DIR = Path.home() / ".cache" / "tvm_quantmcu" / "kernels"


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def host_library(kernels: list[Kernel], cflags=("-O2",)) -> ctypes.CDLL:
    """Compile kernels (portable micro-kernels) into one shared library and load it."""
    from .registry import UKERNEL_SOURCES
    key = hashlib.sha1("".join(k.source for k in kernels).encode() + repr(cflags).encode()
                       + b"".join(UKERNEL_SOURCES.values()))
    d = CACHE_DIR / key.hexdigest()[:16]
    so = d / "lib.so"
    if not so.exists():
        srcs = []
        for k in kernels:
            srcs += k.write(d)
        srcs = list(dict.fromkeys(srcs))
        subprocess.run(["gcc", *cflags, "-shared", "-fPIC", "-o", str(so), *map(str, srcs)],
                       check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(so))


def out_size(k: Kernel) -> int:
    oh, ow = k.spec.out_hw
    return packed_bytes((oh, ow, k.spec.out_channels), k.spec.out_bits)


def run_host(lib: ctypes.CDLL, k: Kernel, x_packed: np.ndarray, p: KernelParams,
             window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Call kernel `k` from `lib`. window = (in_h, in_w, pad_t, pad_l); default: the spec's
    input and its top/left padding. Returns the packed output bytes."""
    h, w, _ = k.spec.in_shape
    win = window or (h, w, k.spec.padding[0], k.spec.padding[1])
    x = np.ascontiguousarray(x_packed, np.uint8)
    y = np.zeros(out_size(k), np.uint8)
    arrs = [np.ascontiguousarray(a) for a in p.arrays()]
    fn = getattr(lib, k.name)
    fn.restype = None
    fn(_ptr(x), *[_ptr(a) for a in arrs[:5]], _ptr(y), *[ctypes.c_int32(v) for v in win])
    return y


# ---------------------------------------------------------------------------------------------
# QEMU

@dataclass
class Case:
    kernel: Kernel
    x: np.ndarray                 # packed input
    params: KernelParams
    expected: np.ndarray          # packed expected output
    window: tuple[int, int, int, int] | None = None


def _c_array(name: str, ctype: str, a: np.ndarray, section: str = "") -> str:
    vals = ",".join(str(int(v)) for v in np.asarray(a).reshape(-1)) or "0"
    attr = f' __attribute__((aligned(4){section}))'
    return f"static const {ctype} {name}[]{attr} = {{{vals}}};\n"


BIG_OUTPUT = 64 * 1024


def qemu_program(cases: list[Case], repeat: int = 1) -> str:
    """C main() that runs every case, compares with the expected bytes and prints
    ``case <i> <mismatches> <ticks>`` per case (ticks of the fastest of `repeat` calls)."""
    protos, body, data = [], [], []
    seen = set()
    for i, c in enumerate(cases):
        k = c.kernel
        if k.name not in seen:
            seen.add(k.name)
            protos.append(f"void {k.name}(void*, void*, void*, void*, void*, void*, void*, "
                          "int32_t, int32_t, int32_t, int32_t);\n")
        h, w, _ = k.spec.in_shape
        win = c.window or (h, w, k.spec.padding[0], k.spec.padding[1])
        w_, b_, m_, n_, q_ = c.params.arrays()
        data += [_c_array(f"x{i}", "uint8_t", c.x), _c_array(f"w{i}", "int8_t", w_),
                 _c_array(f"b{i}", "int32_t", b_), _c_array(f"m{i}", "int32_t", m_),
                 _c_array(f"n{i}", "int32_t", n_), _c_array(f"q{i}", "int32_t", q_),
                 _c_array(f"e{i}", "uint8_t", c.expected)]
        ny = len(c.expected)
        body.append(f"""
    {{
        uint32_t best = 0xFFFFFFFFu;
        for (int r = 0; r < {repeat}; r++) {{
            memset(ybuf, 0xA5, {ny});
            uint32_t t0 = hal_timer_read();
            {k.name}((void*)x{i}, (void*)w{i}, (void*)b{i}, (void*)m{i}, (void*)n{i},
                     (void*)q{i}, ybuf, {win[0]}, {win[1]}, {win[2]}, {win[3]});
            uint32_t t = hal_timer_read() - t0 - overhead;
            if (t < best) best = t;
        }}
        int bad = 0;
        for (int j = 0; j < {ny}; j++) bad += ybuf[j] != e{i}[j];
        failures += bad != 0;
        hal_puts("case {i} "); hal_put_u32(bad); hal_puts(" "); hal_put_u32(best); hal_puts("\\n");
    }}""")
    ymax = max(len(c.expected) for c in cases)
    # a large output goes to the boards' big RAM region (mps3-an547 has 512 KiB of SRAM)
    big = ', section(".bigram")' if ymax > BIG_OUTPUT else ""
    return ("#include <stdint.h>\n#include <string.h>\n#include \"hal.h\"\n" + "".join(protos)
            + "".join(data)
            + f"static uint8_t ybuf[{ymax + 4}] __attribute__((aligned(4){big}));\n"
            + "int main(void) {\n    int failures = 0;\n"
            + "    uint32_t t0 = hal_timer_read();\n"
            + "    uint32_t overhead = hal_timer_read() - t0;\n"
            + "".join(body) + "\n    return failures ? 1 : 0;\n}\n")


@dataclass
class QemuCaseResult:
    mismatches: int
    instructions: int                      # from the board timer under -icount
    cycles: int | None = None              # modelled Cortex-M4 cycles (cycles plugin)
    counted_instructions: int | None = None  # the plugin's own instruction count


def _plugin_counts(regions, n_cases: int, repeat: int) -> list[tuple[int, int]]:
    """(cycles, instructions) per case from the plugin's regions: the first region is the
    empty timed region (overhead), then `repeat` regions per case; the fastest repeat counts."""
    if len(regions) != 1 + n_cases * repeat:
        raise RuntimeError(f"cycles plugin saw {len(regions)} timed regions, expected "
                           f"{1 + n_cases * repeat}")
    over = regions[0]
    out = []
    for i in range(n_cases):
        best = min((r - over for r in regions[1 + i * repeat:1 + (i + 1) * repeat]),
                   key=lambda c: c.cycles)
        out.append((best.cycles, best.instructions))
    return out


def run_qemu(cases: list[Case], out_dir, board: str = "mps2-an386", repeat: int = 1,
             timeout: float = 120.0, opt: str = "-O2",
             cycles: bool | None = None) -> list[QemuCaseResult]:
    """Run `cases` in one QEMU program. cycles: also count modelled Cortex-M4 cycles with the
    QEMU plugin (None: when the plugin is built and the board is a Cortex-M4; True: required;
    on the Cortex-M55 board its Helium cost table, micro_project/qemu_plugin/README.md)."""
    from micro_project import qemu
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    srcs = []
    for c in cases:
        srcs += c.kernel.write(out)
    main = out / "main.c"
    main.write_text(qemu_program(cases, repeat))
    srcs = list(dict.fromkeys([main, *srcs]))
    b = qemu.get_board(board)
    elf = qemu.build_elf(srcs, b, out, opt=opt, defines=(),
                         extra_cflags=("-Wl,--defsym=STACK_SIZE=0x40000",))
    if cycles is None:
        cycles = b.models_cycles and qemu.cycle_plugin() is not None
    if cycles and b.cycle_table is None:
        raise ValueError(f"modelled cycles are Cortex-M4 (or, asked for, Cortex-M55) cycles; "
                         f"board {b.name} is a {b.cpu}")
    counts = out / "counts.txt" if cycles else None
    r = qemu.run_elf(elf, b, timeout=timeout, counts=counts)
    if r.timed_out:
        raise RuntimeError(f"QEMU timed out after {timeout}s running {elf}")
    res = {}
    for line in r.text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "case":
            res[int(parts[1])] = QemuCaseResult(int(parts[2]), b.instructions(int(parts[3])))
    if len(res) != len(cases):
        raise RuntimeError(f"QEMU run of {elf} reported {len(res)} of {len(cases)} cases "
                           f"(exit {r.exit_code}):\n{r.text[-2000:]}")
    if counts is not None:
        per_case = _plugin_counts(qemu.CountsFile(counts).regions(), len(cases), repeat)
        for i, (cyc, ins) in enumerate(per_case):
            res[i].cycles, res[i].counted_instructions = cyc, ins
    return [res[i] for i in range(len(cases))]
