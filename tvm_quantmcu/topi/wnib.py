"""Sub-byte weights stored at their width for 8-bit activations (the ``nibble`` storage).

With 8-bit activations no two products share a 16-bit lane (PLATFORM.md), so these kernels
do two MACs per ``SMLAD`` like int8 ones; what sub-byte weights can still buy is flash. The
weights of output channel o are stored at w_bits each, offset binary (u = w + 2^(w_bits−1),
non-negative), in fields that one ``AND`` with a shifted register turns into the 16-bit lane
pair an ``SMLAD`` needs: field j of a word and field j + 16/w_bits are the lanes of operand j,
``(word >> j·w_bits) & (2^w_bits − 1)·0x00010001``. The kernel accumulates Σx·u and
subtracts 2^(w_bits−1)·Σx (the activations' window sum, once per pixel for all channels).

Layout (what ``params.prepare`` writes): per output channel, its K = taps·C weights in OHWI
order (C a multiple of one word's 32/w_bits weights, so a word never straddles taps), one
32-bit word per 32/w_bits weights; within a word, weights 4a + r (r = 0..3: the values of
activation word a as ``UXTB16`` pairs (x0, x2), (x1, x3)) sit in operand 2a + r % 2, lane
r // 2. After the words, one byte per output channel: k, the power of two by which the kernel
scales that channel's accumulator (as in :mod:`.wpack`: bias and shift are prepared for
acc·2^k, so the requantization takes its one-``SMMUL`` path).

This module is the one place that knows the layout.
"""
from __future__ import annotations

import numpy as np
from tvm import tirx

from ..quant.qparams import weight_range

NIBBLE_W_BITS = (4, 2)


def per_word(w_bits: int) -> int:
    """Weights in one 32-bit word."""
    return 32 // w_bits


def offset(w_bits: int) -> int:
    return 1 << (w_bits - 1)


def applies(c: int, w_bits: int) -> bool:
    """Whether a reduction over C channels per tap can be stored so (whole words per tap)."""
    return w_bits in NIBBLE_W_BITS and c % per_word(w_bits) == 0


def row_words(taps: int, c: int, w_bits: int) -> int:
    return taps * c // per_word(w_bits)


def k_offset(oc: int, taps: int, c: int, w_bits: int) -> int:
    """Byte offset of the per-channel scale exponents k after the words."""
    return 4 * oc * row_words(taps, c, w_bits)


def storage_bytes(oc: int, taps: int, c: int, w_bits: int) -> int:
    return k_offset(oc, taps, c, w_bits) + (oc + 3) // 4 * 4


def position(o, t, ch, taps: int, c: int, w_bits: int):
    """(byte, bit shift) of the weight of output channel o, tap t, input channel ch. Works on
    ints, numpy arrays and TIR."""
    k = t * c + ch                       # index along the channel's row
    n = per_word(w_bits)
    word = o * row_words(taps, c, w_bits) + k // n
    i = k % n
    a, r = i // 4, i % 4
    field = 2 * a + r % 2 + r // 2 * (16 // w_bits)
    bit = field * w_bits
    return word * 4 + bit // 8, bit % 8


def decode(W, o, t, ch, taps: int, c: int, w_bits: int):
    """The int32 weight stored for (o, t, ch) in a flat int8 TIR buffer W."""
    byte, sh = position(o, t, ch, taps, c, w_bits)
    f = tirx.bitwise_and(tirx.shift_right(W[byte].astype("int32") & 0xFF, sh),
                         (1 << w_bits) - 1)
    return f - offset(w_bits)


def scale_exponent(W, o, oc: int, taps: int, c: int, w_bits: int):
    return W[k_offset(oc, taps, c, w_bits) + o].astype("int32")


def pack(wk: np.ndarray, k, w_bits: int) -> np.ndarray:
    """Storage (int8 array) of weights wk (OC, taps, C) in the integer semantics' range, with
    per-channel exponents k."""
    oc, taps, c = wk.shape
    if not applies(c, w_bits):
        raise ValueError(f"{c} channels per tap do not fill whole {w_bits}-bit weight words")
    lo, hi = weight_range(w_bits)
    if wk.size and (wk.min() < lo or wk.max() > hi):
        raise ValueError(f"weights outside {lo}..{hi} for {w_bits} bits")
    out = np.zeros(storage_bytes(oc, taps, c, w_bits), np.uint8)
    o, t, ch = np.meshgrid(np.arange(oc), np.arange(taps), np.arange(c), indexing="ij")
    byte, sh = position(o, t, ch, taps, c, w_bits)
    field = (wk.astype(np.int64) + offset(w_bits)).astype(np.uint8)
    np.bitwise_or.at(out, byte.ravel(), (field << sh).ravel().astype(np.uint8))
    ko = k_offset(oc, taps, c, w_bits)
    out[ko:ko + oc] = np.asarray(k, np.uint8)
    return out.view(np.int8)
