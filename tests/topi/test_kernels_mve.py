"""Helium (MVE) micro-kernels on QEMU mps3-an547 (Cortex-M55) vs the integer reference, and
their selection by the target's features."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from micro_project import qemu
from tvm_quantmcu.topi import KernelSpec, get_kernel, runner
from tvm_quantmcu.topi.cases import random_case

BOARD = "mps3-an547"
needs_toolchain = pytest.mark.skipif(not qemu.have_toolchain(),
                                     reason="needs arm-none-eabi-gcc and qemu-system-arm")
POINTWISE = KernelSpec("conv2d", (4, 6, 40), 10, (1, 1))
DEPTHWISE = KernelSpec("depthwise", (6, 6, 22), 22, (3, 3), (1, 1), (1, 1, 1, 1))


def _assembly(k, tmp_path) -> str:
    """The assembly gcc emits for the kernel on its target."""
    src = k.write(tmp_path / k.name)[0]
    from tvm_quantmcu.topi.registry import TARGETS
    return subprocess.run(["arm-none-eabi-gcc", *TARGETS[k.target], "-O2", "-S", "-o", "-",
                           str(src)], check=True, capture_output=True, text=True).stdout


def test_isa_follows_the_target_and_the_knob():
    assert get_kernel(POINTWISE, "dsp", "cortex-m55").isa == "mve"
    assert get_kernel(POINTWISE, "dsp", "cortex-m4").isa == "dsp"
    assert get_kernel(POINTWISE, "dsp", "cortex-m3").isa == "c"
    forced = get_kernel(POINTWISE, "dsp", "cortex-m55", {"isa": "dsp"})
    assert forced.isa == "dsp" and "#define QMCU_NO_MVE 1" in forced.source
    auto = get_kernel(POINTWISE, "dsp", "cortex-m55", {"isa": "auto"})
    assert auto is get_kernel(POINTWISE, "dsp", "cortex-m55")     # the default, one kernel
    assert "QMCU_NO_MVE" not in auto.source and forced.name != auto.name
    with pytest.raises(ValueError, match="isa"):
        get_kernel(POINTWISE, "dsp", "cortex-m55", {"isa": "neon"})


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
@pytest.mark.parametrize("spec", [POINTWISE, DEPTHWISE], ids=["pointwise", "depthwise"])
def test_cortex_m55_compiles_the_helium_micro_kernels(spec, tmp_path):
    """cortex-m55 kernels contain the Helium instructions (and no DSP multiply); cortex-m4
    and isa="dsp" ones the DSP multiplies and no vector instruction."""
    mve = _assembly(get_kernel(spec, "dsp", "cortex-m55"), tmp_path)
    vector = r"\svmladava\.u8\s" if spec.op == "conv2d" else r"\svmul\.i32\s"
    assert re.search(vector, mve) and re.search(r"\svmulh\.s32\s", mve)
    assert not re.search(r"\ssmla(d|bb)\s", mve)
    for k in (get_kernel(spec, "dsp", "cortex-m4"),
              get_kernel(spec, "dsp", "cortex-m55", {"isa": "dsp"})):
        dsp = _assembly(k, tmp_path)
        assert re.search(r"\ssmla(d|bb)\s", dsp) and not re.search(r"\svml|\svmulh", dsp)


def _specs(rng):
    """Every op at every input and output width, channel counts that leave tails (of a
    16-byte vector, of four 32-bit lanes, of an activation word), and the shapes that take
    each path of the micro-kernels: pointwise/dense read in place, several vectors per
    segment (the low-overhead loop), gathered windows, lane-ordered 4/2-bit windows,
    depthwise with partial lane groups, odd tile widths."""
    out = []
    widths = [(ib, ob) for ib in (8, 4, 2) for ob in (8, 4, 2)]
    for i, (ib, ob) in enumerate(widths):
        c = int(rng.integers(17, 45))               # > 16: more than one vector, a tail
        oc = int(rng.integers(5, 19))
        h, w = int(rng.integers(3, 7)), int(rng.integers(3, 8))
        s = (1 + i % 2,) * 2
        pad = tuple(int(v) for v in rng.integers(0, 2, 4))
        out += [KernelSpec("conv2d", (h, w, c), oc, (1, 1), (1, 1), (0,) * 4, ib, ob),
                KernelSpec("conv2d", (h, w, int(rng.integers(1, 9))), oc, (3, 3), s, pad,
                           ib, ob),
                KernelSpec("conv2d", (h, w, c), oc, (3, 3), s, pad, ib, ob),
                KernelSpec("depthwise", (h, w, c), c, (3, 3), s, pad, ib, ob),
                KernelSpec("dense", (1, 1, 3 * c), oc, in_bits=ib, out_bits=ob)]
    return out


def _run(tmp_path, specs, seed, knobs=None, small_shift_every=0, **case_options):
    rng = np.random.default_rng(seed)
    cases = []
    for i, spec in enumerate(specs):
        k = get_kernel(spec, "dsp", "cortex-m55", knobs)
        assert k.isa == "mve"
        if small_shift_every:
            case_options["small_shift"] = i % small_shift_every == small_shift_every - 1
        c = random_case(spec, rng, **case_options)
        cases.append(runner.Case(k, c.x, c.params, c.expected, c.window))
    res = runner.run_qemu(cases, tmp_path, board=BOARD, timeout=300)
    bad = [(c.kernel.spec.describe(), r.mismatches) for c, r in zip(cases, res) if r.mismatches]
    assert not bad, bad
    assert all(r.instructions > 0 for r in res)
    return res


HOST_CASES_PER_SHAPE = 7


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host gcc")
def test_mve_shapes_portable_fallback_on_the_host():
    """The portable C the Helium micro-kernels fall back to (no MVE: the host) on the shapes
    of the qemu-m55 test below — every op at every width pair, channel counts with tails —
    with several random cases each (315 in all), bit-exact."""
    specs = _specs(np.random.default_rng(21))
    kernels = [get_kernel(s, "dsp", "host") for s in specs]
    assert {k.isa for k in kernels} == {"c"}
    lib = runner.host_library(kernels)
    rng = np.random.default_rng(31)
    n = 0
    for k in kernels:
        for i in range(HOST_CASES_PER_SHAPE):
            c = random_case(k.spec, rng, small_shift=i == HOST_CASES_PER_SHAPE - 1)
            y = runner.run_host(lib, k, c.x, c.params, c.window)
            np.testing.assert_array_equal(y, c.expected, err_msg=k.spec.describe())
            n += 1
    assert n >= 300
    assert {(s.op, s.in_bits, s.out_bits) for s in specs} == {
        (op, ib, ob) for op in ("conv2d", "depthwise", "dense") for ib in (8, 4, 2)
        for ob in (8, 4, 2)}
    assert all(s.in_channels % 16 for s in specs if s.op == "depthwise")     # tails


@pytest.mark.qemu
@needs_toolchain
def test_mve_kernels_every_op_and_width_on_qemu_m55(tmp_path):
    """45 random layers (5 per width pair) bit-exact on the Cortex-M55; every fourth with
    shifts n <= 32 (the scalar 64-bit path of a vector group)."""
    specs = _specs(np.random.default_rng(21))
    assert len(specs) >= 30
    _run(tmp_path, specs, 22, small_shift_every=4)


OPS = ("pointwise", "conv3x3", "depthwise", "dense")
WIDTHS = [(ib, ob) for ib in (8, 4, 2) for ob in (8, 4, 2)]


def _op_specs(rng, op, ib, ob, n):
    """n random shapes of `op` at (ib, ob): channel counts with tails of a vector (and, for
    3x3 convolutions, every other one gathered: fewer channels than an activation word)."""
    out = []
    for i in range(n):
        c, oc = int(rng.integers(17, 46)), int(rng.integers(3, 19))
        h, w = int(rng.integers(3, 7)), int(rng.integers(3, 8))
        s = (1 + i % 2,) * 2
        pad = tuple(int(v) for v in rng.integers(0, 2, 4))
        out.append({
            "pointwise": KernelSpec("conv2d", (h, w, c), oc, (1, 1), (1, 1), (0,) * 4, ib, ob),
            "conv3x3": KernelSpec("conv2d", (h, w, c if i % 2 else int(rng.integers(1, 9))),
                                  oc, (3, 3), s, pad, ib, ob),
            "depthwise": KernelSpec("depthwise", (h, w, c), c, (3, 3), s, pad, ib, ob),
            "dense": KernelSpec("dense", (1, 1, 2 * c + 1), oc, in_bits=ib, out_bits=ob)}[op])
    return out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host gcc")
def test_mve_portable_fallback_300_per_op_and_width_on_the_host():
    """300 random cases per op and width pair (10,800) of the portable C the Helium kernels
    fall back to: 3 shapes of each, 100 data cases per shape."""
    rng = np.random.default_rng(41)
    for op in OPS:
        for ib, ob in WIDTHS:
            kernels = [get_kernel(s, "dsp", "host") for s in _op_specs(rng, op, ib, ob, 3)]
            lib = runner.host_library(kernels)
            n = 0
            for k in kernels:
                for i in range(100):
                    c = random_case(k.spec, rng, small_shift=i % 10 == 9)
                    y = runner.run_host(lib, k, c.x, c.params, c.window)
                    np.testing.assert_array_equal(y, c.expected, err_msg=k.spec.describe())
                    n += 1
            assert n >= 300


@pytest.mark.slow
@pytest.mark.qemu
@needs_toolchain
@pytest.mark.parametrize("ib, ob", WIDTHS)
def test_mve_kernels_30_per_op_and_width_on_qemu_m55(tmp_path, ib, ob):
    """30 random cases per op at this width pair on the Cortex-M55 (3 shapes of each op,
    10 data cases per shape, every tenth with shifts n <= 32), bit-exact."""
    rng = np.random.default_rng(50 + 3 * ib + ob)
    cases = []
    for op in OPS:
        for spec in _op_specs(rng, op, ib, ob, 3):
            k = get_kernel(spec, "dsp", "cortex-m55")
            assert k.isa == "mve"
            for i in range(10):
                c = random_case(spec, rng, small_shift=i == 9)
                cases.append(runner.Case(k, c.x, c.params, c.expected, c.window))
    assert len(cases) == 30 * len(OPS)
    res = runner.run_qemu(cases, tmp_path, board=BOARD, timeout=600)
    bad = [(c.kernel.spec.describe(), r.mismatches) for c, r in zip(cases, res) if r.mismatches]
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.qemu
@needs_toolchain
def test_mve_small_shifts_extremes_windows_and_rows_on_qemu_m55(tmp_path):
    """Shifts n <= 32 (the scalar 64-bit path of a vector group), all-maximum activations
    against extreme weights (the unsigned-offset products at their largest), patch windows
    held inside a larger buffer, one call per output row (odd widths), and outputs that do
    not fill their last byte (products only)."""
    from window_cases import OFFSETS, SPECS, embed
    base = [KernelSpec("conv2d", (5, 6, 40), 12, (1, 1), in_bits=ib, out_bits=ob)
            for ib, ob in ((8, 8), (4, 2), (2, 4))]
    base += [KernelSpec("depthwise", (5, 7, 20), 20, (3, 3), (1, 1), (1,) * 4, ib, ob)
             for ib, ob in ((8, 8), (4, 4), (2, 8))]
    _run(tmp_path / "small", base, 23, small_shift=True)
    _run(tmp_path / "extreme", base + [KernelSpec("dense", (1, 1, 300), 6)], 24, extreme=True)
    _run(tmp_path / "row", base + [KernelSpec("conv2d", (7, 9, 5), 7, (3, 3), (1, 2),
                                              (1,) * 4, 4, 8)], 25, knobs={"pixels": "row"})
    part = [KernelSpec("conv2d", (4, 4, 24), 3, (1, 1), in_bits=8, out_bits=4),
            KernelSpec("depthwise", (5, 5, 6), 6, (3, 3), (1, 1), (1,) * 4, 4, 2)]
    _run(tmp_path / "part", part, 26)
    rng = np.random.default_rng(27)
    cases = []
    for spec in SPECS:
        case = random_case(spec, rng, window=spec.in_shape[:2] + (0, 0))
        big, win = embed(case.x, *OFFSETS[len(cases) % len(OFFSETS)], rng)
        cases.append(runner.Case(get_kernel(spec, "dsp", "cortex-m55"), big, case.params,
                                 case.expected, win))
    res = runner.run_qemu(cases, tmp_path / "win", board=BOARD)
    assert [r.mismatches for r in res] == [0] * len(cases)


@pytest.mark.qemu
@needs_toolchain
def test_m55_cycle_table_costs_helium_instructions(tmp_path):
    """The runner's modelled Cortex-M55 cycles: the plugin counts the same instructions as the
    timer, and its cpu=m55 table costs every Helium instruction (found by encoding, which
    QEMU's disassembler does not know) two cycles."""
    if qemu.cycle_plugin() is None:
        pytest.skip("the QEMU cycles plugin is not built (bash .ci/setup)")
    c = random_case(POINTWISE, np.random.default_rng(1))
    case = runner.Case(get_kernel(POINTWISE, "dsp", "cortex-m55"), c.x, c.params, c.expected)
    r, = runner.run_qemu([case], tmp_path, board=BOARD, cycles=True)
    assert r.mismatches == 0
    assert abs(r.counted_instructions - r.instructions) <= 0.01 * r.instructions
    assert r.instructions < r.cycles <= 3 * r.instructions
    elf = tmp_path / "app.elf"
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", "-m", "armv8.1-m.main", str(elf)],
                         check=True, capture_output=True, text=True).stdout
    vec = {int(a, 16) for a in re.findall(r"^\s*([0-9a-f]+):.*\tvmla(?:da)?va\.u8\t", dis, re.M)}
    assert vec
    dump = tmp_path / "dump.txt"
    cmd = qemu.qemu_command(elf, BOARD)
    cmd += ["-plugin", f"{qemu.cycle_plugin()},out={dump},dump=1,cpu=m55"]
    subprocess.run(cmd, capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    costs = {int(f[1], 16): int(f[2]) for f in (line.split() for line in
                                                  dump.read_text().splitlines())
             if f[0] == "insn"}
    assert {costs[a] for a in vec if a in costs} == {2}
