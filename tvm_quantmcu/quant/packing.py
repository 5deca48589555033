"""Sub-byte packing of activation tensors: part of the C ABI.

NHWC; each pixel's C channels are packed along the channel axis into ceil(C·b/8) bytes, so
every pixel starts on a byte boundary. Within a byte the lowest-index channel sits in the least
significant bits: at 4 bits channel 2k is bits 0-3 and 2k+1 bits 4-7; at 2 bits channel 4k+j is
bits 2j..2j+1. Unused high bits of a pixel's last byte are zero.
"""
from __future__ import annotations

import numpy as np


def packed_channels(c: int, bits: int) -> int:
    """Bytes per pixel of a C-channel tensor at `bits`."""
    return (c * bits + 7) // 8


def packed_bytes(shape_hwc: tuple[int, int, int], bits: int) -> int:
    h, w, c = shape_hwc
    return h * w * packed_channels(c, bits)


def pack(q: np.ndarray, bits: int) -> np.ndarray:
    """(..., C) unsigned values < 2**bits → (..., ceil(C·bits/8)) uint8."""
    q = np.asarray(q)
    if bits == 8:
        return q.astype(np.uint8)
    per = 8 // bits
    c = q.shape[-1]
    pad = (-c) % per
    qp = np.concatenate([q, np.zeros(q.shape[:-1] + (pad,), q.dtype)], axis=-1) if pad else q
    qp = qp.astype(np.uint8).reshape(q.shape[:-1] + (-1, per))
    out = np.zeros(qp.shape[:-1], np.uint8)
    for j in range(per):
        out |= (qp[..., j] & ((1 << bits) - 1)) << (bits * j)
    return out


def unpack(p: np.ndarray, bits: int, c: int) -> np.ndarray:
    """Inverse of :func:`pack`: (..., bytes) uint8 → (..., C) int32."""
    p = np.asarray(p, np.uint8)
    if bits == 8:
        return p[..., :c].astype(np.int32)
    per = 8 // bits
    vals = np.stack([(p >> (bits * j)) & ((1 << bits) - 1) for j in range(per)], axis=-1)
    return vals.reshape(p.shape[:-1] + (-1,))[..., :c].astype(np.int32)
