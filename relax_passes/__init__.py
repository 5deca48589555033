"""TVM Relax passes of tvm-quantmcu; each composes in a ``tvm.transform.Sequential``."""
from .patch_split import PatchSplit, PatchSplitError, branch_feature_maps, patch_functions

__all__ = ["PatchSplit", "PatchSplitError", "branch_feature_maps", "patch_functions"]
