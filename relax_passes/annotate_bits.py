"""AnnotateBits: write a policy's bitwidths onto a PatchSplit module as function attributes.

Every patch function ``patch_r_c`` gets the bits of both of its dataflow branches, per
feature map: ``quantmcu.bits8`` (the all-8-bit branch an outlier patch takes) and
``quantmcu.bits_low`` (the searched low-bit branch), plus ``quantmcu.vdpc``. ``main`` gets
``quantmcu.bits`` for the layers after the cut, which run layer by layer. Layers with weights
below 8 bits are listed in ``quantmcu.w_bits``.

``main`` also carries the rest of the policy as ``quantmcu.quantization`` (JSON: ranges of
both branches, classification map and threshold, plan, provenance): from here on the passes
read the policy from the module (:func:`relax_passes.policy_of`), so a pass that changes a
width attribute changes what is lowered.

For the lowering each function also records which of the policy's two integer graphs
quantizes the tensors it computes (``quantmcu.quant``: "8bit" or "low"), the layers whose
ops it holds (``quantmcu.computes``) and the graph tensor of each parameter
(``quantmcu.param_tensors``). A VDPC patch function computes at 8 bits up to its
classification map; VDPCRouting then hands the rest to one of two continuations.
"""
from __future__ import annotations

import json

import tvm

from .common import (ATTR_BITS, ATTR_BITS8, ATTR_BITS_LOW, ATTR_COMPUTES, ATTR_PARAMS,
                     ATTR_POLICY, ATTR_QUANT, ATTR_QUANTIZATION, ATTR_ROLE, ATTR_VDPC,
                     ATTR_W_BITS, INPUT_TENSOR, QUANT_8BIT, QUANT_LOW, QuantPassError, attr,
                     layer_graph, patch_functions, str_list)


def graph_layers(policy) -> list[str]:
    """The layer names of the policy's model in graph order (every layer output has an
    8-bit range in the policy, recorded in graph order; a layer's output tensor carries the
    layer's name)."""
    return [t for t in policy.ranges8 if t != INPUT_TENSOR]


def _check_plan(policy, main) -> list[str]:
    """Stage layer names, checking that the module was split as the policy's plan says."""
    layers = graph_layers(policy)
    split = attr(main, "quantmcu.split_layer")
    if policy.split_index is None:
        if split is not None:
            raise QuantPassError(f"policy {policy.name} runs layer by layer, but the module "
                                 f"was split after {split}")
        return []
    want = layers[policy.split_index]
    if split is None:
        raise QuantPassError(f"policy {policy.name} runs the first layers per patch (split "
                             f"after {want}, grid {policy.grid}); run PatchSplit first")
    grid = [int(g) for g in main.attrs["quantmcu.grid"]]
    if str(split) != want or tuple(grid) != tuple(policy.grid):
        raise QuantPassError(f"the module was split after {split} with grid {grid}, but "
                             f"policy {policy.name} is for split after {want}, grid "
                             f"{list(policy.grid)}")
    return layers[:policy.split_index + 1]


@tvm.transform.module_pass(opt_level=0, name="AnnotateBits")
class AnnotateBits:
    """Annotate per-branch, per-feature-map bitwidths of `policy`
    (:class:`tvm_quantmcu.search.Policy`) on a PatchSplit module (see module docstring)."""

    def __init__(self, policy, func: str = "main"):
        self.policy, self.func = policy, func

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        pol = self.policy
        main = mod[self.func]
        graph = layer_graph(mod, self.func)
        missing = [l.output for l in graph.layers if l.output not in pol.ranges8]
        if missing:
            raise QuantPassError(f"policy {pol.name} has no range for {missing[0]} of the "
                                 "module's layer graph: it was made for another model")
        stage = _check_plan(pol, main)
        rest = [n for n in graph_layers(pol) if n not in stage]
        w_bits = {k: int(v) for k, v in pol.w_bits.items() if int(v) != 8}
        out = mod.clone()               # a pass must not change its input module
        for name, f in patch_functions(mod).items():
            if str_list(f.attrs["quantmcu.layers"]) != stage:
                raise QuantPassError(f"{name} computes {str_list(f.attrs['quantmcu.layers'])}"
                                     f" but the policy's stage is {stage}")
            f = f.with_attrs({
                ATTR_POLICY: pol.name, ATTR_ROLE: "patch",
                ATTR_BITS8: {t: 8 for t in stage},
                ATTR_BITS_LOW: {t: pol.act_bits(t) for t in stage},
                ATTR_VDPC: bool(pol.vdpc), ATTR_COMPUTES: stage,
                ATTR_QUANT: QUANT_8BIT if pol.vdpc else QUANT_LOW,
                ATTR_PARAMS: [INPUT_TENSOR],
                ATTR_W_BITS: {k: v for k, v in w_bits.items() if k in stage},
            })
            out[out.get_global_var(name)] = f
        quantization = {k: v for k, v in pol.to_json().items() if k not in ("bits_low", "w_bits")}
        main = main.with_attrs({
            ATTR_QUANTIZATION: json.dumps(quantization),
            ATTR_POLICY: pol.name, ATTR_ROLE: "main",
            ATTR_BITS: {t: pol.act_bits(t) for t in rest}, ATTR_COMPUTES: rest,
            ATTR_QUANT: QUANT_LOW, ATTR_PARAMS: [INPUT_TENSOR], ATTR_VDPC: bool(pol.vdpc),
            ATTR_W_BITS: {k: v for k, v in w_bits.items() if k in rest},
        })
        out[out.get_global_var(self.func)] = main
        return out
