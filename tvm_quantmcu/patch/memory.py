"""Peak SRAM model of layer-by-layer and patch-based inference.

Every activation tensor is stored packed at its bit width (quant/packing.py: each pixel holds
ceil(C·bits/8) bytes), so a tensor of C×H×W at b bits takes H·W·ceil(C·b/8) bytes. Weights live
in flash and are not counted.

Layer-by-layer: while layer i runs, the tensors alive at once are its inputs, its output, and
every tensor produced earlier (or fed in from outside, such as the image) that a later layer
still reads (e.g. a block input kept for a residual add). The memory of layer i is the sum of
their packed bytes; the peak is the maximum over layers.

Patch-based: the patch stage runs one patch at a time. While stage layer i runs for patch
(r, c), the live tensors are the same as above but each holds only that patch's region (the
input window of the patch for the image, the patch's receptive-field region for the feature
maps); on top of that the full stage output buffer is alive for the whole stage, since the
patches' tiles are assembled into it (the last stage layer writes its tile straight into it,
so that tile is not counted twice). The image itself is read window by window from its source
(camera or flash) and only the current window is held in SRAM. The rest of the network then
runs layer by layer, starting from the assembled stage output.

These per-layer profiles show where memory goes. The peak SRAM itself is the static arena the
generated program plans (:func:`arena_peak`, the rules of :mod:`.arena`): buffers of the
canonical patch regions, the stage output's region apart from the assembled stage output,
4-byte alignment, and the arena's placement.
"""
from __future__ import annotations

from ..graph import Graph, Layer
from ..quant.packing import packed_channels
from .arena import (ArenaLayer, WholeTensor, depthwise_below, plan_arena, program_buffers,
                    stage_region_bytes)
from .layout import patch_layout


def tensor_bits(bits: dict[str, int] | int | None, tensor: str) -> int:
    if bits is None:
        return 8
    if isinstance(bits, int):
        return bits
    return int(bits.get(tensor, 8))


def region_bytes(graph: Graph, tensor: str, h: int, w: int, bits) -> int:
    """Packed bytes of an h×w region of a tensor at its bit width."""
    return h * w * packed_channels(graph.shapes[tensor][0], tensor_bits(bits, tensor))


def tensor_bytes(graph: Graph, tensor: str, bits=None) -> int:
    _, h, w = graph.shapes[tensor]
    return region_bytes(graph, tensor, h, w, bits)


def live_tensors(layers: list[Layer]) -> list[list[str]]:
    """For each layer of a sequence run in order, the tensors alive while it runs: its inputs,
    its output, and tensors produced before it (or coming from outside the sequence) that a
    later layer of the sequence reads."""
    last_use: dict[str, int] = {}
    for i, l in enumerate(layers):
        for t in l.inputs:
            last_use[t] = i
    produced_at = {l.output: i for i, l in enumerate(layers)}
    out = []
    for i, l in enumerate(layers):
        live = list(dict.fromkeys(l.inputs + [l.output]))
        for t, j in last_use.items():
            if j > i and produced_at.get(t, -1) < i and t not in live:
                live.append(t)
        out.append(live)
    return out


def layerwise_profile(graph: Graph, bits=None, layers: list[Layer] | None = None) -> list[int]:
    """Bytes alive at each layer when the layers run one after another on whole tensors."""
    layers = graph.layers if layers is None else layers
    return [sum(tensor_bytes(graph, t, bits) for t in live) for live in live_tensors(layers)]


def layerwise_peak(graph: Graph, bits=None) -> int:
    """Peak SRAM (the arena) of layer-by-layer inference at `bits`."""
    return arena_peak(graph, None, bits)


def arena_peak(graph: Graph, plan=None, bits=None, routed: bool = False) -> int:
    """The arena, in bytes, of the program the generator makes for `graph` with activation
    `bits` (per tensor, one width, or None: 8) and patch plan `plan` (a PatchPlan; None:
    layer by layer). routed: VDPC can route a patch to the all-8-bit branch, whose stage
    buffers the low-bit branch shares."""
    def px(t: str, b: int) -> int:
        return packed_channels(graph.shapes[t][0], b)

    def pixel_bytes(layer: Layer, routed: bool) -> list[tuple[int, int]]:
        t_in, t_out = layer.inputs[0], layer.output
        low = (px(t_in, tensor_bits(bits, t_in)), px(t_out, tensor_bits(bits, t_out)))
        return [low, (px(t_in, 8), px(t_out, 8))] if routed else [low]

    def whole(layer: Layer, inputs) -> WholeTensor:
        c, h, w = graph.shapes[layer.output]
        t = WholeTensor(layer.output, list(inputs), hwc=(h, w, c),
                        bits=tensor_bits(bits, layer.output))
        if layer.is_depthwise and inputs:
            t.below = depthwise_below([(graph.shapes[layer.inputs[0]][2], *layer.padding[:2])],
                                      (h, w), layer.stride, pixel_bytes(layer, False))
        return t
    stage, region, so, rest = [], {}, None, graph.layers
    if plan is not None:
        layout = patch_layout(plan)
        tensors = [graph.input] + [l.output for l in plan.stage_layers]
        low = {t: tensor_bits(bits, t) for t in tensors[1:]}
        region = stage_region_bytes(tensors, layout.sizes,
                                    {t: graph.shapes[t][0] for t in tensors},
                                    [dict.fromkeys(low, 8), low] if routed else [low])
        for l in plan.stage_layers:
            below = None
            if l.is_depthwise:
                wins = [(c[l.output].in_w, c[l.output].pad_t, c[l.output].pad_l)
                        for c in layout.calls]
                below = depthwise_below(wins, layout.sizes[l.output], l.stride,
                                        pixel_bytes(l, routed))
            stage.append(ArenaLayer(l.output, list(l.inputs), below))
        so, rest = whole(plan.stage_layers[-1], []), plan.rest_layers
    return plan_arena(program_buffers(graph.input, stage, region, so,
                                      [whole(l, l.inputs) for l in rest]))
