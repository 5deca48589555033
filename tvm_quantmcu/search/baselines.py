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


def weight_bytes(graph, policy: Policy) -> int | None:
    """Flash of the weights section of `policy`'s firmware: every kernel call's weights,
    bias and requantization constants as the kernels store them (sub-byte weights packed only
    where the kernel reads them packed, both VDPC branches), from the constants the C
    generator emits. None when the generator cannot compile the model."""
    from ..codegen import UnsupportedModelError, weight_constants
    try:
        return weight_constants(graph, policy).bytes()
    except UnsupportedModelError:
        return None


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
    from ..codegen import build_program
    from ..topi.params import stored_bytes
    prog = build_program(graph, policy, policy.model, compile_kernels=False)
    return sum(stored_bytes(c.params.w) for c in prog.calls if c.layer == layer)
