"""Fixed-point requantization: the one rounding rule every backend reproduces.

A real multiplier m > 0 is represented as (M, n) with M an int32 in [2**30, 2**31) (fewer
bits only when n would exceed MAX_SHIFT) and m ≈ M · 2**-n. Requantizing an int32 accumulator:

    requant(acc, M, n) = floor((acc · M + 2**(n-1)) / 2**n)        (64-bit product)

i.e. a single rounding, half up. Floor divisions compose exactly, so on Cortex-M4 with n > 32
the kernels take the high word of the product (``SMMUL``), shift by n-33 and let ``USAT``
with ``ASR #1`` do the last halving with the rounding folded in (tvm_quantmcu/topi/README.md). Residual adds use one shared n for both inputs:

    add(x1, x2) = floor(((x1-z1)·M1 + (x2-z2)·M2 + 2**(n-1)) / 2**n) + z_out
"""
from __future__ import annotations

import math

import numpy as np

MAX_SHIFT = 62
MIN_SHIFT = 1


def quantize_multiplier(m: float) -> tuple[int, int]:
    """(M, n) with M in [2**30, 2**31) and m ≈ M·2**-n (round to nearest)."""
    if not (m > 0 and math.isfinite(m)):
        raise ValueError(f"requantization multiplier must be positive and finite, got {m}")
    mant, exp = math.frexp(m)          # m = mant·2**exp, mant in [0.5, 1)
    n = 31 - exp
    M = round(mant * (1 << 31))
    if M == 1 << 31:                   # mantissa rounded up to 1.0
        M //= 2
        n -= 1
    if n > MAX_SHIFT:                  # tiny multiplier: lose mantissa bits, keep the shift
        M = round(m * 2.0 ** MAX_SHIFT)
        n = MAX_SHIFT
    if n < MIN_SHIFT:
        raise ValueError(f"requantization multiplier {m} is too large (≥ 2**30)")
    return int(M), int(n)


def quantize_multipliers(ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(m)) for m in np.asarray(ms).reshape(-1)]
    return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))


def shared_shift_multipliers(ms: list[float]) -> tuple[list[int], int]:
    """Multipliers with one common shift (for adds): the largest gets a full 31-bit M."""
    _, n = quantize_multiplier(max(ms))
    Ms = [int(round(m * 2.0 ** n)) for m in ms]
    if max(Ms) >= 1 << 31:
        n -= 1
        Ms = [int(round(m * 2.0 ** n)) for m in ms]
    return Ms, n


def requantize(acc: np.ndarray, M, n) -> np.ndarray:
    """floor((acc·M + 2**(n-1)) / 2**n) elementwise; M, n broadcast (per channel on the last
    axis). Exact in int64 for |acc| < 2**32 and M < 2**31."""
    acc = np.asarray(acc, np.int64)
    M = np.asarray(M, np.int64)
    n = np.asarray(n, np.int64)
    return (acc * M + (np.int64(1) << (n - 1))) >> n


def round_shift(v: np.ndarray, n) -> np.ndarray:
    """floor((v + 2**(n-1)) / 2**n) for int64 v (the rounding of the add)."""
    n = np.asarray(n, np.int64)
    return (np.asarray(v, np.int64) + (np.int64(1) << (n - 1))) >> n


def requantize_exact(acc: int, M: int, n: int):
    """The same rule with Python integers (property tests compare against Fraction)."""
    return (acc * M + (1 << (n - 1))) >> n
