"""Packed low-bit-weight kernels on QEMU mps2-an386 (Cortex-M4: SMLAD, AND with a rotated
register, USADA8) vs the integer reference: every (a, w) pair, odd channel counts, stride 2,
borders, and the exactness bound (all-maximum activations against all-extreme weights, long
reductions with many drains)."""
import numpy as np
import pytest

from micro_project import qemu
from tvm_quantmcu.topi import KernelSpec, get_kernel, runner, wpack
from tvm_quantmcu.topi.compute import packs_weights
from tvm_quantmcu.topi.cases import random_case

pytestmark = [pytest.mark.qemu,
              pytest.mark.skipif(not qemu.have_toolchain(),
                                 reason="needs arm-none-eabi-gcc and qemu-system-arm")]

PAIRS = [(4, 4), (2, 4), (4, 2), (2, 2)]


def _specs(a, w, rng):
    g = 32 // a
    c = int(rng.integers(g, 3 * g)) | 1                        # odd channel counts
    oc = int(rng.integers(5, 12))               # more than one output byte
    ob = int(rng.choice([8, 4, 2]))
    return [
        KernelSpec("conv2d", (5, 6, c), oc, (1, 1), in_bits=a, out_bits=ob, w_bits=w),
        KernelSpec("conv2d", (7, 7, c), oc | 1, (3, 3), (2, 2), (1, 1, 1, 1), a, 8, w_bits=w),
        KernelSpec("conv2d", (5, 5, 2 * g), oc, (3, 3), (1, 1), (1, 0, 0, 1), a, ob,
                   w_bits=w),
        KernelSpec("dense", (2, 2, c), oc, in_bits=a, out_bits=8, w_bits=w),
        # the bound: the longest reduction the packed accumulator takes, extreme data
        KernelSpec("dense", (1, 1, min(wpack.high_field_limit(a, w) // g * g, 4992)), 4,
                   in_bits=a, out_bits=8, w_bits=w),
    ]


def _run(tmp_path, pairs, per_spec, seed):
    rng = np.random.default_rng(seed)
    cases = []
    for a, w in pairs:
        for j, spec in enumerate(_specs(a, w, rng)):
            assert packs_weights(spec)
            # every third kernel requantizes each channel pair from registers (knob)
            k = get_kernel(spec, "dsp", "cortex-m4", {"requant_at": "pair"} if j % 3 == 1 else {})
            for i in range(per_spec):
                extreme = spec.op == "dense" and spec.out_channels == 4 or i == per_spec - 1
                # small shifts: per-channel exponents instead of the uniform k = S
                c = random_case(spec, rng, extreme=extreme, small_shift=len(cases) % 2 == 1)
                cases.append(runner.Case(k, c.x, c.params, c.expected, c.window))
    res = runner.run_qemu(cases, tmp_path, timeout=300)
    bad = [(c.kernel.spec.describe(), r.mismatches) for c, r in zip(cases, res) if r.mismatches]
    assert not bad, bad
    return len(cases)


def test_packed_kernels_on_qemu_small(tmp_path):
    assert _run(tmp_path, [(4, 4), (2, 2)], 1, 3) == 10


@pytest.mark.slow
def test_packed_kernels_on_qemu(tmp_path):
    assert _run(tmp_path, PAIRS, 2, 5) >= 30
