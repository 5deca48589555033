"""Packed low-bit weights: two output channels per 16-bit multiply lane.

With weights of ≤ 4 bits (``quant.qparams.weight_range``: −7..7, −1..1) and activations of
≤ 4 bits, the products of two output channels A, B share one 16-bit lane of an ``SMLAD``
operand: lane = u_A + 2^S·w_B with S = 16 − w_bits, u_A = w_A + 2^(w_bits−1) ≥ 0 (offset
binary) and w_B in two's complement in the lane's top w_bits bits (so the signed lane reads
as u_A + 2^S·w_B). One ``SMLAD`` of a lane pair of activations (channels m, m + G/2 of a word,
G = 32/in_bits) against such an operand does four MACs: the accumulator gets
Σx·u_A + 2^S·Σx·w_B. The low field Σx·u_A is non-negative and exact while it stays below 2^S:
it is *drained* (moved into a wide accumulator, ``UBFX`` + ``ADD`` + ``SUB``) at least every
:func:`drain_period` multiplies; the high field stays in place, and at the end channel B is
``acc ASR S`` and channel A the drained low fields minus 2^(w_bits−1)·Σx (the offset of u_A,
one sum of the activations per pixel shared by all output channels).

Storage (what ``params.prepare`` writes, ``w_bits`` per weight): per pair of output channels,
per tap, per word of activations, ``words_per_group`` 32-bit words; each word holds
``8 / w_bits`` operands, operand q being ``ror(word, q·2·w_bits) & operand_mask`` (one ``AND``
with a rotated register). After the packed words, one byte per output channel: k, the power
of two by which the kernel scales that channel's accumulator (``params._fast_shift``: bias and
shift are prepared for acc·2^k, so that the requantization takes its one-``SMMUL`` path); then
one flag byte, set when every k is S (:func:`uniform_exponent`): the kernel then takes channel
B as the accumulator with its low field cleared (B·2^S) and channel A as the low field shifted
up by S, with no per-channel shift.

This module is the one place that knows the layout and derives the exactness bound.
"""
from __future__ import annotations

from tvm import tirx

from ..quant.qparams import weight_range

PACKED_W_BITS = (4, 2)
PACKED_IN_BITS = (4, 2)


def field_bits(w_bits: int) -> int:
    """S: the low field's width; the high field is the lane's top w_bits bits."""
    return 16 - w_bits


def offset(w_bits: int) -> int:
    """The offset of the low field (offset binary): u = w + 2^(w_bits−1)."""
    return 1 << (w_bits - 1)


def drain_period(in_bits: int, w_bits: int) -> int:
    """Largest number of ``SMLAD`` (two products per field each) after which the low field
    Σx·u is still exact: 2·n·max(x)·max(u) < 2^S, with max(x) = 2^in_bits − 1 and
    max(u) = max(w) + 2^(w_bits−1) from the weight range of the integer semantics."""
    xmax = (1 << in_bits) - 1
    umax = weight_range(w_bits)[1] + offset(w_bits)
    return ((1 << field_bits(w_bits)) - 1) // (2 * xmax * umax)


def high_field_limit(in_bits: int, w_bits: int) -> int:
    """Longest reduction (products per output channel) whose high field 2^S·Σx·w_B and low
    field stay within the int32 accumulator."""
    xmax = (1 << in_bits) - 1
    wmax = max(-weight_range(w_bits)[0], weight_range(w_bits)[1])
    return ((1 << 31) - (1 << field_bits(w_bits))) // ((1 << field_bits(w_bits)) * xmax * wmax)


def lanes_per_word(in_bits: int) -> int:
    """Lane pairs (SMLADs per output-channel pair and pixel) in one word of activations."""
    return 16 // in_bits


def operands_per_word(w_bits: int) -> int:
    return 8 // w_bits


def words_per_group(in_bits: int, w_bits: int) -> int:
    """Weight words per output-channel pair and word of activations."""
    return lanes_per_word(in_bits) // operands_per_word(w_bits)


def operand_mask(w_bits: int) -> int:
    f = (1 << w_bits) - 1
    s = field_bits(w_bits)
    return f | f << s | f << 16 | f << (16 + s)


def drain_words(in_bits: int, w_bits: int) -> int:
    """Words of activations between drains (a drain per whole word keeps the loop simple)."""
    return drain_period(in_bits, w_bits) // lanes_per_word(in_bits)


def groups(c: int, in_bits: int) -> int:
    g = 32 // in_bits
    return (c + g - 1) // g


def packed_words(oc: int, taps: int, c: int, in_bits: int, w_bits: int) -> int:
    return (oc + 1) // 2 * taps * groups(c, in_bits) * words_per_group(in_bits, w_bits)


def k_offset(oc: int, taps: int, c: int, in_bits: int, w_bits: int) -> int:
    """Byte offset of the per-channel scale exponents k after the packed words."""
    return 4 * packed_words(oc, taps, c, in_bits, w_bits)


def storage_bytes(oc: int, taps: int, c: int, in_bits: int, w_bits: int) -> int:
    """Bytes of the packed weight array: the words, then k per channel and the uniform flag
    (to a whole word)."""
    return k_offset(oc, taps, c, in_bits, w_bits) + (oc + 4) // 4 * 4


def uniform_exponent(worst, n, w_bits: int) -> bool:
    """Whether every channel can take k = S (the field width): its accumulator bound `worst`
    (|bias| + max |Σx·w|) times 2^S stays within int32 and n + S lies where the one-``SMMUL``
    requantization applies (33..62)."""
    import numpy as np
    s = field_bits(w_bits)
    worst, n = np.asarray(worst, np.int64), np.asarray(n, np.int64)
    return bool(np.all((worst << s) < 1 << 31) and np.all(n + s >= 33)
                and np.all(n + s <= 62))


def check(oc: int, taps: int, c: int, in_bits: int, w_bits: int) -> str | None:
    """Why no packed kernel can be exact for this reduction, or None."""
    if drain_words(in_bits, w_bits) < 1:
        return (f"a {in_bits}-bit word of activations against {w_bits}-bit weights overflows "
                f"the packed field before one drain")
    k = taps * groups(c, in_bits) * 32 // in_bits
    if k > high_field_limit(in_bits, w_bits):
        return (f"reduction of {k} products exceeds the packed accumulator's exact range "
                f"({high_field_limit(in_bits, w_bits)})")
    return None


def position(o, t, ch, taps: int, c: int, in_bits: int, w_bits: int):
    """(byte, bit shift) of the weight of output channel o, tap t, input channel ch, and
    whether it is the high (two's complement) field. Works on ints, numpy arrays and TIR."""
    G = 32 // in_bits
    H = G // 2
    opw = operands_per_word(w_bits)
    g, mm = ch // G, ch % G
    half, m = mm // H, mm % H
    top = o % 2
    word = ((o // 2 * taps + t) * groups(c, in_bits) + g) * words_per_group(in_bits, w_bits) \
        + m // opw
    pos = (16 * half + top * field_bits(w_bits) + m % opw * 2 * w_bits) % 32
    return word * 4 + pos // 8, pos % 8, top


def decode(W, o, t, ch, taps: int, c: int, in_bits: int, w_bits: int):
    """The int32 weight value stored for (o, t, ch) in a uint8/int8 TIR buffer W (flat)."""
    byte, sh, top = position(o, t, ch, taps, c, in_bits, w_bits)
    f = tirx.bitwise_and(tirx.shift_right(W[byte].astype("int32") & 0xFF, sh),
                         (1 << w_bits) - 1)
    half = offset(w_bits)
    return tirx.bitwise_xor(f, top * half) - half


def scale_exponent(W, o, oc: int, taps: int, c: int, in_bits: int, w_bits: int):
    """k of output channel o (int32) from the tail of the packed array."""
    return W[k_offset(oc, taps, c, in_bits, w_bits) + o].astype("int32")


def pack(wk, k, c: int, in_bits: int, w_bits: int):
    """Packed storage (int8 array) of weights wk (OC, taps, C) in the integer semantics'
    range, with per-channel exponents k."""
    import numpy as np
    oc, taps, _ = wk.shape
    lo, hi = weight_range(w_bits)
    if wk.size and (wk.min() < lo or wk.max() > hi):
        raise ValueError(f"weights outside {lo}..{hi} for {w_bits} bits")
    out = np.zeros(storage_bytes(oc, taps, c, in_bits, w_bits), np.uint8)
    o, t, ch = np.meshgrid(np.arange(oc), np.arange(taps), np.arange(c), indexing="ij")
    byte, sh, top = position(o, t, ch, taps, c, in_bits, w_bits)
    field = np.where(top == 1, wk, wk + offset(w_bits)) & ((1 << w_bits) - 1)
    np.bitwise_or.at(out, byte.ravel(), (field << sh).ravel().astype(np.uint8))
    ko = k_offset(oc, taps, c, in_bits, w_bits)
    out[ko:ko + oc] = np.asarray(k, np.uint8)
    out[ko + oc] = bool(oc) and bool(np.all(np.asarray(k) == field_bits(w_bits)))
    return out.view(np.int8)
