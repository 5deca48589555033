"""Generated kernels on QEMU mps2-an386 (Cortex-M4, DSP micro-kernels) vs the reference."""
import numpy as np
import pytest

from micro_project import qemu
from tvm_quantmcu.topi import KernelSpec, get_kernel, runner
from tvm_quantmcu.topi.cases import random_case

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(not qemu.have_toolchain(),
                                 reason="needs arm-none-eabi-gcc and qemu-system-arm")]


def _specs(rng, n):
    out = []
    ops = ["conv2d", "depthwise", "pointwise", "dense", "avgpool", "add"]
    for i in range(n):
        op = ops[i % len(ops)]
        ib, ob = (int(b) for b in rng.choice([8, 4, 2], 2))
        c, oc = int(rng.integers(1, 14)), int(rng.integers(1, 14))
        h, w = int(rng.integers(3, 8)), int(rng.integers(3, 8))
        s = (int(rng.integers(1, 3)),) * 2
        pad = tuple(int(v) for v in rng.integers(0, 2, 4))
        if op == "conv2d":
            out.append(KernelSpec("conv2d", (h, w, c), oc, (3, 3), s, pad, ib, ob))
        elif op == "depthwise":
            out.append(KernelSpec("depthwise", (h, w, c), c, (3, 3), s, pad, ib, ob))
        elif op == "pointwise":
            out.append(KernelSpec("conv2d", (h, w, c), oc, (1, 1), (1, 1), (0,) * 4, ib, ob))
        elif op == "dense":
            out.append(KernelSpec("dense", (1, 1, c * 3), oc, in_bits=ib, out_bits=ob))
        elif op == "avgpool":
            out.append(KernelSpec("avgpool", (h, w, c), c, (2, 2), (2, 2), (0,) * 4, ib, ob))
        else:
            out.append(KernelSpec("add", (h, w, c), c, in_bits=ib, out_bits=ob,
                                  in2_bits=int(rng.choice([8, 4, 2]))))
    return out


def _run(tmp_path, n, seed, knobs=None, extra_specs=(), **case_options):
    rng = np.random.default_rng(seed)
    cases = []
    for spec in [*_specs(rng, n), *extra_specs]:
        c = random_case(spec, rng, **case_options)
        cases.append(runner.Case(get_kernel(spec, "dsp", "cortex-m4", knobs), c.x, c.params,
                                 c.expected, c.window))
    res = runner.run_qemu(cases, tmp_path, timeout=120)
    bad = [(c.kernel.spec.describe(), r.mismatches) for c, r in zip(cases, res) if r.mismatches]
    assert not bad, bad
    assert all(r.instructions > 0 for r in res)
    return res


def test_dsp_kernels_on_qemu_small(tmp_path):
    _run(tmp_path, 6, 11)


def test_low_bit_weights_and_small_shifts_on_qemu(tmp_path):
    """4/2-bit weights with shifts below 33: the pre-scaled weights (params.prepare) on the
    SMMUL path, and the 64-bit path where they cannot be scaled."""
    _run(tmp_path / "w4", 6, 13, small_shift=True, w_bits=4)
    _run(tmp_path / "w2", 6, 14, small_shift=True, w_bits=2)


@pytest.mark.parametrize("knobs", [{"requant_at": "pair"}, {"pixels": "row"},
                                   {"pixels": "row", "requant_at": "pair"}],
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_knobs_on_qemu(tmp_path, knobs):
    """requant_at="pair" (outputs requantized from registers per channel pair) and
    pixels="row" (one call per output row: pairs, then an odd row's last pixel) on layers
    where they apply — even output channels, whole words of depthwise channels, odd and even
    widths — at every width, and on random layers."""
    specs = [KernelSpec("conv2d", (5, w, 16), 10, (1, 1), in_bits=ib, out_bits=ob)
             for w, ib, ob in ((6, 8, 8), (7, 4, 2), (5, 2, 4))]
    specs += [KernelSpec("depthwise", (6, w, c), c, (3, 3), (1, 1), (1,) * 4, ib, ob)
              for w, c, ib, ob in ((6, 8, 8, 8), (7, 16, 4, 2), (5, 32, 2, 4), (7, 16, 8, 2))]
    specs += [KernelSpec("conv2d", (7, 7, 3), 6, (3, 3), (2, 2), (1,) * 4, 8, 8),
              KernelSpec("conv2d", (7, 9, 5), 7, (3, 3), (1, 2), (1,) * 4, 4, 8)]
    _run(tmp_path, 6, 15, knobs=knobs, extra_specs=specs)


@pytest.mark.slow
def test_dsp_kernels_on_qemu_36_cases(tmp_path):
    _run(tmp_path, 36, 12)


def test_patch_window_on_qemu_and_deterministic_timing(tmp_path):
    spec = KernelSpec("depthwise", (6, 6, 8), 8, (3, 3), (1, 1), (1, 1, 1, 1), 8, 8)
    k = get_kernel(spec, "dsp", "cortex-m4")
    rng = np.random.default_rng(3)
    full = random_case(spec, rng)
    patch = random_case(spec, rng, window=(7, 7, 0, 0))    # interior patch: no top/left pad
    cases = [runner.Case(k, c.x, c.params, c.expected, c.window) for c in (full, patch, full)]
    res = runner.run_qemu(cases, tmp_path)
    assert [r.mismatches for r in res] == [0, 0, 0]
    # Same kernel, same data, two call sites: equal up to the timer's read phase (a tick is
    # 0.6 instructions); whole runs of one ELF are identical (tests/micro_project).
    assert abs(res[0].instructions - res[2].instructions) <= 8


def test_negative_padding_on_qemu(tmp_path):
    """The DSP kernels read a window inside a larger buffer (negative pad_t/pad_l)."""
    from window_cases import OFFSETS, SPECS, embed
    rng = np.random.default_rng(5)
    cases = []
    for spec in SPECS:
        case = random_case(spec, rng, window=spec.in_shape[:2] + (0, 0))
        big, win = embed(case.x, *OFFSETS[len(cases) % len(OFFSETS)], rng)
        cases.append(runner.Case(get_kernel(spec, "dsp", "cortex-m4"), big, case.params,
                                 case.expected, win))
    res = runner.run_qemu(cases, tmp_path)
    assert [r.mismatches for r in res] == [0] * len(cases)


def _assert_exact_with_every_blocking(specs, seed, extreme, tmp_path):
    """Every spec under each knob setting that changes the blocking (pixels per call, where
    the requantization runs), random or extreme data from `seed`, bit-exact on QEMU."""
    rng = np.random.default_rng(seed)
    cases = []
    for knobs in ({}, {"pixels": "row"}, {"requant_at": "pair"}):
        for spec in specs:
            c = random_case(spec, rng, extreme=extreme)
            cases.append(runner.Case(get_kernel(spec, "dsp", "cortex-m4", knobs), c.x, c.params,
                                     c.expected, c.window))
    res = runner.run_qemu(cases, tmp_path, timeout=300)
    bad = [(c.kernel.spec.describe(), r.mismatches) for c, r in zip(cases, res) if r.mismatches]
    assert not bad, bad


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_depthwise_3x3_int8_two_pixel_products_on_qemu(tmp_path, extreme):
    """The 3×3 int8 depthwise products of two pixels written with immediate offsets
    (QMCU_DW8_ROW): stride 1 and 2, borders, channel counts with and without a tail of
    fewer than four, sub-byte outputs, the knobs that change the blocking, rows too long for
    offsets from one base (the base advanced per row), and a row too long for LDR's immediate
    offsets (the compiled loop); extreme: all-maximum activations
    against all-extreme weights."""
    specs = [KernelSpec("depthwise", (h, w, c), c, (3, 3), s, pad, 8, ob)
             for h, w, c, s, pad, ob in (
                 (5, 6, 4, (1, 1), (1, 1, 1, 1), 8), (6, 8, 13, (1, 1), (1, 1, 1, 1), 8),
                 (7, 9, 12, (2, 2), (0, 0, 1, 1), 8), (6, 7, 5, (1, 2), (1, 1, 1, 0), 4),
                 (4, 10, 48, (1, 1), (1, 1, 1, 1), 2), (5, 6, 8, (1, 1), (0, 0, 0, 0), 8),
                 (3, 40, 100, (1, 1), (1, 1, 1, 1), 8), (3, 30, 100, (1, 1), (1, 1, 1, 1), 8),
                 (4, 16, 200, (2, 2), (1, 1, 1, 1), 8), (3, 9, 240, (1, 2), (0, 1, 1, 0), 4))]
    _assert_exact_with_every_blocking(specs, 21, extreme, tmp_path)


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_depthwise_3x3_low_bit_two_pixel_products_on_qemu(tmp_path, extreme):
    """The 3×3 depthwise products of two pixels at 4 and 2 bits (dwl_3x3_x2, every lane pair
    of a word, the shifted lanes' sums started from zero): stride 1 and 2, borders, whole
    words with and without a partial last word (odd counts), every output width, the knobs
    that change the blocking, rows too long for offsets from one base; extreme: all-maximum activations against all-extreme weights."""
    specs = [KernelSpec("depthwise", (h, w, c), c, (3, 3), s, pad, ib, ob)
             for ib in (4, 2)
             for h, w, c, s, pad, ob in (
                 (5, 6, 16, (1, 1), (1, 1, 1, 1), 8), (6, 8, 19, (1, 1), (1, 1, 1, 1), 4),
                 (7, 9, 24, (2, 2), (0, 0, 1, 1), 2), (6, 7, 33, (2, 2), (1, 1, 1, 1), 8),
                 (4, 5, 8, (1, 1), (0, 0, 0, 0), 8), (5, 6, 48, (1, 2), (1, 0, 1, 1), 4),
                 (3, 18 * 4 // ib, 240, (1, 1), (1, 1, 1, 1), 8),
                 (4, 18 * 4 // ib, 224, (2, 2), (0, 0, 1, 1), 8))]
    _assert_exact_with_every_blocking(specs, 31, extreme, tmp_path)


@pytest.mark.parametrize("small_shift", [False, True], ids=["shifts", "small-shifts"])
def test_requant_two_pixel_int8_outputs_on_qemu(tmp_path, small_shift):
    """8-bit outputs of two pixels: with and without a clamp inside the output range, odd
    channel counts, shifts below and above 33 (the SMMUL and 64-bit paths) channel pair by
    channel pair, conv, depthwise and packed low-bit weights, extreme values; from 16
    channels the assembly loop (qmcu_requant8), for depthwise 3×3 with the bias in the
    accumulators (a channel tail of one included); odd widths (one pixel per call)."""
    specs = [KernelSpec("conv2d", (3, 4, c), oc, (1, 1)) for c, oc in
             ((16, 2), (16, 7), (8, 33), (32, 16))]
    specs += [KernelSpec("depthwise", (4, 6, c), c, (3, 3), (1, 1), (1,) * 4)
              for c in (8, 13, 16, 17, 48)]
    # odd widths: one pixel per call (the single-pixel loop), one channel, one channel pair
    specs += [KernelSpec("conv2d", (3, 3, 8), oc, (1, 1)) for oc in (1, 2, 9, 24)]
    specs += [KernelSpec("depthwise", (3, 5, c), c, (3, 3), (1, 1), (1,) * 4)
              for c in (2, 16, 19)]
    specs += [KernelSpec("conv2d", (3, 4, 32), oc, (1, 1), in_bits=4, w_bits=4)
              for oc in (10, 18)]
    rng = np.random.default_rng(23)
    cases = []
    for extreme in (False, True):
        for spec in specs * 2:
            c = random_case(spec, rng, small_shift=small_shift, extreme=extreme)
            cases.append(runner.Case(get_kernel(spec, "dsp", "cortex-m4"), c.x, c.params,
                                     c.expected, c.window))
    res = runner.run_qemu(cases, tmp_path, timeout=300)
    bad = [(c.kernel.spec.describe(), r.mismatches) for c, r in zip(cases, res) if r.mismatches]
    assert not bad, bad


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_widened_low_bit_windows_on_qemu(tmp_path, extreme):
    """conv2d/pointwise/dense with 4/2-bit inputs read a word at a time and int8 weights: the
    window widened once per call into lane pairs (widen) and the assembly product loop of two
    pixels (QMCU_WIDE_LOOP_ASM; straight-line QMCU_WIDE_LDM_ASM for windows of 8 to 32
    values: 8 to 32 channels, 24 and 32 exactly); odd widths (one pixel per call, the compiled loop), partial
    last words (channels not a multiple of 8 / 16), stride 2, borders, windows beyond the
    widening buffer (read in place), the knobs that change the blocking; extreme: all-maximum
    activations against all-extreme weights."""
    specs = [KernelSpec("conv2d", (h, w, c), oc, (1, 1), in_bits=ib, out_bits=ob)
             for h, w, c, oc, ib, ob in ((3, 4, 16, 6, 4, 8), (3, 5, 24, 7, 2, 8),
                                         (2, 6, 20, 5, 4, 4), (2, 4, 40, 9, 2, 2),
                                         (2, 3, 8, 4, 4, 8), (3, 4, 96, 16, 4, 8),
                                         (3, 5, 24, 9, 4, 8), (2, 5, 32, 7, 2, 8),
                                         (2, 3, 32, 4, 4, 8))]
    specs += [KernelSpec("conv2d", (h, w, c), oc, (3, 3), s, pad, ib, 8)
              for h, w, c, oc, s, pad, ib in ((5, 6, 16, 5, (1, 1), (1,) * 4, 4),
                                              (7, 9, 17, 4, (2, 2), (0, 0, 1, 1), 2),
                                              (6, 7, 12, 3, (1, 2), (1, 1, 1, 0), 4),
                                              (4, 4, 264, 2, (1, 1), (1,) * 4, 4))]
    specs += [KernelSpec("dense", (1, 1, 48), 6, in_bits=4),
              KernelSpec("dense", (1, 1, 40), 5, in_bits=2)]
    _assert_exact_with_every_blocking(specs, 29, extreme, tmp_path)
