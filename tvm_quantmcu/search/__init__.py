"""QuantMCU search: patch-aware calibration, VDPC routing, VDQS, the baselines, the exact
integer simulation of a policy, and versioned policy files."""
from .api import (DEFAULT_SRAM_KB, SearchContext, SearchError, SearchParams, auto_lambda,
                  device_cost, evaluate_policy, int8_bitops, lambda_front, make_policy, prepare,
                  prepare_graph, quantmcu_policy, rl_policy)
from . import api, rl
from .baselines import BudgetError, memory_driven, weight_bytes
from .calibrate import StageCalibration, best_range, calibrate_stage
from .engine import ENGINES, CompiledPolicy, fastest_engine
from ..quant.policy import POLICIES, Policy, PolicyMismatchError
from .simulate import Simulator, evaluate
from .vdqs import VDQS, entropy

__all__ = [
    "DEFAULT_SRAM_KB", "SearchContext", "SearchError", "SearchParams", "int8_bitops", "prepare_graph", "auto_lambda", "evaluate_policy",
    "lambda_front", "make_policy", "prepare", "quantmcu_policy", "rl_policy", "BudgetError",
    "memory_driven", "weight_bytes", "StageCalibration", "best_range", "calibrate_stage",
    "POLICIES", "Policy", "PolicyMismatchError", "Simulator", "evaluate", "VDQS", "entropy",
    "ENGINES", "CompiledPolicy", "fastest_engine", "DeviceCost", "policy_profile",
    "device_cost",
]
