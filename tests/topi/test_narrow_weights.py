"""Sub-byte weights stored at their width for 8-bit activations (topi/wnib.py) vs the integer
reference: on the host (the same C as on the Cortex-M, SMLAD/UXTB16/USADA8 emulated) and on
QEMU mps2-an386; every weight width, odd output channels, stride 2, borders, extreme data."""
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micro_project import qemu
from tvm_quantmcu.quant.qparams import weight_range
from tvm_quantmcu.topi import KernelSpec, get_kernel, prepare, runner, wnib
from tvm_quantmcu.topi.cases import random_case
from tvm_quantmcu.topi.compute import packs_weights, stores_narrow_weights

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host gcc")


def test_selection():
    """8-bit activations read a word at a time with whole weight words per tap; not int8
    weights, low-bit activations (packed lanes instead), gathered windows or depthwise."""
    assert stores_narrow_weights(KernelSpec("conv2d", (4, 4, 16), 8, w_bits=4))
    assert stores_narrow_weights(KernelSpec("dense", (1, 1, 32), 8, w_bits=2))
    assert not stores_narrow_weights(KernelSpec("conv2d", (4, 4, 16), 8, w_bits=8))
    assert not stores_narrow_weights(KernelSpec("conv2d", (4, 4, 24), 8, w_bits=2))
    assert not stores_narrow_weights(KernelSpec("conv2d", (4, 4, 12), 8, w_bits=4))
    assert not stores_narrow_weights(KernelSpec("conv2d", (4, 4, 3), 8, (3, 3), w_bits=4))
    assert not stores_narrow_weights(KernelSpec("depthwise", (4, 4, 16), 16, (3, 3),
                                                w_bits=4))
    spec = KernelSpec("conv2d", (4, 4, 32), 8, in_bits=2, w_bits=4)
    assert packs_weights(spec) and not stores_narrow_weights(spec)


@pytest.mark.parametrize("w", [4, 2])
def test_pack_stores_w_bits_per_weight_and_decodes(w):
    rng = np.random.default_rng(w)
    lo, hi = weight_range(w)
    oc, taps, c = 5, 3, 2 * wnib.per_word(w)
    wk = rng.integers(lo, hi + 1, (oc, taps, c))
    st_ = wnib.pack(wk, np.arange(oc), w).view(np.uint8)
    assert st_.size == oc * taps * c * w // 8 + 8          # + the exponents, word-aligned
    o, t, ch = np.meshgrid(np.arange(oc), np.arange(taps), np.arange(c), indexing="ij")
    byte, sh = wnib.position(o, t, ch, taps, c, w)
    got = ((st_[byte] >> sh) & ((1 << w) - 1)).astype(np.int64) - wnib.offset(w)
    np.testing.assert_array_equal(got, wk)
    np.testing.assert_array_equal(st_[wnib.k_offset(oc, taps, c, w):][:oc], np.arange(oc))
    # fields j and j + 16/w of a word are one SMLAD operand: (x0, x2) then (x1, x3)
    assert wnib.position(0, 0, 0, taps, c, w) == (0, 0)
    assert wnib.position(0, 0, 2, taps, c, w) == (2, 0)
    assert wnib.position(0, 0, 1, taps, c, w) == (0, w)


def test_prepared_weights_are_narrow():
    spec = KernelSpec("conv2d", (4, 4, 64), 32, in_bits=8, w_bits=4)
    rng = np.random.default_rng(0)
    p = prepare(spec, w=rng.integers(-7, 8, (32, 64, 1, 1)), M=1 << 30, n=40, zp_in=3,
                zp_out=0, lo=0, hi=255)
    assert p.w.nbytes == 32 * 64 // 2 + 32


def _check(spec, seed, n=4, schedule="dsp", micro_kernel=None):
    k = get_kernel(spec, schedule, "host")
    if micro_kernel is not None:
        assert ("qmcu_conv_wn" in k.source) == micro_kernel
    lib = runner.host_library([k])
    rng = np.random.default_rng(seed)
    h, w, _ = spec.in_shape
    pt, pl = spec.padding[:2]
    for i in range(n):
        win = (h, w, pt, pl)
        if (pt or pl) and i % 2:
            win = (h + pt, w + pl, 0, 0)
        case = random_case(spec, rng, window=win, extreme=i % 4 == 3)
        y = runner.run_host(lib, k, case.x, case.params, case.window)
        np.testing.assert_array_equal(y, case.expected, err_msg=f"{spec.describe()} case {i}")


LAYERS = [
    KernelSpec("conv2d", (5, 6, 16), 12, (1, 1), out_bits=8, w_bits=4),
    KernelSpec("conv2d", (5, 5, 32), 7, (1, 1), out_bits=4, w_bits=2),
    KernelSpec("conv2d", (7, 7, 8), 9, (3, 3), (2, 2), (1, 1, 1, 1), 8, 8, w_bits=4),
    KernelSpec("conv2d", (6, 5, 16), 5, (3, 3), (1, 1), (1, 0, 1, 1), 8, 2, w_bits=2),
    KernelSpec("dense", (1, 1, 72), 11, out_bits=8, w_bits=4),
    KernelSpec("dense", (2, 2, 16), 3, out_bits=8, w_bits=2),
    KernelSpec("conv2d", (4, 4, 384), 13, (1, 1), out_bits=8, w_bits=4),
]


@needs_gcc
@pytest.mark.parametrize("spec", LAYERS, ids=lambda s: s.describe())
def test_layers_match_reference(spec):
    _check(spec, 11, micro_kernel=True)


@needs_gcc
@pytest.mark.parametrize("schedule", ["portable", "default"])
def test_generated_loops_read_narrow_weights(schedule):
    _check(LAYERS[2], 5, schedule=schedule, micro_kernel=False)


@st.composite
def specs(draw):
    wb = draw(st.sampled_from([4, 2]))
    c = wnib.per_word(wb) * draw(st.integers(1, 4))
    oc, ob = draw(st.integers(1, 13)), draw(st.sampled_from([8, 4, 2]))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    op = draw(st.sampled_from(["conv2d", "pointwise", "dense"]))
    if op == "dense":
        return KernelSpec("dense", (h, w, c), oc, out_bits=ob, w_bits=wb)
    if op == "pointwise":
        return KernelSpec("conv2d", (h, w, c), oc, out_bits=ob, w_bits=wb)
    kh, kw = draw(st.sampled_from([(3, 3), (2, 2), (3, 1)]))
    s = draw(st.sampled_from([(1, 1), (2, 2)]))
    pad = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
    return KernelSpec("conv2d", (max(h, kh), max(w, kw), c), oc, (kh, kw), s, pad, 8, ob,
                      w_bits=wb)


_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@needs_gcc
@settings(max_examples=4, **_SETTINGS)
@given(spec=specs(), seed=st.integers(0, 2**31))
def test_random_narrow_kernels(spec, seed):
    _check(spec, seed)


@needs_gcc
@pytest.mark.slow
@settings(max_examples=60, **_SETTINGS)
@given(spec=specs(), schedule=st.sampled_from(["dsp", "dsp", "dsp", "portable"]),
       seed=st.integers(0, 2**31))
def test_random_narrow_kernels_many(spec, schedule, seed):
    _check(spec, seed, n=5, schedule=schedule)


@pytest.mark.qemu
@pytest.mark.skipif(not qemu.have_toolchain(), reason="needs arm-none-eabi-gcc and "
                    "qemu-system-arm")
def test_narrow_kernels_on_qemu(tmp_path):
    rng = np.random.default_rng(3)
    cases = []
    for spec in LAYERS:
        k = get_kernel(spec, "dsp", "cortex-m4")
        for i in range(2):
            c = random_case(spec, rng, extreme=i == 1)
            cases.append(runner.Case(k, c.x, c.params, c.expected, c.window))
    res = runner.run_qemu(cases, tmp_path, timeout=300)
    bad = [(c.kernel.spec.describe(), r.mismatches) for c, r in zip(cases, res) if r.mismatches]
    assert not bad, bad
