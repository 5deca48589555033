"""Patch geometry for generated code: one kernel instance per layer for every patch.

The patch analysis gives each patch the exact region of every stage tensor it needs, and
those regions differ between interior and border patches (the halo is clipped at the image
border). A kernel's output tile is fixed at compile time, so the generator makes every patch
hold a region of the same *canonical* size for each tensor — the largest region any patch
needs — by extending the needed region inwards (it stays inside the tensor, so the extra
values are real values, merely computed twice). A layer then reads its input from the held
region of its producer: the kernels take the window size and its top/left padding at run time,
and a negative padding starts the window |pad| rows/columns inside the held buffer, so border
patches need neither separate kernels nor copies.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import Graph, Layer
from ..patch import PatchPlan
from ..patch.geometry import Box, layer_window


@dataclass(frozen=True)
class Call:
    """One kernel call of one patch: the window it reads (relative to the held input)."""
    in_h: int
    in_w: int
    pad_t: int
    pad_l: int


@dataclass
class PatchLayout:
    plan: PatchPlan
    sizes: dict[str, tuple[int, int]]          # canonical (H, W) of every stage tensor
    held: list[dict[str, Box]]                 # per patch (row-major): tensor → held region
    calls: list[dict[str, Call]]               # per patch: layer name → window of its input

    @property
    def graph(self) -> Graph:
        return self.plan.graph


def _extend(box: Box, size: tuple[int, int], tensor_hw: tuple[int, int]) -> Box:
    """`box` grown to `size`, inwards, staying inside the tensor."""
    (H, W), (th, tw) = size, tensor_hw
    h0 = max(0, min(box.h0, th - H))
    w0 = max(0, min(box.w0, tw - W))
    return Box(h0, h0 + H, w0, w0 + W)


def _window(layer: Layer, out: Box, held_in: Box) -> Call:
    """Window of a kernel computing `out` from the held input region: the padding is the
    distance from the first row/column the layer reads (possibly outside the tensor) to the
    first held one."""
    if layer.op == "add":
        return Call(held_in.height, held_in.width, 0, 0)
    top = out.h0 * layer.stride[0] - layer.padding[0]
    left = out.w0 * layer.stride[1] - layer.padding[1]
    return Call(held_in.height, held_in.width, held_in.h0 - top, held_in.w0 - left)


def patch_layout(plan: PatchPlan) -> PatchLayout:
    g = plan.graph
    stage = plan.stage_layers
    patches = plan.all_patches()
    need: list[dict[str, Box]] = [{plan.stage_output: p.tile} for p in patches]
    held: list[dict[str, Box]] = [{} for _ in patches]
    sizes: dict[str, tuple[int, int]] = {}

    def settle(t: str) -> None:
        hw = tuple(g.shapes[t][1:])
        sizes[t] = (max(n[t].height for n in need), max(n[t].width for n in need))
        for n, h in zip(need, held):
            h[t] = _extend(n[t], sizes[t], hw)

    for l in reversed(stage):
        settle(l.output)
        for n, h in zip(need, held):
            box, _ = layer_window(l, h[l.output], tuple(g.shapes[l.inputs[0]][1:]))
            for t in l.inputs:
                n[t] = box.union(n.get(t))
    settle(g.input)
    calls = [{l.name: _window(l, h[l.output], h[l.inputs[0]]) for l in stage} for h in held]
    return PatchLayout(plan, sizes, held, calls)
