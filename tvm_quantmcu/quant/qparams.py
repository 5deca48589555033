"""Quantization parameters of activations (asymmetric, unsigned) and weights (symmetric)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACT_BITS = (8, 4, 2)
WEIGHT_BITS = (8, 4, 2)


@dataclass(frozen=True)
class ActQuant:
    """Per-tensor asymmetric uniform quantization; storage is unsigned 0..2**bits-1.

    real = scale · (q - zero_point); q = clamp(floor(real/scale + 1/2) + zero_point).
    """
    scale: float
    zero_point: int
    bits: int

    @property
    def qmax(self) -> int:
        return (1 << self.bits) - 1

    @classmethod
    def from_range(cls, lo: float, hi: float, bits: int) -> "ActQuant":
        if bits not in ACT_BITS:
            raise ValueError(f"activation bits must be one of {ACT_BITS}, got {bits}")
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo < 1e-8:
            hi = lo + 1e-8
        qmax = (1 << bits) - 1
        scale = (hi - lo) / qmax
        zp = int(np.clip(np.floor(-lo / scale + 0.5), 0, qmax))
        return cls(float(scale), zp, bits)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        q = np.floor(np.asarray(x, np.float64) / self.scale + 0.5) + self.zero_point
        return np.clip(q, 0, self.qmax).astype(np.int32)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (np.asarray(q, np.float64) - self.zero_point) * self.scale

    def clamp_bounds(self, act: str | None) -> tuple[int, int]:
        """Integer clamp of a fused activation in this output's domain."""
        lo, hi = 0, self.qmax
        if act in ("relu", "relu6"):
            lo = max(lo, self.zero_point)
        if act == "relu6":
            hi = min(hi, self.zero_point + int(np.floor(6.0 / self.scale + 0.5)))
        return lo, hi

    def to_json(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point, "bits": self.bits}


def weight_range(bits: int) -> tuple[int, int]:
    """Integer range of weights quantized to `bits`: symmetric, [-(2^(b-1) - 1), 2^(b-1) - 1]
    (−127..127, −7..7, −1..1). The one definition: the quantizer, the reference, the search
    and the packed low-bit-weight kernels (whose exactness bounds rely on it) read it here."""
    if bits not in WEIGHT_BITS:
        raise ValueError(f"weight bits must be one of {WEIGHT_BITS}, got {bits}")
    qmax = (1 << (bits - 1)) - 1
    return -qmax, qmax


# Clipping ratios tried per output channel for sub-byte weights (max |w| × ratio).
CLIP_RATIOS = tuple(np.round(np.arange(1.0, 0.49, -0.025), 3))


def quantize_weights(w: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel (axis 0) quantization to :func:`weight_range`.

    8 bits: scale = max |w| / qmax. Below 8 bits the few levels make the largest weight a poor
    scale: each channel's range is max |w| × r, r from CLIP_RATIOS minimising the squared
    error (ties keep the larger range). Returns (int8 weights, float64 scale per channel)."""
    qmax = weight_range(bits)[1]
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    amax = np.abs(flat).max(axis=1)
    ratios = (1.0,) if bits == 8 else CLIP_RATIOS
    scale = best_err = None
    for r in ratios:
        s = np.where(amax > 0, amax * r / qmax, 1.0)
        q = np.clip(np.floor(flat / s[:, None] + 0.5), -qmax, qmax)
        err = ((q * s[:, None] - flat) ** 2).sum(axis=1)
        if scale is None:
            scale, best_err = s, err
            continue
        better = err < best_err * (1 - 1e-9)
        scale = np.where(better, s, scale)
        best_err = np.where(better, err, best_err)
    q = np.floor(w / scale.reshape((-1,) + (1,) * (w.ndim - 1)) + 0.5)
    return np.clip(q, -qmax, qmax).astype(np.int8), scale
