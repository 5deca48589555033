"""Low-bit Cortex-M kernels: TIR compute definitions, schedules, tensorized micro-kernels.

See README.md in this folder for the C kernel ABI.
"""
from .compute import ACT_BITS, OPS, KernelSpec, UnsupportedKernel, make_compute
from .params import KernelParams, params_for_layer, prepare, spec_for_layer
from .registry import TARGETS, Kernel, get_kernel
from .schedules import SCHEDULES

__all__ = ["ACT_BITS", "OPS", "KernelSpec", "UnsupportedKernel", "make_compute", "KernelParams",
           "params_for_layer", "prepare", "spec_for_layer", "TARGETS", "Kernel", "get_kernel",
           "SCHEDULES"]
