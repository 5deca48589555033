"""Baseline policies in the same framework: layer-by-layer int8, MCUNetV2 (patches, uniform
int8), and memory-driven rule-based mixed precision (Rusci et al.)."""
from __future__ import annotations

import numpy as np

from ..patch import analyze, tensor_bytes
from .calibrate import best_range
from ..quant.policy import Policy


class BudgetError(ValueError):
    """A RAM or Flash budget cannot be met by any bit assignment."""


def weight_bytes(graph, w_bits: dict[str, int]) -> int:
    """Flash of the weights at their bits (packed), plus int32 bias and requant constants."""
    total = 0
    for l in graph.layers:
        if l.weight is None:
            continue
        total += (l.weight.size * w_bits.get(l.name, 8) + 7) // 8
        total += 4 * 3 * l.weight.shape[0]        # bias, multiplier, shift per channel
    return total


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
    if flash_bytes is not None:
        while weight_bytes(g, w_bits) > flash_bytes:
            cands = [l for l in g.layers if l.weight is not None and w_bits.get(l.name, 8) > 2]
            if not cands:
                raise BudgetError(f"Flash budget {flash_bytes} B cannot be met: with every "
                                  f"weight at 2 bits the model needs {weight_bytes(g, w_bits)} B")
            l = max(cands, key=lambda l: l.weight.size * w_bits.get(l.name, 8))
            w_bits[l.name] = cut(w_bits.get(l.name, 8))
    low = {t: b for t, b in bits.items() if b != 8}
    ranges = {t: best_range(ctx.samples_all(t), b, range_method) for t, b in low.items()}
    return Policy("memory-driven", base.model, base.model_hash, base.split_index, base.grid,
                  base.ranges8, bits_low=low, ranges_low=ranges, w_bits=w_bits,
                  params={"ram_budget_bytes": ram_bytes, "flash_budget_bytes": flash_bytes,
                          "peak_sram_bytes": cur})
