import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tvm_quantmcu.quant import ActQuant, pack, packed_channels, quantize_weights, unpack

bits = st.sampled_from([8, 4, 2])


@settings(max_examples=300, deadline=None)
@given(st.floats(-50, 0), st.floats(0.01, 50), bits, st.integers(0, 2 ** 31))
def test_quantize_dequantize_round_trip(lo, hi, b, seed):
    q = ActQuant.from_range(lo, hi, b)
    assert 0 <= q.zero_point <= q.qmax
    x = np.random.default_rng(seed).uniform(lo, hi, 64)
    err = np.abs(q.dequantize(q.quantize(x)) - x)
    assert err.max() <= q.scale / 2 + 1e-9 * max(1.0, abs(lo), hi)
    levels = np.arange(q.qmax + 1)
    assert (q.quantize(q.dequantize(levels)) == levels).all()   # every level is a fixed point


@settings(max_examples=200, deadline=None)
@given(st.floats(-10, 0), st.floats(0.1, 10), bits)
def test_real_zero_is_exact(lo, hi, b):
    q = ActQuant.from_range(lo, hi, b)
    assert q.dequantize(q.quantize(np.zeros(1)))[0] == 0.0


@settings(max_examples=200, deadline=None)
@given(bits, st.integers(1, 37), st.integers(0, 2 ** 31))
def test_pack_unpack(b, c, seed):
    q = np.random.default_rng(seed).integers(0, 1 << b, (3, 5, c))
    p = pack(q, b)
    assert p.shape == (3, 5, packed_channels(c, b)) and p.dtype == np.uint8
    assert (unpack(p, b, c) == q).all()


def test_pack_layout_is_little_endian_within_byte():
    assert pack(np.array([[1, 2, 3]]), 4).tolist() == [[0x21, 0x03]]
    assert pack(np.array([[1, 2, 3, 0, 1]]), 2).tolist() == [[0b00111001, 0b01]]


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, (4, 3, 3, 3), elements=st.floats(-4, 4, width=32)), bits)
def test_weights_symmetric_per_channel(w, b):
    q, s = quantize_weights(w, b)
    qmax = (1 << (b - 1)) - 1
    assert q.dtype == np.int8 and np.abs(q).max() <= qmax
    err = ((q * s.reshape(-1, 1, 1, 1) - w) ** 2).reshape(4, -1).sum(axis=1)
    amax = np.abs(w.astype(np.float64)).reshape(4, -1).max(axis=1)
    s_max = np.where(amax > 0, amax / qmax, 1.0).reshape(-1, 1, 1, 1)
    err_max = ((np.clip(np.floor(w / s_max + 0.5), -qmax, qmax) * s_max - w) ** 2
               ).reshape(4, -1).sum(axis=1)
    if b == 8:      # the full range: every weight within half a step
        assert np.all(np.abs(q * s.reshape(-1, 1, 1, 1) - w) <= s.reshape(-1, 1, 1, 1) / 2 + 1e-6)
    assert np.all(err <= err_max * (1 + 1e-6) + 1e-12)   # clipping only where it pays


def test_sub_byte_weights_clip_an_outlier_weight():
    w = np.concatenate([np.linspace(-1, 1, 63), [8.0]]).reshape(1, 64, 1, 1)
    q4, s4 = quantize_weights(w, 4)
    q8, s8 = quantize_weights(w, 8)
    assert s8[0] == 8.0 / 127 and s4[0] < 8.0 / 7     # 8 bits keep max |w|, 4 bits clip
    assert ((q4 * s4[0] - w) ** 2).sum() < ((np.clip(np.floor(w / (8 / 7) + 0.5), -7, 7)
                                              * (8 / 7) - w) ** 2).sum()
