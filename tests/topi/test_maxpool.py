"""Max pooling kernels vs the integer reference on the host: every input/output width, every
schedule, border and patch windows."""
import shutil

import numpy as np
import pytest

from tvm_quantmcu.quant import maxpool_int, pack
from tvm_quantmcu.topi import KernelSpec, get_kernel, prepare, runner
from tvm_quantmcu.topi.cases import random_case

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs a host gcc")


@pytest.mark.parametrize("schedule", ["dsp", "portable", "default"])
@pytest.mark.parametrize("in_bits, out_bits", [(8, 8), (4, 4), (2, 2), (8, 4), (4, 8), (2, 8)])
def test_maxpool_matches_reference(in_bits, out_bits, schedule):
    spec = KernelSpec("maxpool", (9, 10, 13), 13, (3, 3), (2, 2), (1, 1, 1, 1), in_bits,
                      out_bits)
    k = get_kernel(spec, schedule, "host")
    lib = runner.host_library([k])
    rng = np.random.default_rng(in_bits * 10 + out_bits)
    # full map, then an interior-patch window (no top/left padding, taller and wider)
    for win in [(9, 10, 1, 1), (10, 11, 0, 0), (9, 10, 1, 1)]:
        case = random_case(spec, rng, window=win)
        np.testing.assert_array_equal(runner.run_host(lib, k, case.x, case.params, case.window),
                                      case.expected, err_msg=f"{spec.describe()} {win}")


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_shared_quantization_is_the_plain_window_maximum(bits):
    """M = 2^30, n = 30, zp_out = zp_in: the kernel returns the window maxima themselves."""
    spec = KernelSpec("maxpool", (6, 6, 8), 8, (2, 2), (2, 2), (0, 0, 0, 0), bits, bits)
    k = get_kernel(spec, "dsp", "host")
    lib = runner.host_library([k])
    rng = np.random.default_rng(bits)
    x = rng.integers(0, 1 << bits, (1, 6, 6, 8))
    zp = int(rng.integers(0, 1 << bits))
    p = prepare(spec, M=1 << 30, n=30, zp_in=zp, zp_out=zp, lo=0, hi=(1 << bits) - 1)
    y = runner.run_host(lib, k, pack(x[0], bits), p)
    want = x.reshape(1, 3, 2, 3, 2, 8).max(axis=(2, 4))
    assert np.array_equal(want, maxpool_int(x, zp, (2, 2), (2, 2), (0,) * 4, 1 << 30, 30, zp,
                                            0, (1 << bits) - 1))
    np.testing.assert_array_equal(y, pack(want[0], bits).reshape(-1))


@pytest.mark.qemu
def test_maxpool_on_qemu_cortex_m4(tmp_path):
    from micro_project import qemu
    if not qemu.have_toolchain():
        pytest.skip("needs arm-none-eabi-gcc and qemu-system-arm")
    rng = np.random.default_rng(5)
    cases = []
    for ib, ob, win in [(8, 8, None), (4, 8, (10, 11, 0, 0)), (2, 4, None), (8, 2, None)]:
        spec = KernelSpec("maxpool", (9, 10, 11), 11, (3, 3), (2, 2), (1, 1, 1, 1), ib, ob)
        c = random_case(spec, rng, window=win)
        cases.append(runner.Case(get_kernel(spec, "dsp", "cortex-m4"), c.x, c.params,
                                 c.expected, c.window))
    res = runner.run_qemu(cases, tmp_path, timeout=120)
    assert [r.mismatches for r in res] == [0] * len(cases)
    assert all(r.instructions > 0 for r in res)
