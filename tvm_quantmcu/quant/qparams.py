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


def quantize_weights(w: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel (axis 0) quantization to [-(2**(b-1)-1), 2**(b-1)-1].

    Returns (int8 weights, float64 scale per channel)."""
    if bits not in WEIGHT_BITS:
        raise ValueError(f"weight bits must be one of {WEIGHT_BITS}, got {bits}")
    qmax = (1 << (bits - 1)) - 1
    flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)
    scale = np.where(flat > 0, flat / qmax, 1.0)
    q = np.floor(w / scale.reshape((-1,) + (1,) * (w.ndim - 1)) + 0.5)
    return np.clip(q, -qmax, qmax).astype(np.int8), scale
