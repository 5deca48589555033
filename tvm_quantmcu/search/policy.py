"""Compatibility: the policy lives in :mod:`tvm_quantmcu.quant.policy`."""
from ..quant.policy import FORMAT_VERSION, POLICIES, Policy, PolicyMismatchError  # noqa: F401
