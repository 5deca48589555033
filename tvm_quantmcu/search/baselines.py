"""Baseline policies in the same framework: layer-by-layer int8, MCUNetV2 (patches, uniform
int8), and memory-driven rule-based mixed precision (Rusci et al.)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..patch import analyze, tensor_bytes
from .calibrate import best_range
from ..quant.policy import Policy


class BudgetError(ValueError):
    """A RAM or Flash budget cannot be met by any bit assignment."""


def firmware_params(graph, policy: Policy,
                    target: str = "cortex-m4") -> list[tuple[str, str, object]]:
    """(call tag, layer, KernelParams) of every kernel call of `policy`'s firmware for
    `target`, as the C generator emits them from the module lowered for it (stage layers in
    both VDPC branches, the second input of a stage add first when the generator swaps them),
    without lowering: the parameters depend on the layer, its widths, the kernel's channels
    and taps and how the target stores weights only. Raises ``codegen.UnsupportedModelError``
    when a layer has no kernel."""
    from ..codegen import UnsupportedModelError
    from ..topi import UnsupportedKernel, params_for_layer, prepare
    from .devcost import NetworkSpecs
    plan = None if policy.split_index is None else analyze(graph, policy.split_index,
                                                           policy.grid)
    ns = NetworkSpecs(graph, plan, target)
    qg8, qg_low = policy.qgraph8(graph), policy.qgraph_low(graph)
    head = set()
    if policy.vdpc and plan is not None:
        names = [l.name for l in plan.stage_layers]
        head = set(names[:names.index(graph.producer(policy.classification_map).name) + 1])
    out = []

    def call(name, qg, branch, bits):
        q = qg.qlayer(name)
        try:
            spec = ns.call(name, bits, policy.w_bits).spec
            if spec.op == "add" and name in ns.stage_names and ns._add_order[name] == (1, 0):
                lo, hi = q.clamp
                params = prepare(spec, M=q.M_add[1], M2=q.M_add[0], n=int(q.n),
                                 zp_in=q.in_q[1].zero_point, zp_out=q.out_q.zero_point,
                                 lo=lo, hi=hi, zp_in2=q.in_q[0].zero_point)
            else:
                params = params_for_layer(q, spec)
        except UnsupportedKernel as e:
            raise UnsupportedModelError(f"layer {name}: {e}") from e
        out.append((f"{name}_{branch}" if branch else name, name, params))

    low = {t: policy.act_bits(t) for t in graph.shapes}
    for l in graph.layers:
        routed = policy.vdpc and l.name in ns.stage_names
        if routed:
            call(l.name, qg8, "8", {})
        if not (routed and l.name in head):
            call(l.name, qg_low, "low" if routed else "", low)
    return out


def weight_bytes(graph, policy: Policy, target: str = "cortex-m4") -> int | None:
    """Flash of the weights section of `policy`'s firmware for `target`: every kernel call's
    weights, bias and requantization constants as the kernels store them (sub-byte weights
    packed only where the kernel reads them packed, both VDPC branches), the pool of
    constants the C generator emits. None when the generator cannot compile the model."""
    from ..codegen import UnsupportedModelError
    from ..topi.params import ConstantPool
    pool = ConstantPool()
    try:
        for tag, _, params in firmware_params(graph, policy, target):
            pool.add_params(tag, params)
    except UnsupportedModelError:
        return None
    return pool.bytes()


def memory_driven(ctx, base: Policy, ram_bytes: int, flash_bytes: int | None,
                  range_method: str = "mse") -> Policy:
    """Rusci et al.: starting from 8 bits, repeatedly cut the bits (8 → 4 → 2) of the largest
    activation tensor live at the peak until the RAM budget fits, then of the largest weight
    tensor until the Flash budget fits. Integer-only, no routing: one branch for all patches."""
    g, plan0 = ctx.graph, ctx.plan
    bits: dict[str, int] = {}
    w_bits: dict[str, int] = {}

    def peak() -> int:
        return analyze(g, plan0.split_index, plan0.grid, bits or None).peak_sram_patch_bytes

    def cut(b: int) -> int:
        return {8: 4, 4: 2}.get(b, b)

    cur = peak()
    while cur > ram_bytes:
        p = analyze(g, plan0.split_index, plan0.grid, bits or None)
        names, _, prof = p.memory_profile()
        at = names[int(np.argmax(prof))]
        layer = g.layer(at)
        cands = [t for t in [*layer.inputs, layer.output] if t != g.input and
                 bits.get(t, 8) > 2]
        if not cands:   # the peak layer is exhausted: take the largest cuttable tensor anywhere
            cands = [t for t in g.shapes if t != g.input and bits.get(t, 8) > 2]
        if not cands:
            raise BudgetError(f"RAM budget {ram_bytes} B cannot be met: with every activation "
                              f"at 2 bits the peak is still {cur} B")
        t = max(cands, key=lambda t: tensor_bytes(g, t, bits.get(t, 8)))
        bits[t] = cut(bits.get(t, 8))
        cur = peak()
    low = {t: b for t, b in bits.items() if b != 8}
    ranges = {t: best_range(ctx.samples_all(t), b, range_method) for t, b in low.items()}
    pol = Policy("memory-driven", base.model, base.model_hash, base.split_index, base.grid,
                 base.ranges8, bits_low=low, ranges_low=ranges, w_bits=w_bits,
                 params={"ram_budget_bytes": ram_bytes, "flash_budget_bytes": flash_bytes,
                         "peak_sram_bytes": cur})
    return pol if flash_bytes is None else cut_weights(g, pol, flash_bytes)


def cut_weights(graph, policy: Policy, flash_bytes: int) -> Policy:
    """The weight half of the memory-driven rule: cut the bits (8 → 4 → 2) of the largest
    weight tensor until the weights section of the firmware fits `flash_bytes`. Cuts are
    measured on the firmware's constants: a cut after which the layer's kernel stores its
    weights no smaller (e.g. int8 for 8-bit inputs) would cost accuracy and save nothing, so
    that layer is passed over."""
    w_bits = dict(policy.w_bits)

    def cut(b: int) -> int:
        return {8: 4, 4: 2}.get(b, b)

    def make(w: dict[str, int]) -> Policy:
        return replace(policy, w_bits=dict(w))
    stored = weight_bytes(graph, policy)
    if stored is None:
        raise BudgetError("a Flash budget needs the model's firmware, and the C generator "
                          "cannot compile this model")
    passed: set[str] = set()
    while stored > flash_bytes:
        cands = [l for l in graph.layers if l.weight is not None and w_bits.get(l.name, 8) > 2
                 and l.name not in passed]
        if not cands:
            raise BudgetError(f"Flash budget {flash_bytes} B cannot be met: the weights need "
                              f"{stored} B after every cut that shrinks them")
        l = max(cands, key=lambda l: l.weight.size * w_bits.get(l.name, 8))
        b, before = w_bits.get(l.name, 8), _layer_weight_bytes(graph, make(w_bits), l.name)
        while b > 2:                    # 8 → 4 may store no smaller where 8 → 2 does
            b = cut(b)
            trial = {**w_bits, l.name: b}
            if _layer_weight_bytes(graph, make(trial), l.name) < before:
                w_bits, stored = trial, weight_bytes(graph, make(trial))
                break
        else:
            passed.add(l.name)
    return make(w_bits)


def _layer_weight_bytes(graph, policy: Policy, layer: str) -> int:
    """Flash of the weight arrays of `layer`'s kernel calls under `policy`."""
    from ..topi.params import stored_bytes
    return sum(stored_bytes(p.w) for _, name, p in firmware_params(graph, policy)
               if name == layer)
