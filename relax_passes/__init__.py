"""TVM Relax passes of tvm-quantmcu; each composes in a ``tvm.transform.Sequential``.

PatchSplit (per-patch branches) → AnnotateBits (per-branch bits of a policy) → VDPCRouting
(runtime outlier check + ``relax.If``) → LowerToQuantMCUKernels (integer TIR kernels)."""
from .annotate_bits import AnnotateBits
from .common import QuantPassError
from .lower_kernels import LowerToQuantMCUKernels
from .patch_split import PatchSplit, PatchSplitError, branch_feature_maps, patch_functions
from .vdpc_routing import VDPCRouting, vdpc_thresholds

__all__ = ["PatchSplit", "PatchSplitError", "branch_feature_maps", "patch_functions",
           "AnnotateBits", "VDPCRouting", "vdpc_thresholds", "LowerToQuantMCUKernels",
           "QuantPassError"]
