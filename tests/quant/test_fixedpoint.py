"""The one rounding rule: requantize == exact rational result rounded half up."""
from fractions import Fraction
import math

import numpy as np
from hypothesis import given, settings, strategies as st

from tvm_quantmcu.quant.fixedpoint import (quantize_multiplier, requantize, requantize_exact,
                                            shared_shift_multipliers)

multipliers = st.floats(min_value=1e-9, max_value=2.0 ** 20, allow_nan=False)
accs = st.integers(min_value=-2 ** 31, max_value=2 ** 31 - 1)


@settings(max_examples=300, deadline=None)
@given(multipliers)
def test_multiplier_representation(m):
    M, n = quantize_multiplier(m)
    assert 0 < M < 2 ** 31
    if n < 62:
        assert M >= 2 ** 30
    assert abs(M / 2 ** n - m) <= 2.0 ** -(n + 1) + 1e-300


@settings(max_examples=500, deadline=None)
@given(accs, multipliers)
def test_requantize_is_exact_rational_rounded_half_up(acc, m):
    M, n = quantize_multiplier(m)
    exact = Fraction(acc) * Fraction(M, 2 ** n)
    want = math.floor(exact + Fraction(1, 2))
    got = int(requantize(np.array([acc]), M, n)[0])
    assert got == want == requantize_exact(acc, M, n)
    # against the real (unrepresented) multiplier: within one rounding step
    real = Fraction(acc) * Fraction(m)
    assert abs(got - real) <= 1 + abs(Fraction(acc)) * abs(Fraction(M, 2 ** n) - Fraction(m))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=100.0), min_size=2, max_size=2))
def test_shared_shift(ms):
    Ms, n = shared_shift_multipliers(ms)
    assert max(Ms) < 2 ** 31 and max(Ms) >= 2 ** 29
    for M, m in zip(Ms, ms):
        assert abs(M / 2 ** n - m) <= 2.0 ** -(n + 1) * 1.0001


def test_requantize_broadcasts_per_channel():
    acc = np.array([[100, -100], [7, 8]])
    M = np.array([1 << 30, 3 << 29])
    n = np.array([31, 33])
    got = requantize(acc, M, n)
    want = [[requantize_exact(int(a), int(M[j]), int(n[j])) for j, a in enumerate(row)]
            for row in acc]
    assert got.tolist() == want


def test_bad_multiplier():
    import pytest
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            quantize_multiplier(bad)
