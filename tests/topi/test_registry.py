"""Registry, ABI and schedule structure of the generated kernels."""
import shutil

import pytest

from tvm_quantmcu.topi import KernelSpec, get_kernel

SPEC = KernelSpec("conv2d", (8, 8, 16), 24, (1, 1), (1, 1), (0, 0, 0, 0), 8, 8)


def test_plain_pointer_signature_uniform_abi():
    k = get_kernel(SPEC, "dsp", "cortex-m4")
    assert (f"void {k.name}(uint8_t* x, int8_t* w, int32_t* bias, int32_t* mult, "
            "int32_t* shift, int32_t* qp, uint8_t* y, int32_t in_h, int32_t in_w, "
            "int32_t pad_t, int32_t pad_l)") in k.source
    assert "TVMFFI" not in k.source and "tvm/" not in k.source


def _body(k):
    """The generated function's body (after the micro-kernel header and prototypes)."""
    return k.source[k.source.rindex(f"void {k.name}("):].split("{", 1)[1]


def test_dsp_schedule_calls_micro_kernels_default_does_not():
    dsp = get_kernel(SPEC, "dsp", "cortex-m4")
    assert "qmcu_conv_px2(" in _body(dsp) and "qmcu_requant_px(" in _body(dsp)
    odd = get_kernel(KernelSpec("conv2d", (7, 7, 16), 24, (1, 1)), "dsp", "cortex-m4")
    assert "qmcu_conv_px(" in _body(odd)           # odd tile width: one pixel per call
    dflt = get_kernel(SPEC, "default", "cortex-m4")
    assert "qmcu_" not in _body(dflt)
    dw = get_kernel(KernelSpec("depthwise", (8, 8, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1)),
                    "dsp", "cortex-m4")
    assert "qmcu_dw_px2(" in _body(dw)


def test_cache_and_distinct_names():
    a = get_kernel(SPEC, "dsp", "cortex-m4")
    assert get_kernel(SPEC, "dsp", "cortex-m4") is a
    assert get_kernel(SPEC, "portable", "cortex-m4").name != a.name


def test_scratch_is_per_row_not_per_tile():
    big = KernelSpec("depthwise", (32, 32, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1))
    dflt = get_kernel(big, "default", "host")
    dsp = get_kernel(big, "dsp", "host")
    assert dflt.scratch_bytes >= 34 * 34 * 16 * 2          # whole padded tile + accumulators
    assert dsp.scratch_bytes <= 3 * 34 * 16 * 2 + 2 * 16 * 4   # three padded rows + two pixels


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_flash_bytes_measured():
    k = get_kernel(SPEC, "dsp", "cortex-m4")
    assert 200 < k.flash_bytes() < 20000


@pytest.mark.parametrize("knobs, schedule", [
    ({"xpad_at": "pixel"}, "dsp"), ({"pixels": 1}, "dsp"), ({"unroll_pixels": 2}, "dsp"),
    ({"xpad_at": "pixel", "pixels": 1, "unroll_pixels": 4}, "dsp"),
    ({"xpad_at": "pixel", "unroll_pixels": 2}, "portable")])
def test_knobs_keep_results_exact(knobs, schedule):
    import numpy as np
    from tvm_quantmcu.topi import runner
    from tvm_quantmcu.topi.cases import random_case
    spec = KernelSpec("conv2d", (8, 8, 5), 6, (3, 3), (1, 1), (1, 1, 1, 1), 4, 8)
    k = get_kernel(spec, schedule, "host", knobs)
    case = random_case(spec, np.random.default_rng(5))
    y = runner.run_host(runner.host_library([k]), k, case.x, case.params, case.window)
    assert np.array_equal(y, case.expected)


def test_unknown_target_and_schedule():
    with pytest.raises(ValueError, match="cortex-m4"):
        get_kernel(SPEC, "dsp", "riscv")
    with pytest.raises(ValueError, match="portable"):
        get_kernel(SPEC, "fast", "host")
