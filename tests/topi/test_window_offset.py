"""Negative window padding: the kernel reads a window that starts |pad| rows/columns inside the
buffer it is given (row stride = the in_w passed), as the C model generator uses it for patches
held inside a larger region. Same output as the data passed alone with no padding."""
import shutil

import numpy as np
import pytest

from tvm_quantmcu.topi import get_kernel, runner
from tvm_quantmcu.topi.cases import random_case
from window_cases import OFFSETS, SPECS, embed

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host gcc")


@pytest.mark.parametrize("schedule", ["dsp", "portable"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_negative_padding_reads_inside_the_buffer(spec, schedule):
    k = get_kernel(spec, schedule, "host")
    lib = runner.host_library([k])
    rng = np.random.default_rng(17)
    case = random_case(spec, rng, window=spec.in_shape[:2] + (0, 0))
    alone = runner.run_host(lib, k, case.x, case.params, case.window)
    np.testing.assert_array_equal(alone, case.expected)
    for a, b in OFFSETS:
        big, win = embed(case.x, a, b, rng)
        got = runner.run_host(lib, k, big, case.params, win)
        np.testing.assert_array_equal(got, case.expected,
                                      err_msg=f"{spec.describe()} {schedule} offset {(a, b)}")
