"""Packed low-bit-weight kernels (two output channels per SMLAD lane, topi/wpack.py) vs the
integer reference on the host: the same C as on the Cortex-M with SMLAD emulated, so the
packed fields and their drains are exercised. Fast set: fixed layers (every (a, w) pair,
odd channel counts, stride 2, borders, the exactness bound) and a few random ones; slow set
(`-m slow`): 70 random kernels × 5 cases."""
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_quantmcu.quant.qparams import weight_range
from tvm_quantmcu.topi import KernelSpec, get_kernel, prepare, runner, wpack
from tvm_quantmcu.topi.cases import random_case
from tvm_quantmcu.topi.compute import packs_weights

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host gcc")
PAIRS = [(4, 4), (2, 4), (4, 2), (2, 2)]


@pytest.mark.parametrize("a, w", PAIRS)
def test_drain_period_is_the_largest_exact_one(a, w):
    """2·D·max(x)·max(u) < 2^S ≤ 2·(D+1)·max(x)·max(u), with u = w + 2^(w−1) over the one
    weight range of the integer semantics."""
    d = wpack.drain_period(a, w)
    xmax, umax = (1 << a) - 1, weight_range(w)[1] + (1 << (w - 1))
    s = wpack.field_bits(w)
    assert 2 * d * xmax * umax < 1 << s <= 2 * (d + 1) * xmax * umax
    assert {(4, 4): 9, (2, 4): 45, (4, 2): 182, (2, 2): 910}[(a, w)] == d
    assert wpack.drain_words(a, w) * wpack.lanes_per_word(a) <= d


def test_weight_range_is_symmetric_and_shared():
    assert weight_range(4) == (-7, 7) and weight_range(2) == (-1, 1)
    assert weight_range(8) == (-127, 127)
    spec = KernelSpec("conv2d", (2, 2, 8), 2, in_bits=4, w_bits=4)
    with pytest.raises(ValueError, match="-7..7"):
        prepare(spec, w=np.full((2, 8, 1, 1), -8), M=1 << 30, n=40, zp_in=0, zp_out=0, lo=0,
                hi=255)


@pytest.mark.parametrize("a, w", PAIRS)
def test_pack_stores_w_bits_per_weight_and_decodes(a, w):
    rng = np.random.default_rng(a * 10 + w)
    oc, taps, c = 5, 3, 19
    lo, hi = weight_range(w)
    wk = rng.integers(lo, hi + 1, (oc, taps, c))
    k = rng.integers(0, 5, oc)
    packed = wpack.pack(wk, k, c, a, w).view(np.uint8)
    assert packed.size == wpack.storage_bytes(oc, taps, c, a, w)
    # words: pairs × taps × words of activations (channels rounded up to a word) at w bits
    g = 32 // a
    assert wpack.k_offset(oc, taps, c, a, w) == 3 * taps * ((c + g - 1) // g * g) * 2 * w // 8
    o, t, ch = np.meshgrid(np.arange(oc), np.arange(taps), np.arange(c), indexing="ij")
    byte, sh, top = wpack.position(o, t, ch, taps, c, a, w)
    f = (packed[byte] >> sh) & ((1 << w) - 1)
    half = 1 << (w - 1)
    assert np.array_equal((f ^ (top * half)) - half, wk)
    ko = wpack.k_offset(oc, taps, c, a, w)
    assert packed[ko:ko + oc].tolist() == k.tolist()


@pytest.mark.parametrize("w", [4, 2])
def test_uniform_exponent_only_where_every_channel_takes_s(w):
    """k = S for all channels (the flag after the exponents) when n + S reaches the one-SMMUL
    requantization and the accumulator bound times 2^S fits int32; otherwise per-channel k."""
    spec = KernelSpec("conv2d", (2, 2, 16), 3, in_bits=2, w_bits=w)
    s = wpack.field_bits(w)
    ko = wpack.k_offset(3, 1, 16, 2, w)
    wt = np.ones((3, 16, 1, 1), np.int64)

    def tail(n, bias=0):
        p = prepare(spec, w=wt, bias=[bias] * 3, M=1 << 30, n=n, zp_in=1, zp_out=0, lo=0,
                    hi=255)
        return p.w.view(np.uint8)[ko:ko + 4].tolist(), p.shift.tolist()
    assert tail(30) == ([s] * 3 + [1], [30 + s] * 3)
    assert tail(33 - s) == ([s] * 3 + [1], [33] * 3)
    assert tail(32 - s)[0][3] == 0                    # below the fast requantization
    assert tail(63 - s)[0][3] == 0                    # beyond the shift range
    assert tail(30, bias=1 << (31 - s))[0][3] == 0    # bias * 2^S overflows
    assert wpack.uniform_exponent([10, 20], [30, 30], w)
    assert not wpack.uniform_exponent([10, 1 << (31 - s)], [30, 30], w)


def test_selection():
    """conv2d/dense with ≤ 4-bit weights and activations read a word at a time pack; 8-bit
    activations, gathered windows, depthwise and reductions beyond the exact range do not."""
    assert packs_weights(KernelSpec("conv2d", (4, 4, 16), 8, in_bits=4, w_bits=4))
    assert packs_weights(KernelSpec("dense", (1, 1, 40), 8, in_bits=2, w_bits=2))
    assert not packs_weights(KernelSpec("conv2d", (4, 4, 16), 8, in_bits=8, w_bits=4))
    assert not packs_weights(KernelSpec("conv2d", (4, 4, 3), 8, (3, 3), in_bits=4, w_bits=4))
    assert not packs_weights(KernelSpec("depthwise", (4, 4, 16), 16, (3, 3), in_bits=4,
                                        w_bits=4))
    assert not packs_weights(KernelSpec("dense", (1, 1, 25000), 2, in_bits=2, w_bits=4))
    assert packs_weights(KernelSpec("dense", (1, 1, 24960), 2, in_bits=2, w_bits=4))
    # a4w4 with drains too (three words); not one weight word per pair, nor 1-byte outputs
    assert packs_weights(KernelSpec("conv2d", (4, 4, 16), 8, in_bits=4, w_bits=4))
    assert packs_weights(KernelSpec("conv2d", (4, 4, 24), 8, in_bits=4, w_bits=4))
    assert not packs_weights(KernelSpec("conv2d", (4, 4, 8), 8, in_bits=4, w_bits=2))
    assert not packs_weights(KernelSpec("conv2d", (4, 4, 16), 2, in_bits=4, out_bits=4,
                                        w_bits=2))


def _check(spec, seed, n=4, extreme_every=4, schedule="dsp", micro_kernel=None):
    """micro_kernel: assert whether the packed micro-kernel is called (None: either; a few
    degenerate shapes keep generated code)."""
    k = get_kernel(spec, schedule, "host")
    if micro_kernel is not None:
        assert ("qmcu_conv_lw" in k.source) == micro_kernel
    lib = runner.host_library([k])
    rng = np.random.default_rng(seed)
    h, w, _ = spec.in_shape
    pt, pl = spec.padding[:2]
    for i in range(n):
        win = (h, w, pt, pl)
        if (pt or pl) and i % 2:
            win = (h + pt, w + pl, 0, 0)            # an interior patch: no border
        # small shifts (every third case) leave n + S below 33: per-channel exponents
        case = random_case(spec, rng, window=win, extreme=i % extreme_every == extreme_every - 1,
                           small_shift=i % 3 == 1)
        y = runner.run_host(lib, k, case.x, case.params, case.window)
        np.testing.assert_array_equal(y, case.expected, err_msg=f"{spec.describe()} case {i}")
    return n


LAYERS = [
    KernelSpec("conv2d", (5, 6, 16), 12, (1, 1), in_bits=4, out_bits=8, w_bits=4),
    KernelSpec("conv2d", (5, 5, 21), 7, (1, 1), in_bits=2, out_bits=4, w_bits=4),
    KernelSpec("conv2d", (7, 7, 20), 9, (3, 3), (2, 2), (1, 1, 1, 1), 4, 8, w_bits=2),
    KernelSpec("conv2d", (6, 5, 33), 5, (3, 3), (1, 1), (1, 0, 1, 1), 2, 2, w_bits=2),
    KernelSpec("dense", (1, 1, 72), 11, in_bits=4, out_bits=8, w_bits=2),
    KernelSpec("conv2d", (4, 4, 64), 6, (1, 1), in_bits=2, out_bits=8, w_bits=4),
    KernelSpec("conv2d", (4, 4, 13), 6, (1, 1), (2, 2), in_bits=4, out_bits=8, w_bits=4),
    # drains: runs of whole words across taps with a partial last word; one tap with runs of
    # exactly drain_words words, a shorter run and a partial word (4- and 2-bit inputs)
    KernelSpec("conv2d", (6, 6, 20), 10, (3, 3), (1, 1), (1, 1, 1, 1), 4, 8, w_bits=4),
    KernelSpec("conv2d", (3, 4, 44), 9, (1, 1), in_bits=4, out_bits=8, w_bits=4),
    KernelSpec("conv2d", (2, 3, 200), 5, (1, 1), in_bits=2, out_bits=8, w_bits=4),
]


@needs_gcc
@pytest.mark.parametrize("spec", LAYERS, ids=lambda s: s.describe())
def test_layers_match_reference(spec):
    _check(spec, 7, micro_kernel=True)


@needs_gcc
@pytest.mark.parametrize("a, w", PAIRS)
def test_longest_reduction_at_the_bound(a, w):
    """All-maximum activations against all-extreme weights over the longest reduction the
    packed accumulator takes (and many drains)."""
    g = 32 // a
    c = wpack.high_field_limit(a, w) // g * g
    c = min(c, 4992)           # 2-bit weights or activations allow more: a long one suffices
    spec = KernelSpec("dense", (1, 1, c), 3, in_bits=a, out_bits=8, w_bits=w)
    assert packs_weights(spec)
    _check(spec, a + w, n=3, extreme_every=1, micro_kernel=True)


BITS = st.sampled_from([4, 2])


@st.composite
def specs(draw):
    op = draw(st.sampled_from(["conv2d", "pointwise", "pointwise", "dense"]))
    ib, wb, ob = draw(BITS), draw(BITS), draw(st.sampled_from([8, 4, 2]))
    c = draw(st.integers(32 // ib, 48))
    oc = draw(st.integers(1, 13))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if op == "dense":
        return KernelSpec("dense", (h, w, c), oc, in_bits=ib, out_bits=ob, w_bits=wb)
    if op == "pointwise":
        return KernelSpec("conv2d", (h, w, c), oc, in_bits=ib, out_bits=ob, w_bits=wb)
    kh, kw = draw(st.sampled_from([(3, 3), (2, 2), (3, 1)]))
    s = draw(st.sampled_from([(1, 1), (2, 2)]))
    pad = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
    return KernelSpec("conv2d", (max(h, kh), max(w, kw), c), oc, (kh, kw), s, pad, ib, ob,
                      w_bits=wb)


_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@needs_gcc
@settings(max_examples=4, **_SETTINGS)
@given(spec=specs(), seed=st.integers(0, 2**31))
def test_random_packed_kernels(spec, seed):
    _check(spec, seed)


@needs_gcc
@pytest.mark.slow
@settings(max_examples=70, **_SETTINGS)
@given(spec=specs(), schedule=st.sampled_from(["dsp", "dsp", "dsp", "portable"]),
       seed=st.integers(0, 2**31))
def test_random_packed_kernels_many(spec, schedule, seed):
    _check(spec, seed, n=5, schedule=schedule,
           micro_kernel=False if schedule == "portable" else None)


@needs_gcc
def test_pairs_per_pass_is_a_tuning_knob_of_packed_kernels_only():
    from tvm_quantmcu.tune import space
    packed = KernelSpec("conv2d", (4, 4, 32), 8, in_bits=2, out_bits=8, w_bits=4)
    int8 = KernelSpec("conv2d", (4, 4, 32), 8, in_bits=4, out_bits=8)
    ch = space.knob_choices()["lw_pairs"]
    assert len(space.probe_space(packed, "host").candidates["lw_pairs"]) == len(ch) == 3
    assert len(space.probe_space(int8, "host").candidates["lw_pairs"]) == 1
    assert len(space.probe_space(packed, "host").candidates["requant_at"]) == 2
    k = get_kernel(packed, "dsp", "host", {"lw_pairs": 1})
    assert "#define QMCU_LW_PAIRS 1" in k.source
    kp = get_kernel(packed, "dsp", "host", {"requant_at": "pair"})
    assert "#define QMCU_REQUANT_AT_PAIR 1" in kp.source
    lib = runner.host_library([k, kp])
    rng = np.random.default_rng(3)
    for extreme in (False, True):
        for kk in (k, kp):
            case = random_case(packed, rng, extreme=extreme, small_shift=kk is kp)
            assert np.array_equal(runner.run_host(lib, kk, case.x, case.params), case.expected)
