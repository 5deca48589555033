"""Patch-based inference: the analysis of a patch stage (windows, halo, border padding, MACs,
peak SRAM), the planner that picks a split and grid for an SRAM budget, and the integer patch
executor that runs a quantized graph patch by patch."""
from .analysis import (LayerPatch, Patch, PatchPlan, SplitError, analyze, check_split,
                       policy_peak, split_candidates)
from .executor import input_window, run_patch, run_patch_int, run_rest, run_stage
from .geometry import Box, grid_boxes, layer_window, split_ranges, window_1d
from .memory import arena_peak, layerwise_peak, layerwise_profile, live_tensors, tensor_bytes
from .planner import NoPlanFitsError, PlanSearch, enumerate_plans, plan

__all__ = [
    "LayerPatch", "Patch", "PatchPlan", "SplitError", "analyze", "check_split",
    "policy_peak", "split_candidates", "arena_peak", "input_window", "run_patch", "run_patch_int", "run_rest", "run_stage",
    "Box", "grid_boxes", "layer_window", "split_ranges", "window_1d", "layerwise_peak",
    "layerwise_profile", "live_tensors", "tensor_bytes", "NoPlanFitsError", "PlanSearch",
    "enumerate_plans", "plan",
]
