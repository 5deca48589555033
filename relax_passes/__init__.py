"""TVM Relax passes of tvm-quantmcu; each composes in a ``tvm.transform.Sequential``.

PatchSplit (per-patch branches) → AnnotateBits (the policy enters the IR: per-branch bits,
ranges, routing) → VDPCRouting (runtime outlier check + ``relax.If``) →
LowerToQuantMCUKernels (integer TIR kernels; the target enters here). After AnnotateBits every pass reads the module
only; :func:`policy_of` and :func:`layer_graph` give what the module carries (e.g. for the
integer reference ``tvm_quantmcu.search.Simulator(layer_graph(mod), policy_of(mod))``)."""
from .annotate_bits import AnnotateBits
from .common import (ATTR_BITS, ATTR_BITS8, ATTR_BITS_LOW, ATTR_W_BITS, QuantPassError,
                     layer_graph, policy_of)
from .lower_kernels import LowerToQuantMCUKernels
from .patch_split import PatchSplit, PatchSplitError, branch_feature_maps, patch_functions
from .vdpc_routing import VDPCRouting, vdpc_thresholds

__all__ = ["PatchSplit", "PatchSplitError", "branch_feature_maps", "patch_functions",
           "AnnotateBits", "VDPCRouting", "vdpc_thresholds", "LowerToQuantMCUKernels",
           "QuantPassError", "layer_graph", "policy_of", "ATTR_BITS", "ATTR_BITS8",
           "ATTR_BITS_LOW", "ATTR_W_BITS"]
