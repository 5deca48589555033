"""The weight lane order (compute.lane_pos) against an emulation of the DSP unpacking: one
32-bit word of packed activations gives 16-bit lane pairs (UXTB16 at 8 bits, AND with a
shifted mask at 4/2 bits), one weight word gives the matching pairs under SXTB16 / SXTB16 ROR 8,
and SMLAD of the pairs must sum to the channel-wise dot product."""
import numpy as np
import pytest

from tvm_quantmcu.quant.packing import pack
from tvm_quantmcu.topi import KernelSpec, prepare
from tvm_quantmcu.topi.compute import lane_group, lane_order, lane_pos, weight_channels


def x_lanes(word: int, m: int, bits: int) -> tuple[int, int]:
    """(low, high) 16-bit lanes of lane pair m of an activation word."""
    if bits == 8:
        v = word >> (8 * m)           # UXTB16 (ROR 8 for m = 1)
        return v & 0xFF, (v >> 16) & 0xFF
    mask = (1 << bits) - 1
    v = word >> (m * bits)
    return v & mask, (v >> 16) & mask


def w_lanes(word_bytes: np.ndarray, odd: bool) -> tuple[int, int]:
    """SXTB16 (odd: ROR 8) of a weight word: sign-extended bytes (0, 2) or (1, 3)."""
    b = word_bytes.astype(np.int8).astype(int)
    return (b[1], b[3]) if odd else (b[0], b[2])


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_lane_pairs_match_weight_words(bits):
    rng = np.random.default_rng(bits)
    g = lane_group(bits)
    for _ in range(20):
        x = rng.integers(0, 1 << bits, g)
        w = rng.integers(-128, 128, g)
        word = int.from_bytes(pack(x, bits).tobytes(), "little")
        stored = np.zeros(g, np.int64)
        stored[lane_pos(np.arange(g), bits)] = w
        acc = 0
        for m in range(g // 2):                 # one SMLAD per lane pair
            xl, xh = x_lanes(word, m, bits)
            q = m // 2
            wl, wh = w_lanes(stored[4 * q:4 * q + 4], m % 2 == 1)
            acc += xl * wl + xh * wh
        assert acc == int(np.dot(x, w))


def test_lane_pos_is_a_permutation_of_each_group():
    for bits in (8, 4, 2):
        g = lane_group(bits)
        pos = lane_pos(np.arange(3 * g), bits)
        assert sorted(pos.tolist()) == list(range(3 * g))
        assert all(p // g == c // g for c, p in enumerate(pos))     # stays in its group


def test_prepared_weights_are_in_lane_order_and_padded():
    spec = KernelSpec("conv2d", (4, 4, 20), 3, (1, 1), in_bits=2)
    assert lane_order(spec) and weight_channels(spec) == 32
    w = np.arange(3 * 20).reshape(3, 20, 1, 1) % 100 - 50
    p = prepare(spec, w=w, M=1 << 30, n=40, zp_in=1, zp_out=0, lo=0, hi=3)
    assert p.w.shape == (3, 1, 1, 32)
    got = p.w[:, 0, 0, lane_pos(np.arange(20), 2)]
    np.testing.assert_array_equal(got, w[:, :, 0, 0])
    mask = np.ones(32, bool)
    mask[lane_pos(np.arange(20), 2)] = False
    assert not p.w[..., mask].any()                                 # padding weights are zero
    # few channels are gathered value by value: natural order, no padding
    small = KernelSpec("conv2d", (4, 4, 3), 3, (3, 3), padding=(1, 1, 1, 1), in_bits=4)
    assert not lane_order(small) and weight_channels(small) == 3
