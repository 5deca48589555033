"""The canonical patch layout the generated code runs (defined with the patch stage's
geometry in :mod:`tvm_quantmcu.patch.layout`, where the planner sizes the same buffers)."""
from ..patch.layout import (Call, PatchLayout, StageLayer, needed_regions, patch_layout,
                            stage_layout)

__all__ = ["Call", "PatchLayout", "StageLayer", "needed_regions", "patch_layout",
           "stage_layout"]
