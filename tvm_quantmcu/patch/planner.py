"""Planner: for an SRAM budget, enumerate split points and grids and choose the plan with the
least whole-network MAC overhead whose patch-based peak SRAM fits."""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import Graph
from . import memory
from .analysis import PatchPlan, analyze, split_candidates

DEFAULT_MAX_GRID = 8


class NoPlanFitsError(ValueError):
    """No candidate meets the budget; carries the smallest achievable peak."""

    def __init__(self, budget: int, best: PatchPlan | None, layerwise_peak: int):
        self.budget, self.best, self.layerwise_peak = budget, best, layerwise_peak
        if best is None or best.peak_sram_patch_bytes >= layerwise_peak:
            msg = (f"no plan fits the SRAM budget of {budget} B ({budget / 1024:.1f} KB): the "
                   f"smallest achievable peak is {layerwise_peak} B "
                   f"({layerwise_peak / 1024:.1f} KB, layer-by-layer; no patch plan does "
                   f"better); raise the budget or use lower activation bits")
        else:
            msg = (f"no plan fits the SRAM budget of {budget} B ({budget / 1024:.1f} KB): the "
                   f"smallest achievable peak is {best.peak_sram_patch_bytes} B "
                   f"({best.peak_sram_patch_bytes / 1024:.1f} KB, split after "
                   f"{best.split_layer}, grid {best.grid[0]}x{best.grid[1]}); raise the budget "
                   f"or use lower activation bits")
        super().__init__(msg)


@dataclass
class PlanSearch:
    budget_bytes: int
    layerwise_peak_bytes: int
    candidates: list[PatchPlan]          # every (split, grid) analysed
    chosen: PatchPlan | None             # None: layer-by-layer inference fits (no patches)

    @property
    def layerwise_fits(self) -> bool:
        return self.layerwise_peak_bytes <= self.budget_bytes

    def table(self) -> list[dict]:
        """One row per candidate, fitting plans first, then by overhead and peak."""
        rows = [c.summary(self.budget_bytes) for c in self.candidates]
        rows.sort(key=lambda r: (not r["fits"], r["overhead_total_pct"],
                                 r["peak_sram_patch_bytes"]))
        return rows


def enumerate_plans(graph: Graph, max_grid: int = DEFAULT_MAX_GRID, bits=None,
                    splits: list[int] | None = None) -> list[PatchPlan]:
    """Every valid split with every p×q grid, 1 ≤ p, q ≤ max_grid (p, q at most the stage
    output size), except the 1×1 grid (that is layer-by-layer inference)."""
    plans = []
    lw = memory.layerwise_profile(graph, bits)
    for n in (split_candidates(graph) if splits is None else splits):
        _, h, w = graph.shapes[graph.layers[n].output]
        for p in range(1, min(max_grid, h) + 1):
            for q in range(1, min(max_grid, w) + 1):
                if (p, q) != (1, 1):
                    plans.append(analyze(graph, n, (p, q), bits, lw))
    return plans


def _rank(plan: PatchPlan) -> tuple:
    return (plan.macs_total, plan.peak_sram_patch_bytes, plan.grid[0] * plan.grid[1],
            plan.split_index)


def plan(graph: Graph, sram_bytes: int, max_grid: int = DEFAULT_MAX_GRID, bits=None,
         allow_layerwise: bool = True) -> PlanSearch:
    """Choose the plan with the least MAC overhead whose peak fits `sram_bytes`.

    With allow_layerwise, plain layer-by-layer inference wins when it fits (no overhead);
    then `chosen` is None. Raises NoPlanFitsError when nothing fits."""
    lw = memory.layerwise_peak(graph, bits)
    cands = enumerate_plans(graph, max_grid, bits)
    search = PlanSearch(sram_bytes, lw, cands, None)
    if allow_layerwise and lw <= sram_bytes:
        return search
    fitting = [c for c in cands if c.peak_sram_patch_bytes <= sram_bytes]
    if not fitting:
        best = min(cands, key=lambda c: (c.peak_sram_patch_bytes, c.macs_total), default=None)
        raise NoPlanFitsError(sram_bytes, best, lw)
    search.chosen = min(fitting, key=_rank)
    return search
