"""Shipped quantization policies of the zoo models, so deploying needs no search.

Each ``<model>.<policy>.json`` was made by :func:`tvm_quantmcu.search.shipped.make` (``python -m
tvm_quantmcu.search.shipped``), which runs the same search as ``quantmcu search --model M
--policy P --sram-kb K`` (λ chosen automatically on the validation split for quantmcu). A
policy records the checkpoint hash; loading it for retrained weights is refused.
"""
from __future__ import annotations

import os

from ...quant.policy import Policy, PolicyMismatchError
from .. import checkpoint_hash

POLICY_DIR = os.path.dirname(__file__)
SHIPPED = ("int8", "quantmcu")
# Φ of the shipped (and deploy's freshly searched) quantmcu policies: the modelled device
# cycles of the real kernels (search/devcost.py), which the Cortex-M4 rewards; BitOPs do not
SHIPPED_PHI = "device"
# SRAM budget (KB) each model's policies were planned for: the smallest round budget its
# patch planner can meet.
SRAM_KB = {"mbv2-fmnist": 32, "mcunet-fmnist": 48}


def policy_path(model: str, policy: str) -> str:
    return os.path.join(POLICY_DIR, f"{model}.{policy}.json")


def available(model: str) -> list[str]:
    return [p for p in SHIPPED if os.path.exists(policy_path(model, p))]


def load_policy(model: str, policy: str):
    """The shipped policy `policy` of zoo model `model` (checked against its checkpoint)."""
    path = policy_path(model, policy)
    if not os.path.exists(path):
        have = ", ".join(available(model)) or "none"
        raise PolicyMismatchError(
            f"no shipped {policy!r} policy for {model} (shipped: {have}); make one with "
            f"`quantmcu search --model {model} --policy {policy} --out FILE`")
    return Policy.load(path, model=model, model_hash=checkpoint_hash(model))
