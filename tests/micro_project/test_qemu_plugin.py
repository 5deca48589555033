"""The modelled-cycles QEMU plugin: cost table (Cortex-M4 TRM) and agreement with -icount."""
import numpy as np
import pytest

from micro_project import qemu
from tvm_quantmcu.topi import KernelSpec, get_kernel, runner
from tvm_quantmcu.topi.cases import random_case

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(not qemu.have_toolchain(),
                                 reason="needs arm-none-eabi-gcc and qemu-system-arm"),
              pytest.mark.skipif(qemu.cycle_plugin() is None,
                                 reason="cycles plugin not built: run bash .ci/setup")]

# Each body runs between two timer reads; the empty body is the baseline. Expected
# (instructions, cycles) from the TRM's table with the pipeline refill P = 2.
BODIES = {
    "empty": ("", (0, 0)),
    "alu": ("adds r0, r1, r2\n eor r1, r1, r0\n usat r0, #8, r0", (3, 3)),
    "dsp multiplies": ("smlad r0, r1, r2, r0\n smlabb r1, r1, r2, r1\n smmul r2, r0, r1\n"
                       "smlal r0, r1, r2, r0\n mla r0, r1, r2, r0", (5, 5)),
    "independent loads pipeline": ("ldr r0, [%[p]]\n ldr r1, [%[p], #4]\n ldrb r2, [%[p], #1]",
                                   (3, 4)),
    "dependent load waits": ("ldr r0, [%[p]]\n ldr r1, [r0]", (2, 4)),
    "store with immediate offset": ("str r1, [%[p], #8]", (1, 1)),
    "ldm of four": ("ldm %[p], {r0, r1, r2, r3}", (1, 5)),
    "push and pop": ("push {r4, r5, r6}\n pop {r4, r5, r6}", (2, 8)),
    "sdiv worst case": ("movs r1, #3\n sdiv r0, r2, r1", (2, 13)),
    "branch not taken": ("movs r0, #1\n cmp r0, #1\n bne 1f\n 1:", (3, 3)),
    "loop of 10": ("movs r0, #10\n 1: subs r0, r0, #1\n bne 1b", (21, 1 + 9 * 4 + 2)),
}

PROGRAM = r"""
#include "hal.h"
static uint32_t cell[4] = {0, 0, 0, 0};
int main(void) {
    cell[0] = (uint32_t)&cell[0];
    uint32_t *p = cell;
%s
    return 0;
}
"""


def _body(code: str) -> str:
    return (f'    hal_timer_read();\n    __asm__ volatile("{code}" : : [p] "r"(p) : "r0", "r1", '
            '"r2", "r3", "r4", "r5", "r6", "cc", "memory");\n    hal_timer_read();\n')


def test_cost_table(tmp_path):
    src = tmp_path / "main.c"
    src.write_text(PROGRAM % "".join(_body(code.replace("\n", "\\n"))
                                     for code, _ in BODIES.values()))
    elf = qemu.build_elf([src], "mps2-an386", tmp_path)
    counts = tmp_path / "counts.txt"
    r = qemu.run_elf(elf, "mps2-an386", timeout=30, counts=counts)
    assert r.exit_code == 0
    regions = qemu.CountsFile(counts).regions()
    assert len(regions) == len(BODIES)
    base = regions[0]
    got = {name: ((reg - base).instructions, (reg - base).cycles)
           for name, reg in zip(BODIES, regions)}
    assert got == {name: exp for name, (_, exp) in BODIES.items()}


def test_plugin_instructions_agree_with_icount_timer(tmp_path):
    """Kernel calls timed both ways in one run: the plugin's count within 1% of Timer0/1.6;
    modelled cycles at least one per instruction."""
    rng = np.random.default_rng(3)
    specs = [KernelSpec("depthwise", (10, 12, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1), 8, 8),
             KernelSpec("conv2d", (6, 6, 24), 16, (1, 1), (1, 1), (0,) * 4, 8, 8),
             KernelSpec("conv2d", (9, 9, 3), 8, (3, 3), (2, 2), (1, 1, 1, 1), 8, 4)]
    cases = []
    for spec in specs:
        c = random_case(spec, rng)
        cases.append(runner.Case(get_kernel(spec, "dsp", "cortex-m4"), c.x, c.params,
                                 c.expected, c.window))
    res = runner.run_qemu(cases, tmp_path, repeat=2, cycles=True)
    for c, r in zip(cases, res):
        assert r.mismatches == 0
        assert abs(r.counted_instructions - r.instructions) <= 0.01 * r.instructions, \
            (c.kernel.spec.describe(), r.counted_instructions, r.instructions)
        assert r.instructions <= r.cycles <= 3 * r.instructions


def test_cycles_need_a_cortex_m4(tmp_path):
    spec = KernelSpec("conv2d", (2, 2, 4), 4, (1, 1), (1, 1), (0,) * 4, 8, 8)
    c = random_case(spec, np.random.default_rng(0))
    case = runner.Case(get_kernel(spec, "dsp", "cortex-m7"), c.x, c.params, c.expected)
    with pytest.raises(ValueError, match="Cortex-M4"):
        runner.run_qemu([case], tmp_path, board="mps2-an500", cycles=True)


def test_counts_file_pairs_marks_as_they_arrive(tmp_path):
    f = tmp_path / "counts.txt"
    f.write_text("mark 10 20\nmark 15 31\nmark 40 90\n")
    counts = qemu.CountsFile(f)
    assert counts.regions() == [qemu.Counts(5, 11)]
    with open(f, "a") as out:
        out.write("mark 47 10")                # a line still being written is left for later
    assert counts.regions() == []
    with open(f, "a") as out:
        out.write("4\ntotal 50 110\n")
    assert counts.regions() == [qemu.Counts(7, 14)] and counts.total == qemu.Counts(50, 110)
