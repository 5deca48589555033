"""Patch geometry for generated code: one kernel instance per layer for every patch.

The lowered module gives each patch the exact region of every stage tensor it needs, and
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

from .geometry import Box, window_1d


@dataclass(frozen=True)
class Call:
    """One kernel call of one patch: the window it reads (relative to the held input)."""
    in_h: int
    in_w: int
    pad_t: int
    pad_l: int


@dataclass
class StageLayer:
    """A layer of the patch stage as the kernels see it (read off the lowered module)."""
    name: str
    op: str                                    # a KernelSpec op
    inputs: list[str]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]         # of the whole tensor: top, left, bottom, right

    @property
    def output(self) -> str:
        return self.name

    def out_hw(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        if self.op == "add":
            return in_hw
        t, le, b, r = self.padding
        return ((in_hw[0] + t + b - self.kernel[0]) // self.stride[0] + 1,
                (in_hw[1] + le + r - self.kernel[1]) // self.stride[1] + 1)

    def window(self, out: Box, in_hw: tuple[int, int]) -> Box:
        """The input box computing `out` needs (clipped to the tensor)."""
        if self.op == "add":
            return out
        h0, h1, _, _ = window_1d(out.h0, out.h1, self.kernel[0], self.stride[0],
                                 self.padding[0], 1, in_hw[0])
        w0, w1, _, _ = window_1d(out.w0, out.w1, self.kernel[1], self.stride[1],
                                 self.padding[1], 1, in_hw[1])
        return Box(h0, h1, w0, w1)


@dataclass
class PatchLayout:
    sizes: dict[str, tuple[int, int]]          # canonical (H, W) of every stage tensor
    held: list[dict[str, Box]]                 # per patch (row-major): tensor → held region
    needed: list[dict[str, Box]]               # per patch: tensor → region the patch needs
    calls: list[dict[str, Call]]               # per patch: layer name → window of its input


def _extend(box: Box, size: tuple[int, int], tensor_hw: tuple[int, int]) -> Box:
    """`box` grown to `size`, inwards, staying inside the tensor."""
    (H, W), (th, tw) = size, tensor_hw
    h0 = max(0, min(box.h0, th - H))
    w0 = max(0, min(box.w0, tw - W))
    return Box(h0, h0 + H, w0, w0 + W)


def _window(layer: StageLayer, out: Box, held_in: Box) -> Call:
    """Window of a kernel computing `out` from the held input region: the padding is the
    distance from the first row/column the layer reads (possibly outside the tensor) to the
    first held one."""
    if layer.op == "add":
        return Call(held_in.height, held_in.width, 0, 0)
    top = out.h0 * layer.stride[0] - layer.padding[0]
    left = out.w0 * layer.stride[1] - layer.padding[1]
    return Call(held_in.height, held_in.width, held_in.h0 - top, held_in.w0 - left)


def needed_regions(stage: list[StageLayer], tile: Box,
                   hw: dict[str, tuple[int, int]]) -> dict[str, Box]:
    """The region of every stage tensor one patch needs for its output tile."""
    need = {stage[-1].output: tile}
    for l in reversed(stage):
        box = l.window(need[l.output], hw[l.inputs[0]])
        for t in l.inputs:
            need[t] = box.union(need.get(t))
    return need


def stage_layout(stage: list[StageLayer], tiles: list[Box], input_tensor: str,
                 hw: dict[str, tuple[int, int]]) -> PatchLayout:
    """The layout of patches with output `tiles` (row-major) through the `stage` layers;
    hw: (H, W) of every stage tensor (the image included)."""
    need: list[dict[str, Box]] = [{stage[-1].output: t} for t in tiles]
    held: list[dict[str, Box]] = [{} for _ in tiles]
    sizes: dict[str, tuple[int, int]] = {}

    def settle(t: str) -> None:
        sizes[t] = (max(n[t].height for n in need), max(n[t].width for n in need))
        for n, h in zip(need, held):
            h[t] = _extend(n[t], sizes[t], hw[t])

    for l in reversed(stage):
        settle(l.output)
        for n, h in zip(need, held):
            box = l.window(h[l.output], hw[l.inputs[0]])
            for t in l.inputs:
                n[t] = box.union(n.get(t))
    settle(input_tensor)
    calls = [{l.name: _window(l, h[l.output], h[l.inputs[0]]) for l in stage} for h in held]
    return PatchLayout(sizes, held, [needed_regions(stage, t, hw) for t in tiles], calls)


def patch_layout(plan) -> PatchLayout:
    """The layout of a patch plan (``tvm_quantmcu.patch.PatchPlan``: its layer graph's stage
    layers and tiles), for estimates made before a module is lowered (the search's device
    cost, the planner's arena): the same geometry the generator reads off the lowered module.
    Layers are keyed by their output tensor (the generator names tensors after layers)."""
    g = plan.graph
    stage = [StageLayer(l.output, l.op, list(l.inputs),
                        tuple(l.ksize()) if l.op == "conv2d" else tuple(l.kernel),
                        tuple(l.stride), tuple(l.padding)) for l in plan.stage_layers]
    hw = {t: tuple(s[1:]) for t, s in g.shapes.items()}
    return stage_layout(stage, [p.tile for p in plan.all_patches()], g.input, hw)
