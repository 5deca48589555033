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
    body = _body(dsp)
    # one fused call (products, requantization, packing) per pair of output pixels
    assert body.count("qmcu_conv(") == 1 and ", 2, 1, 1, 16, 24, 1, 8, 8)" in body
    odd = get_kernel(KernelSpec("conv2d", (7, 7, 16), 24, (1, 1)), "dsp", "cortex-m4")
    assert ", 1, 1, 1, 16, 24, 1, 8, 8)" in _body(odd)     # odd tile width: one pixel per call
    dflt = get_kernel(SPEC, "default", "cortex-m4")
    assert "qmcu_" not in _body(dflt)
    dw = get_kernel(KernelSpec("depthwise", (8, 8, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1)),
                    "dsp", "cortex-m4")
    assert "qmcu_dw(" in _body(dw)
    # output channels that do not fill the last output byte: products only, generated requant
    part = get_kernel(KernelSpec("conv2d", (4, 4, 8), 3, (1, 1), out_bits=4), "dsp", "host")
    assert "qmcu_conv_acc(" in _body(part) and "qmcu_conv(" not in _body(part)


def test_pointwise_reads_the_packed_input_in_place():
    """1×1 convolutions never pad: no padded-input buffer, the micro-kernel reads x."""
    for bits in (8, 4, 2):
        k = get_kernel(KernelSpec("conv2d", (8, 8, 32), 16, (1, 1), in_bits=bits), "dsp", "host")
        body = _body(k)
        assert "xpad" not in body and "qmcu_conv(" in body and "(&(x[" in body
    dw = get_kernel(KernelSpec("depthwise", (8, 8, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1), 4),
                    "dsp", "host")
    assert "uint8_t xpad" in _body(dw)     # padded rows, kept packed


def test_loop_pragma_is_a_choice_of_our_schedules():
    dsp = get_kernel(SPEC, "dsp", "cortex-m4")
    dflt = get_kernel(SPEC, "default", "cortex-m4")
    dflt_pragma = get_kernel(SPEC, "default", "cortex-m4", {"loop_pragma": True})
    assert "#pragma GCC optimize" in dsp.source
    assert "#pragma GCC optimize" not in dflt.source       # TVM's lowering as emitted
    assert "#pragma GCC optimize" in dflt_pragma.source
    assert dflt_pragma.name != dflt.name


def test_cache_and_distinct_names():
    a = get_kernel(SPEC, "dsp", "cortex-m4")
    assert get_kernel(SPEC, "dsp", "cortex-m4") is a
    assert get_kernel(SPEC, "portable", "cortex-m4").name != a.name


def test_scratch_is_per_row_not_per_tile():
    big = KernelSpec("depthwise", (32, 32, 16), 16, (3, 3), (1, 1), (1, 1, 1, 1))
    dflt = get_kernel(big, "default", "host")
    dsp = get_kernel(big, "dsp", "host")
    assert dflt.scratch_bytes >= 34 * 34 * 16 * 2          # whole padded tile + accumulators
    assert dsp.scratch_bytes <= 3 * 34 * 16 + 2 * 16 * 4   # three packed padded rows + two pixels


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_flash_bytes_measured():
    k = get_kernel(SPEC, "dsp", "cortex-m4")
    assert 200 < k.flash_bytes() < 20000


@pytest.mark.parametrize("knobs, schedule", [
    ({"xpad_at": "pixel"}, "dsp"), ({"pixels": 1}, "dsp"), ({"unroll_pixels": 2}, "dsp"),
    ({"xpad_at": "pixel", "pixels": 1, "unroll_pixels": 4}, "dsp"), ({"pixels": "row"}, "dsp"),
    ({"requant_at": "pair"}, "dsp"), ({"pixels": "row", "requant_at": "pair"}, "dsp"),
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


WARNING_SPECS = [
    KernelSpec("conv2d", (6, 6, 24), 8, (1, 1), in_bits=2, out_bits=2),       # partial word
    KernelSpec("conv2d", (6, 6, 3), 8, (3, 3), (2, 2), (1, 1, 1, 1), 8, 8),  # gathered
    KernelSpec("conv2d", (6, 6, 16), 7, (3, 3), (1, 1), (1, 1, 1, 1), 4, 8),  # odd channels
    KernelSpec("conv2d", (6, 6, 16), 3, (1, 1), in_bits=8, out_bits=4),       # products only
    KernelSpec("depthwise", (6, 6, 20), 20, (3, 3), (1, 1), (1, 1, 1, 1), 2, 2),
    KernelSpec("depthwise", (7, 7, 13), 13, (3, 3), (2, 2), (1, 1, 1, 1), 8, 4),
    KernelSpec("dense", (1, 1, 33), 10, in_bits=4, out_bits=8),
]


@pytest.mark.parametrize("cc", [["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb"], ["gcc"]],
                         ids=["cortex-m4", "host"])
def test_micro_kernels_compile_warning_free(cc, tmp_path):
    """Kernels build with -std=c11 -Wall -Wextra -Werror, as the C model generator builds
    them (ABI arguments a kernel ignores are marked used in its body)."""
    import subprocess
    if shutil.which(cc[0]) is None:
        pytest.skip(f"needs {cc[0]}")
    for spec in WARNING_SPECS:
        src = get_kernel(spec, "dsp", "cortex-m4").write(tmp_path)[0]
        p = subprocess.run([*cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
                            f"-I{tmp_path}", "-c", str(src), "-o",
                            str(tmp_path / "k.o")], capture_output=True, text=True)
        assert p.returncode == 0, f"{spec.describe()}: {p.stderr[:1500]}"


def test_written_headers_are_the_ones_the_process_started_with(tmp_path, monkeypatch):
    """A long run keeps the micro-kernel headers it was imported with: a working tree that
    gains a header mid-run (its includer changed on disk) must not break its builds."""
    import re
    from tvm_quantmcu.topi import registry
    names = set(registry.UKERNEL_SOURCES)
    for text in registry.UKERNEL_SOURCES.values():       # every local include is carried
        assert set(re.findall(rb'#include "([^"]+)"', text)) <= {n.encode() for n in names}
    monkeypatch.setattr(registry, "UKERNEL_SOURCES",
                        {n: b"/* as imported */\n" + t
                         for n, t in registry.UKERNEL_SOURCES.items()})
    get_kernel(SPEC, "dsp", "cortex-m4").write(tmp_path)
    for n in names:
        assert (tmp_path / n).read_bytes().startswith(b"/* as imported */")
