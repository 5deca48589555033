"""Helium (MVE) micro-kernels (``ukernels/qmcu_ukernels_mve.h``): which implementation a kernel
runs on a target, and the scratch the MVE one takes.

The micro-kernels are chosen by the C preprocessor from the target's features, so the source
TVM generates is the same for every target: Helium where the compiler targets it
(``__ARM_FEATURE_MVE``: ``cortex-m55``), else the ARMv7E-M DSP ones (``__ARM_FEATURE_DSP``),
else portable C. The knob ``isa="dsp"`` keeps the DSP micro-kernels on a Helium target (the
kernel file defines ``QMCU_NO_MVE``): the side-by-side comparison of the kernel benchmark.
"""
from __future__ import annotations

from micro_project.board_table import CPUS

from . import compute

ISA_KNOB = "isa"
ISAS = ("auto", "dsp")        # values of the knob; "auto" is the default
# the micro-kernels' unpacked-window buffer: QMCU_MVE_MAX_K and QMCU_MVE_SLACK of the header
MAX_K, SLACK = 2304, 64


def check_knob(value) -> None:
    if value not in ISAS:
        raise ValueError(f"unknown {ISA_KNOB} knob {value!r}; known: {', '.join(ISAS)}")


def prelude(knobs: dict) -> str:
    """Preprocessor lines the knob puts at the top of the kernel file."""
    return "#define QMCU_NO_MVE 1\n" if knobs.get(ISA_KNOB, "auto") == "dsp" else ""


def micro_kernel_isa(target: str, knobs: dict) -> str:
    """"mve", "dsp" or "c": the micro-kernel implementation the kernels take on `target`."""
    cpu = CPUS.get(target)
    if cpu is None:
        return "c"
    if cpu.mve and knobs.get(ISA_KNOB, "auto") == "auto":
        return "mve"
    return "dsp" if cpu.dsp else "c"


def stores_int8_weights(target: str | None) -> bool:
    """Whether layers lowered for `target` store sub-byte weights as int8: the Helium
    micro-kernels read int8 weights only, and on the Cortex-M55 they beat the DSP kernels that
    read packed or narrow sub-byte weights (same values, same integer result; more flash).
    Decided once, at lowering (``LowerToQuantMCUKernels(target=...)``), from the default
    knobs."""
    return target is not None and micro_kernel_isa(target, {}) == "mve"


def stored_w_bits(w_bits: int, target: str | None) -> int:
    """The weight width a kernel's spec carries for weights of `w_bits` on `target`."""
    return 8 if stores_int8_weights(target) else w_bits


def scratch_bytes(spec: compute.KernelSpec, src: str) -> int:
    """Bytes of ``qmcu_mve_buf`` the MVE micro-kernels of this kernel use (unpacked 4/2-bit
    windows, two pixels at a time; depthwise: also the weights in channel order). 8-bit
    windows are read in place."""
    if spec.in_bits == 8:
        return 0
    kh, kw = compute.kernel_taps(spec)
    c = spec.in_channels
    if "qmcu_conv(" in src or "qmcu_conv_acc(" in src:
        k = kh * kw * compute.weight_channels(spec)
        return 0 if k > MAX_K else 2 * (k + SLACK)
    if "qmcu_dw(" in src or "qmcu_dw_acc(" in src:
        need = (kh * kw * c + 15) // 16 * 16 + kh * (spec.stride[1] + kw) * c + SLACK
        return need if need <= 2 * (MAX_K + SLACK) else 0
    return 0
