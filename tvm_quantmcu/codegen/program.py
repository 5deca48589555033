"""From a policy and its patch plan to a program: kernel calls, buffers and the static arena.

The program is the generator's intermediate form; :mod:`.emit` prints it as C. Steps run in
this order: (patch stage, once per patch) copy the patch's input window from the image, run the
stage layers — with VDPC, the layers up to the classification map at 8 bits, the outlier check,
then either the 8-bit or the low-bit continuation (the tensors still needed are re-expressed in
place) — and copy the output tile into the stage output; (then) the remaining layers on whole
tensors, layer by layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Graph
from ..patch import PatchPlan, analyze, layerwise_peak
from ..quant import ActQuant, QGraph
from ..quant.fixedpoint import quantize_multiplier
from ..quant.packing import packed_bytes, packed_channels
from ..quant.policy import Policy
from ..topi import KernelSpec, get_kernel
from ..topi.compute import UnsupportedKernel
from ..topi.params import (ConstantPool, KernelParams, params_for_layer, prepare,
                           spec_for_layer)
from ..topi.registry import Kernel
from .arena import Buffer, check_arena, plan_arena
from .layout import Call, PatchLayout, patch_layout

SUPPORTED_OPS = ("conv2d", "add", "avgpool", "maxpool", "dense")


class UnsupportedModelError(ValueError):
    """The model has a layer the generator cannot compile (names the layer and the op)."""


@dataclass
class KernelCall:
    layer: str
    branch: str                    # "8" / "low" in the patch stage with VDPC, else ""
    kernel: Kernel | None          # None in a program built for its constants only
    params: KernelParams
    x: str                         # buffer names
    y: str
    x2: str | None = None          # add: second input (passed in the weight slot)
    windows: list[Call] = field(default_factory=list)   # per patch (stage) or one (rest)
    x_offsets: list[int] = field(default_factory=list)  # add: byte offset into x per patch

    @property
    def tag(self) -> str:
        return f"{self.layer}_{self.branch}" if self.branch else self.layer


@dataclass
class Requant:
    """Re-express an 8-bit stage buffer in the low-bit branch's quantization."""
    buffer: str
    pixels: int
    channels: int
    zp_src: int
    mult: int
    shift: int
    zp_dst: int
    bits: int


@dataclass
class Program:
    name: str
    policy: Policy
    graph: Graph
    plan: PatchPlan | None
    layout: PatchLayout | None
    buffers: dict[str, Buffer]
    arena_bytes: int
    input_shape: tuple[int, int, int]          # H, W, C of the image (uint8)
    output_bytes: int
    head: list[KernelCall]                     # stage layers before the routing point
    branch8: list[KernelCall]                  # VDPC: outlier continuation
    branch_low: list[KernelCall]               # VDPC: normal continuation (or the only one)
    requants: list[Requant]
    rest: list[KernelCall]
    vdpc: dict | None                          # map buffer, thresholds, check boxes
    tiles: list[dict]                          # per patch: region→tile copy
    windows: list[tuple[int, int]]             # per patch: image window origin
    predicted_peak: int

    @property
    def calls(self) -> list[KernelCall]:
        return self.head + self.branch8 + self.branch_low + self.rest

    @property
    def kernels(self) -> list[Kernel]:
        return list({c.kernel.name: c.kernel for c in self.calls}.values())


def _check_supported(graph: Graph) -> None:
    for l in graph.layers:
        if l.op not in SUPPORTED_OPS:
            raise UnsupportedModelError(
                f"layer {l.name}: op {l.op!r} is not supported by the C generator "
                f"(supported: {', '.join(SUPPORTED_OPS)})")


def _spec(q, in_hwc, in_bits, out_bits, padding=None, in2_bits=8) -> KernelSpec:
    try:
        return spec_for_layer(q, in_hwc, in_bits, out_bits, padding=padding, in2_bits=in2_bits)
    except UnsupportedKernel as e:
        raise UnsupportedModelError(f"layer {q.layer.name} ({q.layer.op}): {e}") from e


def _kernel_input_hwc(layer, out_hw, c) -> tuple[int, int, int]:
    """Input extent of a kernel computing an out_hw tile with no padding of its own (the
    window and its padding are runtime arguments)."""
    if layer.op == "add":
        return (out_hw[0], out_hw[1], c)
    kh, kw = layer.ksize() if layer.op == "conv2d" else tuple(layer.kernel)
    return ((out_hw[0] - 1) * layer.stride[0] + kh, (out_hw[1] - 1) * layer.stride[1] + kw, c)


class _Builder:
    def __init__(self, graph: Graph, policy: Policy, target: str, schedule: str,
                 knobs: dict | None, kernel_lookup=None, compile_kernels: bool = True):
        _check_supported(graph)
        self.g, self.pol, self.target, self.schedule = graph, policy, target, schedule
        self.compile_kernels = compile_kernels
        self.knobs, self.kernel_lookup = knobs, kernel_lookup
        self.plan = analyze(graph, policy.split_index, policy.grid) \
            if policy.split_index is not None else None
        self.qg8, self.qg_low = policy.qgraph8(graph), policy.qgraph_low(graph)
        if self.plan is not None:
            policy.check_branches(self.qg8, self.qg_low, self.plan.stage_output)
        self.threshold_q, self.threshold_q_lo = policy.thresholds_q(self.qg8)

    def kernel(self, spec: KernelSpec) -> Kernel | None:
        if not self.compile_kernels:
            return None
        if self.kernel_lookup is not None:       # e.g. the best schedule of a tuning database
            tuned = self.kernel_lookup(spec)
            if tuned is not None:
                return tuned
        try:
            return get_kernel(spec, self.schedule, self.target, self.knobs)
        except UnsupportedKernel as e:
            raise UnsupportedModelError(str(e)) from e

    # ---- the patch stage
    def stage_call(self, layout: PatchLayout, qg: QGraph, branch: str, layer) -> KernelCall:
        q = qg.qlayer(layer.name)
        t_out = layer.output
        out_hw = layout.sizes[t_out]
        c_in = self.g.shapes[layer.inputs[0]][0]
        bits_in = [qg.acts[t].bits for t in layer.inputs]
        spec_in = _kernel_input_hwc(layer, out_hw, c_in)
        y = self.region_buffer(t_out)
        if layer.op != "add":
            spec = _spec(q, spec_in, bits_in[0], q.out_q.bits, padding=(0, 0, 0, 0))
            return KernelCall(layer.name, branch, self.kernel(spec), params_for_layer(q, spec),
                              layer.inputs[0], y,
                              windows=[calls[layer.name] for calls in layout.calls])
        return self.stage_add(layout, q, branch, layer, spec_in, bits_in, y)

    def stage_add(self, layout, q, branch, layer, spec_in, bits_in, y) -> KernelCall:
        """The kernel reads its second input as a dense tile and its first through a row
        stride: order the inputs so the one held exactly as the output box comes second."""
        a, b = layer.inputs
        exact = [all(h[t] == h[layer.output] for h in layout.held) for t in (a, b)]
        if not (exact[0] or exact[1]):
            raise UnsupportedModelError(
                f"layer {layer.name} (add): neither input is held on exactly the output region")
        first, second = (0, 1) if exact[1] else (1, 0)
        spec = _spec(q, spec_in, bits_in[first], q.out_q.bits, in2_bits=bits_in[second])
        lo, hi = q.clamp
        M = q.M_add
        params = prepare(spec, M=M[first], M2=M[second], n=int(q.n),
                         zp_in=q.in_q[first].zero_point, zp_out=q.out_q.zero_point, lo=lo,
                         hi=hi, zp_in2=q.in_q[second].zero_point)
        xt = layer.inputs[first]
        px = packed_channels(self.g.shapes[xt][0], bits_in[first])
        offs, wins = [], []
        for h in layout.held:
            r, held = h[layer.output], h[xt]
            offs.append(((r.h0 - held.h0) * held.width + (r.w0 - held.w0)) * px)
            wins.append(Call(r.height, held.width, 0, 0))
        return KernelCall(layer.name, branch, self.kernel(spec), params, xt, y,
                          x2=layer.inputs[second], windows=wins, x_offsets=offs)

    def region_buffer(self, tensor: str) -> str:
        return "region_" + tensor if tensor == self.plan.stage_output else tensor

    # ---- whole-tensor layers
    def rest_call(self, qg: QGraph, layer) -> KernelCall:
        q = qg.qlayer(layer.name)
        c, h, w = self.g.shapes[layer.inputs[0]]
        bits_in = [qg.acts[t].bits for t in layer.inputs]
        spec = _spec(q, (h, w, c), bits_in[0], q.out_q.bits,
                     in2_bits=bits_in[1] if len(bits_in) > 1 else 8)
        pad = layer.padding if layer.op in ("conv2d", "avgpool", "maxpool") else (0, 0, 0, 0)
        return KernelCall(layer.name, "", self.kernel(spec), params_for_layer(q, spec),
                          layer.inputs[0], layer.output, x2=(layer.inputs[1] if layer.op ==
                                                                 "add" else None),
                          windows=[Call(h, w, pad[0], pad[1])])


def _requant(t: str, src: ActQuant, dst: ActQuant, pixels: int, channels: int) -> Requant | None:
    if src == dst:
        return None
    M, n = quantize_multiplier(src.scale / dst.scale)
    if not 1 <= n <= 62:
        raise UnsupportedModelError(f"tensor {t}: branch re-expression shift {n} is outside 1..62")
    return Requant(t, pixels, channels, src.zero_point, M, n, dst.zero_point, dst.bits)


def build_program(graph: Graph, policy: Policy, name: str, target: str = "cortex-m4",
                  schedule: str = "dsp", knobs: dict | None = None,
                  kernel_lookup=None, compile_kernels: bool = True) -> Program:
    """kernel_lookup(spec) may return a Kernel to use instead of the registry's (None: use
    the registry's with `schedule` and `knobs`). compile_kernels=False leaves every call's
    kernel None: the calls, their parameters and the arena without the cost of compiling."""
    b = _Builder(graph, policy, target, schedule, knobs, kernel_lookup, compile_kernels)
    g, plan = graph, b.plan
    bufs: dict[str, Buffer] = {}
    head, b8, blow, requants, tiles, windows = [], [], [], [], [], []
    vdpc, layout = None, None
    step = 0
    c_in, h_in, w_in = g.shapes[g.input]
    if plan is not None:
        layout = patch_layout(plan)
        stage = plan.stage_layers
        qgs = [b.qg8, b.qg_low] if policy.vdpc else [b.qg_low]

        def size(t):
            hw = layout.sizes[t]
            return max(packed_bytes((hw[0], hw[1], g.shapes[t][0]), qg.acts[t].bits)
                       for qg in qgs)
        n_stage = len(stage)
        # steps: 0 window copy, 1..n stage layers, n+1 tile copy, then the rest layers
        last_use = {}
        for i, l in enumerate(stage):
            for t in l.inputs:
                last_use[t] = i + 1
        bufs[g.input] = Buffer(g.input, size(g.input), 0, last_use[g.input])
        for i, l in enumerate(stage):
            t = b.region_buffer(l.output)
            bufs[t] = Buffer(t, size(l.output), i + 1, last_use.get(l.output, n_stage + 1))
        cmap_layer = g.producer(policy.classification_map).name if policy.vdpc else None
        split_at = [l.name for l in stage].index(cmap_layer) + 1 if policy.vdpc else 0
        for l in stage[:split_at]:
            head.append(b.stage_call(layout, b.qg8, "8" if policy.vdpc else "", l))
        for l in stage[split_at:]:
            if policy.vdpc:
                b8.append(b.stage_call(layout, b.qg8, "8", l))
            blow.append(b.stage_call(layout, b.qg_low, "low" if policy.vdpc else "", l))
        if policy.vdpc:
            done = {g.input} | {l.output for l in stage[:split_at]}
            later = {t for l in stage[split_at:] for t in l.inputs}
            for t in sorted(done & later):
                hw = layout.sizes[t]
                r = _requant(t, b.qg8.acts[t], b.qg_low.acts[t], hw[0] * hw[1], g.shapes[t][0])
                if r is not None:
                    requants.append(r)
            cm = policy.classification_map
            boxes = []
            for p, h in zip(plan.all_patches(), layout.held):
                rb = p.regions[cm].relative_to(h[cm])
                boxes.append((rb.h0, rb.w0, rb.height, rb.width))
            vdpc = {"map": cm, "map_w": layout.sizes[cm][1], "channels": g.shapes[cm][0],
                    "hi": int(b.threshold_q), "lo": int(b.threshold_q_lo),
                    "boxes": boxes}
        so = plan.stage_output
        for p, h in zip(plan.all_patches(), layout.held):
            r = p.tile.relative_to(h[so])
            tiles.append({"src": (r.h0, r.w0), "dst": (p.tile.h0, p.tile.w0),
                          "hw": (p.tile.height, p.tile.width)})
            windows.append((h[g.input].h0, h[g.input].w0))
        step = n_stage + 2
        rest_layers = plan.rest_layers
        first_rest = {so: 0}
    else:
        rest_layers = list(g.layers)
        first_rest = {}
    # layer-by-layer part: whole tensors in the low-bit (or only) branch's quantization
    rest = [b.rest_call(b.qg_low, l) for l in rest_layers]
    last = {}
    for i, l in enumerate(rest_layers):
        for t in l.inputs:
            last[t] = step + i
    if plan is None:
        first_rest[g.input] = step     # the image is read in place: no arena copy
    for t, first in first_rest.items():
        if t == g.input:
            continue
        bufs[t] = Buffer(t, _tensor_bytes(g, b.qg_low, t), first, last.get(t, first))
    for i, l in enumerate(rest_layers):
        t = l.output
        bufs[t] = Buffer(t, _tensor_bytes(g, b.qg_low, t), step + i, last.get(t, step + i))
    arena = plan_arena(list(bufs.values()))
    check_arena(list(bufs.values()))
    out_t = g.output
    return Program(name, policy, g, plan, layout, bufs, arena, (h_in, w_in, c_in),
                   _tensor_bytes(g, b.qg_low, out_t), head, b8, blow, requants, rest, vdpc,
                   tiles, windows, predicted_peak(g, policy))


def weight_constants(graph: Graph, policy: Policy) -> ConstantPool:
    """The constants of the weights section of `policy`'s firmware (kernel parameters of every
    call, both VDPC branches, each distinct array once): what :mod:`.emit` prints, so
    ``.bytes()`` is the flash the linked firmware's weights take."""
    pool = ConstantPool()
    for c in build_program(graph, policy, policy.model, compile_kernels=False).calls:
        pool.add_params(c.tag, c.params)
    return pool


def _tensor_bytes(g: Graph, qg: QGraph, t: str) -> int:
    c, h, w = g.shapes[t]
    return packed_bytes((h, w, c), qg.acts[t].bits)


def predicted_peak(graph: Graph, policy: Policy) -> int:
    """The patch planner's peak SRAM for this policy: the stage at the widest branch (8 bits
    when VDPC can route a patch to the all-8-bit branch), the rest at the policy's bits."""
    low = {t: policy.act_bits(t) for t in graph.shapes}
    if policy.split_index is None:
        return layerwise_peak(graph, low)
    stage_bits = {t: (8 if policy.vdpc else low[t]) for t in graph.shapes}
    stage_plan = analyze(graph, policy.split_index, policy.grid, bits=stage_bits)
    rest_plan = analyze(graph, policy.split_index, policy.grid, bits=low)
    return max(stage_plan.peak_sram_stage_bytes, rest_plan.peak_sram_rest_bytes)

