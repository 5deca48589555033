"""From a lowered Relax module to a program: kernel calls, buffers and the static arena.

The program is the generator's intermediate form; :mod:`.emit` prints it as C. Everything is
read from the module (:mod:`.lowered`): the kernels and their parameters from its
``call_tir``\\ s, the patch loop from the patch functions, the VDPC route from their
``relax.If``. Steps run in this order: (patch stage, once per patch) copy the patch's input
window from the image, run the stage layers — with VDPC, the layers up to the classification
map at 8 bits, the outlier check, then either the 8-bit or the low-bit continuation (the
tensors still needed are re-expressed in place) — and copy the output tile into the stage
output; (then) the remaining layers on whole tensors, layer by layer. Buffers live from the
step that writes them to the last step that reads them; the arena is planned from those
lifetimes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..quant.packing import packed_bytes, packed_channels
from ..topi.compute import KernelSpec, UnsupportedKernel
from ..topi.params import ConstantPool, KernelParams
from ..topi import mve
from ..topi.registry import Kernel, get_kernel
from ..patch.arena import (ArenaLayer, Buffer, WholeTensor, check_arena, depthwise_below,
                           plan_arena, program_buffers, region_buffer, stage_region_bytes)
from ..patch.layout import Call, PatchLayout, StageLayer, stage_layout
from .lowered import LayerCall, LoweredModel, LoweredModuleError, PatchBranch, read_lowered


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
class StagePlan:
    """The patch stage as the program runs it."""
    split_layer: str
    grid: tuple[int, int]
    stage_output: str
    output_hwc: tuple[int, int, int]           # the whole stage output
    output_bits: int                           # its bits (the low-bit branch's)


@dataclass
class Program:
    name: str
    policy_name: str
    plan: StagePlan | None
    layout: PatchLayout | None
    buffers: dict[str, Buffer]
    arena_bytes: int
    input_tensor: str
    input_shape: tuple[int, int, int]          # H, W, C of the image (uint8)
    output_tensor: str
    output_bytes: int
    head: list[KernelCall]                     # stage layers before the routing point
    branch8: list[KernelCall]                  # VDPC: outlier continuation
    branch_low: list[KernelCall]               # VDPC: normal continuation (or the only one)
    requants: list[Requant]
    rest: list[KernelCall]
    vdpc: dict | None                          # map buffer, thresholds, check boxes
    tiles: list[dict]                          # per patch: region→tile copy
    windows: list[tuple[int, int]]             # per patch: image window origin
    layers: list[str]                          # every layer, in dataflow order
    predicted_peak: int

    @property
    def calls(self) -> list[KernelCall]:
        return self.head + self.branch8 + self.branch_low + self.rest

    @property
    def kernels(self) -> list[Kernel]:
        return list({c.kernel.name: c.kernel for c in self.calls}.values())


def _kernel_input_hwc(spec: KernelSpec, out_hw, c) -> tuple[int, int, int]:
    """Input extent of a kernel computing an out_hw tile with no padding of its own (the
    window and its padding are runtime arguments)."""
    if spec.op == "add":
        return (out_hw[0], out_hw[1], c)
    kh, kw = spec.kernel
    return ((out_hw[0] - 1) * spec.stride[0] + kh, (out_hw[1] - 1) * spec.stride[1] + kw, c)


def _out_channels(spec: KernelSpec) -> int:
    return spec.in_shape[2] if spec.op == "add" else spec.out_channels


def _whole(spec: KernelSpec) -> KernelSpec:
    """The spec as the C kernels key it (the second input's bits only for adds)."""
    return spec if spec.op == "add" else replace(spec, in2_bits=8)


class _Builder:
    def __init__(self, m: LoweredModel, target: str, schedule: str, knobs: dict | None,
                 kernel_lookup=None, compile_kernels: bool = True):
        self.m, self.target, self.schedule = m, target, schedule
        self.knobs, self.kernel_lookup = knobs, kernel_lookup
        self.compile_kernels = compile_kernels

    def kernel(self, spec: KernelSpec, layer: str) -> Kernel | None:
        if not self.compile_kernels:
            return None
        if self.kernel_lookup is not None:       # e.g. the best schedule of a tuning database
            tuned = self.kernel_lookup(spec)
            if tuned is not None:
                return tuned
        try:
            return get_kernel(spec, self.schedule, self.target, self.knobs)
        except UnsupportedKernel as e:
            raise UnsupportedModelError(f"layer {layer} ({spec.op}): {e}") from e

    # ---- the patch stage
    def stage_geometry(self) -> tuple[list[StageLayer], dict, dict, PatchLayout]:
        """Stage layers (with their padding on the whole tensor: the most any patch pads),
        every stage tensor's (H, W) and channels, and the canonical layout."""
        m = self.m
        per_patch = [{c.layer: c for c in p.head + p.low} for p in m.patches]
        first = m.patches[0].head + m.patches[0].low
        stage = []
        for c in first:
            pads = [pp[c.layer].spec.padding for pp in per_patch]
            stage.append(StageLayer(c.layer, c.spec.op, list(c.inputs), c.spec.kernel,
                                    c.spec.stride, tuple(max(p[i] for p in pads)
                                                         for i in range(4))))
        hw = {m.input_tensor: m.input_hwc[:2]}
        channels = {m.input_tensor: m.input_hwc[2]}
        for l, c in zip(stage, first):
            hw[l.output] = l.out_hw(hw[l.inputs[0]])
            channels[l.output] = _out_channels(c.spec)
        so = stage[-1].output
        tiles = [p.tile for p in m.patches]
        if hw[so] != (max(t.h1 for t in tiles), max(t.w1 for t in tiles)):
            raise UnsupportedModelError(f"the patch tiles do not cover the stage output {so} "
                                        f"{hw[so]}")
        return stage, hw, channels, stage_layout(stage, tiles, m.input_tensor, hw)

    def stage_call(self, layout: PatchLayout, c: LayerCall, branch: str) -> KernelCall:
        out_hw = layout.sizes[c.layer]
        spec_in = _kernel_input_hwc(c.spec, out_hw, c.spec.in_shape[2])
        y = self.region_buffer(c.layer)
        if c.spec.op != "add":
            spec = _whole(replace(c.spec, in_shape=spec_in, padding=(0, 0, 0, 0)))
            return KernelCall(c.layer, branch, self.kernel(spec, c.layer), c.params,
                              c.inputs[0], y,
                              windows=[calls[c.layer] for calls in layout.calls])
        return self.stage_add(layout, c, branch, spec_in, y)

    def stage_add(self, layout, c: LayerCall, branch, spec_in, y) -> KernelCall:
        """The kernel reads its second input as a dense tile and its first through a row
        stride: order the inputs so the one held exactly as the output box comes second."""
        exact = [all(h[t] == h[c.layer] for h in layout.held) for t in c.inputs]
        if not (exact[0] or exact[1]):
            raise UnsupportedModelError(
                f"layer {c.layer} (add): neither input is held on exactly the output region")
        bits = (c.spec.in_bits, c.spec.in2_bits)
        params = c.params
        if not exact[1]:                # swap: the first input becomes the second
            qp = params.qp.copy()
            qp[0], qp[4] = params.qp[4], params.qp[0]
            params = KernelParams(params.w, params.bias, params.mult[::-1].copy(),
                                  params.shift, qp)
            bits = bits[::-1]
        first = 0 if exact[1] else 1
        xt, x2 = c.inputs[first], c.inputs[1 - first]
        spec = replace(c.spec, in_shape=spec_in, in_bits=bits[0], in2_bits=bits[1])
        px = packed_channels(c.spec.in_shape[2], bits[0])
        offs, wins = [], []
        for h in layout.held:
            r, held = h[c.layer], h[xt]
            offs.append(((r.h0 - held.h0) * held.width + (r.w0 - held.w0)) * px)
            wins.append(Call(r.height, held.width, 0, 0))
        return KernelCall(c.layer, branch, self.kernel(spec, c.layer), params, xt, y,
                          x2=x2, windows=wins, x_offsets=offs)

    def region_buffer(self, tensor: str) -> str:
        return region_buffer(tensor, self.m.stage_output)

    # ---- whole-tensor layers
    def rest_call(self, c: LayerCall) -> KernelCall:
        h, w, pad_t, pad_l = c.window
        return KernelCall(c.layer, "", self.kernel(_whole(c.spec), c.layer), c.params,
                          c.inputs[0], c.layer, x2=c.inputs[1] if c.spec.op == "add" else None,
                          windows=[Call(h, w, pad_t, pad_l)])


def _requants(p: PatchBranch, layout: PatchLayout) -> list[Requant]:
    out = []
    for r in sorted(p.requants, key=lambda r: r.tensor):
        if not 1 <= r.shift <= 62:
            raise UnsupportedModelError(f"tensor {r.tensor}: branch re-expression shift "
                                        f"{r.shift} is outside 1..62")
        hw = layout.sizes[r.tensor]
        out.append(Requant(r.tensor, hw[0] * hw[1], r.hwc[2], r.zp_src, r.mult, r.shift,
                           r.zp_dst, r.dst_bits))
    return out


def _pixel_bytes(spec: KernelSpec) -> tuple[int, int]:
    return (packed_channels(spec.in_shape[2], spec.in_bits),
            packed_channels(_out_channels(spec), spec.out_bits))


def _stage_in_place(layout: PatchLayout, p: PatchBranch, stage) -> dict[str, int]:
    """Depthwise stage layers: how far under its input each may write (every patch's window,
    every branch's widths)."""
    specs: dict[str, list[KernelSpec]] = {}
    for c in p.head + p.branch8 + p.low:
        specs.setdefault(c.layer, []).append(c.spec)
    out = {}
    for l in stage:
        sp = specs[l.name]
        if sp[0].op == "depthwise":
            wins = [(calls[l.name].in_w, calls[l.name].pad_t, calls[l.name].pad_l)
                    for calls in layout.calls]
            out[l.name] = depthwise_below(wins, layout.sizes[l.name], sp[0].stride,
                                          [_pixel_bytes(s) for s in sp])
    return out


def _rest_in_place(t: WholeTensor, c: LayerCall) -> WholeTensor:
    if c.spec.op == "depthwise":
        _, in_w, pad_t, pad_l = c.window
        t.below = depthwise_below([(in_w, pad_t, pad_l)], c.spec.out_hw, c.spec.stride,
                                  [_pixel_bytes(c.spec)])
    return t


def build_program(mod, name: str | None = None, target: str | None = None,
                  schedule: str = "dsp", knobs: dict | None = None,
                  kernel_lookup=None, compile_kernels: bool = True) -> Program:
    """The program of a lowered module (or of its :class:`LoweredModel`). target: None
    compiles for the target the module was lowered for; another one must store the weights as
    that one does (e.g. a Cortex-M7 for a module lowered for the Cortex-M4), except the host,
    whose portable kernels run any module (the functional check of its C).
    kernel_lookup(spec) may return a Kernel to use instead of the registry's (None: use the
    registry's with `schedule` and `knobs`). compile_kernels=False leaves every call's kernel
    None: the calls, their parameters and the arena without the cost of compiling."""
    m = mod if isinstance(mod, LoweredModel) else read_lowered(mod)
    if target is None:
        target = m.target
    elif target != "host" and (mve.stores_int8_weights(target)
                               != mve.stores_int8_weights(m.target)):
        raise LoweredModuleError(
            f"the module was lowered for {m.target}, whose kernels store sub-byte weights "
            f"differently than {target}'s; lower it with LowerToQuantMCUKernels(target="
            f"{target!r}) (relax_build.build/lower(..., target=))")
    b = _Builder(m, target, schedule, knobs, kernel_lookup, compile_kernels)
    head, b8, blow, requants, tiles, windows = [], [], [], [], [], []
    vdpc, layout, plan = None, None, None
    bits_rest = {m.input_tensor: 8}
    channels_rest: dict[str, int] = {}
    hw_rest: dict[str, tuple[int, int]] = {}
    layers = []
    if m.patches:
        stage, hw, channels, layout = b.stage_geometry()
        p0 = m.patches[0]
        routed = p0.check is not None
        branches = [p.head + p.branch8 for p in m.patches] if routed else []
        branches += [p.head + p.low for p in m.patches]
        bits = [{c.layer: c.spec.out_bits for c in br} for br in branches]
        region_bytes = stage_region_bytes([m.input_tensor] + [l.output for l in stage],
                                          layout.sizes, channels, bits)
        below = _stage_in_place(layout, p0, stage)
        arena_stage = [ArenaLayer(l.output, list(l.inputs), below.get(l.name))
                       for l in stage]
        tag8, tag_low = ("8", "low") if routed else ("", "")
        head = [b.stage_call(layout, c, tag8) for c in p0.head]
        b8 = [b.stage_call(layout, c, tag8) for c in p0.branch8]
        blow = [b.stage_call(layout, c, tag_low) for c in p0.low]
        if routed:
            requants = _requants(p0, layout)
            cm = p0.check.tensor
            boxes = []
            for need, held in zip(layout.needed, layout.held):
                rb = need[cm].relative_to(held[cm])
                boxes.append((rb.h0, rb.w0, rb.height, rb.width))
            vdpc = {"map": cm, "map_w": layout.sizes[cm][1], "channels": channels[cm],
                    "hi": p0.check.hi, "lo": p0.check.lo, "boxes": boxes}
        so = m.stage_output
        for p, h in zip(m.patches, layout.held):
            r = p.tile.relative_to(h[so])
            tiles.append({"src": (r.h0, r.w0), "dst": (p.tile.h0, p.tile.w0),
                          "hw": (p.tile.height, p.tile.width)})
            windows.append((h[m.input_tensor].h0, h[m.input_tensor].w0))
        bits_rest[so] = p0.low[-1].spec.out_bits
        channels_rest[so], hw_rest[so] = channels[so], hw[so]
        plan = StagePlan(m.split_layer, m.grid, so, (*hw[so], channels[so]), bits_rest[so])
        layers = [l.name for l in stage]
    else:
        region_bytes, arena_stage = {}, []
    # layer-by-layer part: whole tensors in the low-bit (or only) branch's quantization
    rest = [b.rest_call(c) for c in m.rest]
    for c in m.rest:
        bits_rest[c.layer] = c.spec.out_bits
        channels_rest[c.layer] = _out_channels(c.spec)
        hw_rest[c.layer] = c.spec.out_hw
    layers += [c.layer for c in m.rest]

    def whole(t, inputs=()):
        return WholeTensor(t, list(inputs), hwc=(*hw_rest[t], channels_rest[t]),
                           bits=bits_rest[t])
    so = m.stage_output
    bufs = {b.name: b for b in program_buffers(
        m.input_tensor, arena_stage, region_bytes, whole(so) if m.patches else None,
        [_rest_in_place(whole(c.layer, c.inputs), c) for c in m.rest])}
    arena = plan_arena(list(bufs.values()))
    check_arena(list(bufs.values()))
    if m.output_tensor not in hw_rest:
        raise UnsupportedModelError(f"the output {m.output_tensor} is not a layer's output")
    return Program(name or m.model, m.policy, plan, layout, bufs, arena, m.input_tensor,
                   m.input_hwc, m.output_tensor, whole(m.output_tensor).bytes, head, b8,
                   blow, requants, rest, vdpc, tiles, windows, layers, m.predicted_peak)



def weight_constants(mod) -> ConstantPool:
    """The constants of the weights section of a lowered module's firmware (kernel parameters
    of every call, both VDPC branches, each distinct array once): what :mod:`.emit` prints,
    so ``.bytes()`` is the flash the linked firmware's weights take."""
    pool = ConstantPool()
    for c in build_program(mod, compile_kernels=False).calls:
        pool.add_params(c.tag, c.params)
    return pool
