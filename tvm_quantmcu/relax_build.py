"""The integer Relax module of a model + patch plan + policy, and running it on the Relax VM.

    mod = build("mbv2-fmnist", None, policy)       # import → PatchSplit → AnnotateBits
                                                   #   → VDPCRouting → LowerToQuantMCUKernels
    vm = compile_vm(mod)                           # llvm on the host
    logits_q, outlier = vm.run(quant.quantize_input(images))

``vm.run`` returns what ``tvm_quantmcu.search.Simulator.run`` returns: the quantized logits
(N×classes) and the routing decision of every patch (N×patches), so the two compare
bit-exactly. The module's own input is one quantized image, NHWC uint8 values without the
batch axis (see :mod:`relax_passes.lower_kernels`).
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from . import models, pipeline
from .patch import PatchPlan, analyze
from .quant import quantize_input
from .quant.packing import unpack
from .quant.policy import Policy, PolicyMismatchError


def _imported(model) -> pipeline.Imported:
    if isinstance(model, (str, pipeline.Imported, models.ModelRef)):
        return pipeline.load(model)         # a zoo name, FILE.pt2 or FILE.py:factory too
    raise TypeError(f"model must be a model name or file (pipeline.resolve), a ModelRef or "
                    f"tvm_quantmcu.pipeline.Imported, got {type(model).__name__}")


def _policy(imp: pipeline.Imported, policy) -> Policy:
    if isinstance(policy, Policy):
        pol = policy
    elif isinstance(policy, str) and os.path.exists(policy):
        pol = Policy.load(policy, imp.name)
    elif isinstance(policy, str):
        try:
            from .models.policies import load_policy
        except ImportError as e:
            raise PolicyMismatchError(f"{policy!r} is not a policy file and this build ships "
                                      "no named policies") from e
        pol = load_policy(imp.name, policy)
    else:
        raise TypeError(f"policy must be a Policy, a policy file or a shipped policy name, "
                        f"got {type(policy).__name__}")
    if pol.model != imp.name:
        raise PolicyMismatchError(f"policy {pol.name} is for model {pol.model!r}, not "
                                  f"{imp.name!r}")
    return pol


def _plan(imp: pipeline.Imported, plan, pol: Policy) -> PatchPlan | None:
    if plan is None:
        if pol.split_index is None:
            return None
        return analyze(imp.graph, pol.split_index, pol.grid)
    if isinstance(plan, Mapping):
        plan = analyze(imp.graph, plan.get("split_layer", plan.get("split_index")),
                       tuple(plan["grid"]))
    if (plan.split_index, tuple(plan.grid)) != (pol.split_index, tuple(pol.grid or ())):
        raise PolicyMismatchError(
            f"policy {pol.name} is for the plan split {pol.split_index} grid {pol.grid}, not "
            f"split {plan.split_index} grid {tuple(plan.grid)}")
    return plan


DEFAULT_TARGET = "cortex-m4"


def passes(imp: pipeline.Imported, plan: PatchPlan | None, pol: Policy,
           pad_mode: str = "explicit", target: str = DEFAULT_TARGET) -> list:
    """The pass list of :func:`build`, for use in a larger ``tvm.transform.Sequential``."""
    from relax_passes import AnnotateBits, LowerToQuantMCUKernels, PatchSplit, VDPCRouting
    seq = [PatchSplit(plan, pad_mode)] if plan is not None else []
    return seq + [AnnotateBits(pol), VDPCRouting(), LowerToQuantMCUKernels(target=target)]


def build(model, plan=None, policy=None, pad_mode: str = "explicit",
          target: str = DEFAULT_TARGET):
    """The integer Relax IRModule of `model` (zoo name or ``pipeline.Imported``) under
    `policy` (a Policy, a policy file, or a shipped policy name). plan: the policy's patch
    plan (a PatchPlan or ``{"split_layer", "grid"}``); None derives it from the policy.
    target: the kernels' target (``topi.TARGETS``; it decides how weights are stored)."""
    import tvm
    if policy is None:
        raise TypeError("build needs a policy")
    imp = _imported(model)
    pol = _policy(imp, policy)
    seq = tvm.transform.Sequential(passes(imp, _plan(imp, plan, pol), pol, pad_mode, target),
                                   name="QuantMCUBuild")
    return seq(imp.relax_mod)


def lower(graph, policy, plan=None, pad_mode: str = "explicit",
          target: str = DEFAULT_TARGET):
    """The lowered module of a layer graph (e.g. ``frontend.from_relax`` of a module TVM's
    importer made) under `policy`: its canonical Relax module through the QuantMCU passes.
    plan: the policy's PatchPlan (None derives it from the policy); target as in
    :func:`build`."""
    import tvm

    from .canonical import graph_to_relax
    if plan is None and policy.split_index is not None:
        plan = analyze(graph, policy.split_index, policy.grid)
    seq = tvm.transform.Sequential(passes(None, plan, policy, pad_mode, target),
                                   name="QuantMCUBuild")
    return seq(graph_to_relax(graph))


class IntegerVM:
    """A lowered module compiled for the host and run on the Relax VM."""

    def __init__(self, mod, target="llvm"):
        import tvm
        from tvm import relax
        self._tvm = tvm
        tgt = tvm.target.Target({"kind": target} if isinstance(target, str) else target)
        # what main runs (the float layers the module keeps as its reference are not built)
        runs = relax.transform.DeadCodeElimination(entry_functions=["main"])(mod)
        self.vm = relax.VirtualMachine(tvm.compile(runs, target=tgt), tvm.cpu())
        main = mod["main"]
        self.out_bits = int(main.attrs["quantmcu.output_bits"])
        self.classes = int(main.attrs["quantmcu.output_channels"])

    def run_one(self, image_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits values, outlier flags) of one quantized H×W×C image."""
        x = self._tvm.runtime.tensor(np.ascontiguousarray(image_q, np.uint8))
        logits, flags = self.vm["main"](x)
        return unpack(logits.numpy(), self.out_bits, self.classes), flags.numpy().astype(bool)

    def run(self, x_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Quantized NHWC images N×H×W×C → (logits N×classes int32, outlier N×patches)."""
        outs = [self.run_one(x) for x in np.asarray(x_q)]
        return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])

    def classify(self, images_nchw: np.ndarray) -> np.ndarray:
        """Top-1 of float images N×C×H×W in [0, 1]."""
        return self.run(quantize_input(images_nchw))[0].argmax(axis=1)


def compile_vm(mod, target="llvm") -> IntegerVM:
    return IntegerVM(mod, target)
