"""Patch-stage analysis (no IR changes): for a split after layer n and a p×q grid over the
stage output, every patch's output tile, the region it computes of every stage tensor (tile
plus halo), the border padding of each layer, per-patch MACs with the halo, the redundant-MAC
overhead and the peak SRAM of layer-by-layer and patch-based inference (memory.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Graph, Layer
from . import memory
from .geometry import Box, grid_boxes, layer_window

PATCHABLE_OPS = ("conv2d", "add", "avgpool", "maxpool", "concat")


class SplitError(ValueError):
    """The requested split point or grid cannot run patch by patch."""


@dataclass
class LayerPatch:
    """One layer of one patch's branch."""
    layer: str
    out_box: Box                 # region of the layer's output this patch computes
    in_boxes: list[Box]          # region read from each input (absolute, inside the tensor)
    padding: tuple[int, int, int, int]   # border padding (top, left, bottom, right)
    macs: int


@dataclass
class Patch:
    """The dataflow branch of patch (row, col)."""
    row: int
    col: int
    tile: Box                    # in the stage output
    window: Box                  # in the stage input (the image)
    regions: dict[str, Box]      # region of every stage tensor this patch holds
    layers: list[LayerPatch]

    @property
    def name(self) -> str:
        return f"patch_{self.row}_{self.col}"

    @property
    def macs(self) -> int:
        return sum(lp.macs for lp in self.layers)

    def layer(self, name: str) -> LayerPatch:
        for lp in self.layers:
            if lp.layer == name:
                return lp
        raise KeyError(f"{self.name} has no layer {name!r}")


@dataclass
class PatchPlan:
    graph: Graph
    split_index: int             # the stage is layers[0 .. split_index]
    grid: tuple[int, int]
    patches: list[list[Patch]]   # [row][col]
    bits: dict[str, int] | int | None = None
    stage_profile: list[int] = field(default_factory=list)   # bytes per stage layer (max patch)
    rest_profile: list[int] = field(default_factory=list)    # bytes per later layer
    layerwise_profile: list[int] = field(default_factory=list)  # bytes per layer, no patches
    _arena: int | None = field(default=None, repr=False)

    # ---- structure
    @property
    def stage_layers(self) -> list[Layer]:
        return self.graph.layers[:self.split_index + 1]

    @property
    def rest_layers(self) -> list[Layer]:
        return self.graph.layers[self.split_index + 1:]

    @property
    def split_layer(self) -> str:
        return self.graph.layers[self.split_index].name

    @property
    def stage_output(self) -> str:
        return self.graph.layers[self.split_index].output

    @property
    def first_feature_map(self) -> str:
        """The first tensor a branch computes (the default VDPC classification point)."""
        return self.graph.layers[0].output

    def all_patches(self) -> list[Patch]:
        return [p for row in self.patches for p in row]

    def patch(self, row: int, col: int) -> Patch:
        return self.patches[row][col]

    @property
    def input_patch_hw(self) -> tuple[int, int]:
        """Largest input window (height, width) over the patches."""
        ps = self.all_patches()
        return max(p.window.height for p in ps), max(p.window.width for p in ps)

    # ---- computation
    def layer_macs_per_patch(self) -> dict[str, list[int]]:
        """MACs (halo included) of every stage layer for every patch, patches row-major."""
        return {l.name: [p.layer(l.name).macs for p in self.all_patches()]
                for l in self.stage_layers}

    @property
    def macs_stage_layerwise(self) -> int:
        return sum(self.graph.macs(l) for l in self.stage_layers)

    @property
    def macs_total_layerwise(self) -> int:
        return sum(self.graph.macs(l) for l in self.graph.layers)

    @property
    def macs_patch_stage(self) -> int:
        return sum(p.macs for p in self.all_patches())

    @property
    def macs_total(self) -> int:
        return self.macs_patch_stage + sum(self.graph.macs(l) for l in self.rest_layers)

    @property
    def overhead_patch_stage_pct(self) -> float:
        base = self.macs_stage_layerwise
        return 100.0 * (self.macs_patch_stage - base) / base if base else 0.0

    @property
    def overhead_total_pct(self) -> float:
        base = self.macs_total_layerwise
        return 100.0 * (self.macs_total - base) / base if base else 0.0

    # ---- memory
    @property
    def peak_sram_layerwise_bytes(self) -> int:
        """The arena of layer-by-layer inference at the plan's bits."""
        return memory.layerwise_peak(self.graph, self.bits)

    def _layerwise(self) -> list[int]:
        if not self.layerwise_profile:        # a plan built by hand rather than by analyze()
            self.layerwise_profile = memory.layerwise_profile(self.graph, self.bits)
        return self.layerwise_profile

    @property
    def peak_sram_stage_bytes(self) -> int:
        return max(self.stage_profile)

    @property
    def peak_sram_rest_bytes(self) -> int:
        return max(self.rest_profile) if self.rest_profile else 0

    @property
    def peak_sram_patch_bytes(self) -> int:
        """The arena of the generated program for this plan at its bits (memory.arena_peak);
        the stage and rest figures are the most bytes alive at one of their layers."""
        if self._arena is None:
            self._arena = memory.arena_peak(self.graph, self, self.bits)
        return self._arena

    @property
    def peak_sram_routed_bytes(self) -> int:
        """The arena when VDPC can route a patch to the all-8-bit branch (its stage buffers
        hold both branches)."""
        return memory.arena_peak(self.graph, self, self.bits, routed=True)

    def memory_profile(self) -> tuple[list[str], list[int], list[int]]:
        """(layer names, layer-by-layer bytes, patch-based bytes) per layer, for plots."""
        names = [l.name for l in self.graph.layers]
        return names, list(self._layerwise()), self.stage_profile + self.rest_profile

    def summary(self, budget_bytes: int | None = None) -> dict:
        s = {
            "split_layer": self.split_layer,
            "split_index": self.split_index,
            "stage_output_shape": list(self.graph.shapes[self.stage_output]),
            "grid": list(self.grid),
            "input_patch_hw": list(self.input_patch_hw),
            "macs_total": self.macs_total,
            "macs_total_layerwise": self.macs_total_layerwise,
            "macs_patch_stage": self.macs_patch_stage,
            "macs_patch_stage_layerwise": self.macs_stage_layerwise,
            "overhead_patch_stage_pct": round(self.overhead_patch_stage_pct, 3),
            "overhead_total_pct": round(self.overhead_total_pct, 3),
            "peak_sram_layerwise_bytes": self.peak_sram_layerwise_bytes,
            "peak_sram_patch_bytes": self.peak_sram_patch_bytes,
            "peak_sram_stage_bytes": self.peak_sram_stage_bytes,
            "peak_sram_rest_bytes": self.peak_sram_rest_bytes,
        }
        if budget_bytes is not None:
            s["fits"] = self.peak_sram_patch_bytes <= budget_bytes
        return s

    def patches_json(self) -> list[dict]:
        """Every patch's tile, input window and per-layer regions, padding and MACs
        (boxes as [h0, h1, w0, w1])."""
        return [{"row": p.row, "col": p.col, "tile": p.tile.to_list(),
                 "window": p.window.to_list(), "macs": p.macs,
                 "layers": [{"layer": lp.layer, "out": lp.out_box.to_list(),
                             "in": [b.to_list() for b in lp.in_boxes],
                             "padding": list(lp.padding), "macs": lp.macs}
                            for lp in p.layers]}
                for p in self.all_patches()]


# ---------------------------------------------------------------------------------------------

def check_split(graph: Graph, split_index: int) -> None:
    """Raise SplitError unless layers[0..split_index] can run as a patch stage: spatial ops
    only, fed by the image, and exactly one tensor (the stage output) read after the cut."""
    if not 0 <= split_index < len(graph.layers):
        raise SplitError(f"split index {split_index} is outside 0..{len(graph.layers) - 1}")
    stage = graph.layers[:split_index + 1]
    produced = {graph.input} | {l.output for l in stage}
    for l in stage:
        if l.op not in PATCHABLE_OPS:
            raise SplitError(f"layer {l.name} ({l.op}) cannot be in the patch stage; only "
                             f"{', '.join(PATCHABLE_OPS)} run per patch")
        for t in l.inputs:
            if t not in produced:
                raise SplitError(f"layer {l.name} reads {t}, which is not computed in the stage")
    out = stage[-1].output
    for l in graph.layers[split_index + 1:]:
        crossing = [t for t in l.inputs if t in produced and t != out]
        if crossing:
            raise SplitError(f"split after {stage[-1].name}: tensor {crossing[0]} crosses the "
                             f"cut into layer {l.name} (a residual skips over it); only the "
                             f"stage output may cross")
    if out == graph.output:
        raise SplitError(f"split after {stage[-1].name}: the whole network would be the stage")


def split_candidates(graph: Graph) -> list[int]:
    """Indices n such that a split after layer n is valid."""
    ok = []
    for n in range(len(graph.layers)):
        try:
            check_split(graph, n)
        except SplitError:
            continue
        ok.append(n)
    return ok


def _patch(graph: Graph, stage: list[Layer], row: int, col: int, tile: Box) -> Patch:
    need: dict[str, Box] = {stage[-1].output: tile}
    windows: dict[str, tuple[list[Box], tuple]] = {}
    for l in reversed(stage):
        if l.output not in need:
            raise SplitError(f"layer {l.name} of the patch stage feeds nothing in the stage")
        out = need[l.output]
        in_hw = graph.shapes[l.inputs[0]][1:]
        box, pad = layer_window(l, out, in_hw)
        windows[l.name] = ([box] * len(l.inputs), pad)
        for t in l.inputs:
            need[t] = box.union(need.get(t))
    layers = []
    for l in stage:
        out = need[l.output]
        in_boxes, pad = windows[l.name]
        macs = 0
        if l.op == "conv2d":
            o, ipg, kh, kw = l.weight.shape
            macs = out.area * o * ipg * kh * kw
        layers.append(LayerPatch(l.name, out, in_boxes, pad, macs))
    return Patch(row, col, tile, need[graph.input], need, layers)


def _stage_profile(plan: PatchPlan) -> list[int]:
    g, bits = plan.graph, plan.bits
    out_t = plan.stage_output
    full_out = memory.tensor_bytes(g, out_t, bits)
    live = memory.live_tensors(plan.stage_layers)
    prof = [0] * len(live)
    for p in plan.all_patches():
        for i, ts in enumerate(live):
            b = full_out + sum(memory.region_bytes(g, t, p.regions[t].height,
                                                   p.regions[t].width, bits)
                               for t in ts if t != out_t)
            prof[i] = max(prof[i], b)
    return prof


def analyze(graph: Graph, split: int | str, grid: tuple[int, int], bits=None,
            layerwise_profile: list[int] | None = None) -> PatchPlan:
    """The patch plan for a split after layer `split` (index or layer name) and a p×q grid.
    bits: activation bits per tensor name (or one width for all; default 8).
    layerwise_profile: ``memory.layerwise_profile(graph, bits)`` if already computed."""
    if isinstance(split, str):
        names = [l.name for l in graph.layers]
        if split not in names:
            raise SplitError(f"no layer named {split!r} to split after")
        split = names.index(split)
    check_split(graph, split)
    stage = graph.layers[:split + 1]
    _, h, w = graph.shapes[stage[-1].output]
    p, q = int(grid[0]), int(grid[1])
    if not (1 <= p <= h and 1 <= q <= w):
        raise SplitError(f"grid {p}×{q} does not fit the {h}×{w} output of {stage[-1].name}")
    tiles = grid_boxes(h, w, (p, q))
    patches = [[_patch(graph, stage, r, c, tiles[r][c]) for c in range(q)] for r in range(p)]
    plan = PatchPlan(graph, split, (p, q), patches, bits)
    plan.stage_profile = _stage_profile(plan)
    plan.rest_profile = memory.layerwise_profile(graph, bits, plan.rest_layers)
    plan.layerwise_profile = layerwise_profile if layerwise_profile is not None else \
        memory.layerwise_profile(graph, bits)
    return plan


def policy_peak(graph: Graph, policy) -> int:
    """Peak SRAM of the program a policy compiles to: the arena (memory.arena_peak) of its
    plan (layer by layer when it has none) at its activation widths, the stage buffers holding
    the all-8-bit branch too when VDPC routes patches. `policy`: split_index, grid, vdpc and
    act_bits(tensor) (a ``quant.Policy``)."""
    bits = {t: policy.act_bits(t) for t in graph.shapes}
    if policy.split_index is None:
        return memory.layerwise_peak(graph, bits)
    plan = analyze(graph, policy.split_index, policy.grid, bits)
    return plan.peak_sram_routed_bytes if policy.vdpc else plan.peak_sram_patch_bytes
