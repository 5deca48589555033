"""Static arena: offsets for buffers with known lifetimes (no heap at run time).

Every buffer lives over an inclusive range of steps of the program (for the patch stage, the
steps of one patch, repeated per patch; the stage output buffer spans the whole stage). Buffers
whose lifetimes overlap must not overlap in memory. Placement is greedy: largest first, each at
the lowest aligned offset that clears every already placed buffer alive at the same time —
the usual heuristic of TFLM's and TVM's memory planners — over a few fixed orders and then
seeded random ones, until the most bytes alive at one step (a lower bound) is reached.

:func:`program_buffers` states which buffers a program has and when each is alive; the C
generator (from a lowered module) and the patch planner (from a layer graph and its widths)
both call it and :func:`plan_arena`, so the planner's peak SRAM is the firmware's arena:

* patch stage (steps of one patch, repeated per patch): step 0 copies the patch's input window
  from the image into its own buffer; step i runs stage layer i into a buffer of the canonical
  region of its output (:mod:`.layout`: the largest region any patch holds, at the widest
  branch's bits when VDPC routes patches: the all-8-bit branch shares the buffers); step n+1
  copies the last layer's region (its own buffer) into the whole stage output, which is alive
  from step 0 to its last reader in the rest;
* the rest (from step n+2, or 0 without patches): one step per layer, whole tensors at their
  widths; the image of a layer-by-layer program is read where it lies (not in the arena).

A buffer lives from the step that writes it to the last step that reads it. A depthwise layer
that is its input's last reader runs in place (as TinyEngine does): its output starts
:func:`depthwise_below` bytes under its input and overlaps it, so the two cost the input plus
that distance instead of both (every policy: int8, low-bit, layer by layer and per patch).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..quant.packing import packed_bytes

ALIGN = 4


@dataclass
class Buffer:
    name: str
    size: int
    first: int          # first step that writes it
    last: int           # last step that reads it
    offset: int = -1
    # in place: this buffer starts `below` bytes under buffer `over` (whose last reader is
    # the kernel writing this one, at step `first`): they share bytes by design
    over: str | None = None
    below: int = 0

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


# Placement orders tried; the smallest arena wins (greedy placement is order-sensitive).
ORDERS = (
    lambda b: (-b.size, b.first, b.name),                      # largest first
    lambda b: (b.first, -b.size, b.name),                      # in program order
    lambda b: (-(b.size * (b.last - b.first + 1)), b.name),    # largest size × lifetime
    lambda b: (-(b.last - b.first), -b.size, b.name),          # longest-lived first
)


class _Group:
    """Buffers placed together: one buffer, or a chain written in place, each member at a
    fixed distance `rel` from the group's base. `rep` stands for the group in the orders."""

    def __init__(self, members: list[tuple[Buffer, int]]):
        self.members = members
        b0 = members[0][0]
        if len(members) == 1:
            self.rep = b0
        else:
            self.rep = Buffer(b0.name, max(r + b.size for b, r in members),
                              min(b.first for b, _ in members), max(b.last for b, _ in members))


def _groups(buffers: list[Buffer]) -> list[_Group]:
    by = {b.name: b for b in buffers}
    rel: dict[str, tuple[str, int]] = {}

    def root(b: Buffer) -> tuple[str, int]:
        if b.name not in rel:
            if b.over is None:
                rel[b.name] = (b.name, 0)
            else:
                r, off = root(by[b.over])
                rel[b.name] = (r, off - b.below)
        return rel[b.name]
    members: dict[str, list] = {}
    for b in buffers:
        r, off = root(b)
        members.setdefault(r, []).append((b, off))
    out = []
    for ms in members.values():
        lo = min(off for _, off in ms)
        out.append(_Group([(b, off - lo) for b, off in ms]))
    return out


def plan_arena(buffers: list[Buffer], restarts: int = 400, seed: int = 0) -> int:
    """Assign `offset` to every buffer; returns the arena size in bytes. The fixed orders
    first, then seeded random orders until one reaches the lower bound (deterministic)."""
    groups = _groups(buffers)
    bound = _align(lower_bound(buffers))
    rng = random.Random(seed)
    best = None
    orders = list(ORDERS) + [None] * restarts
    for order in orders:
        if order is None:
            keys = {b.name: rng.random() for b in buffers}
            order = lambda b, keys=keys: keys[b.name]   # noqa: E731
        size = _place(groups, order)
        if best is None or size < best[0]:
            best = (size, [b.offset for b in buffers])
        if best[0] <= bound:
            break
    for b, off in zip(buffers, best[1]):
        b.offset = off
    return best[0]


def lower_bound(buffers: list[Buffer]) -> int:
    """Most bytes alive at one step (a buffer written in place over another counting only
    the bytes it adds): no placement can do better."""
    groups = _groups(buffers)
    steps = {s for b in buffers for s in (b.first, b.last)}
    best = 0
    for s in steps:
        total = 0
        for g in groups:
            spans = sorted((r, r + b.size) for b, r in g.members if b.first <= s <= b.last)
            end = None
            for lo, hi in spans:          # length of the union of the alive members
                if end is None or lo >= end:
                    total += hi - lo
                    end = hi
                elif hi > end:
                    total += hi - end
                    end = hi
        best = max(best, total)
    return best


def _place(groups: list[_Group], order) -> int:
    placed: list[Buffer] = []
    for g in sorted(groups, key=lambda g: order(g.rep)):
        if len(g.members) == 1:
            b = g.rep
            busy = sorted((o.offset, o.offset + o.size) for o in placed
                          if o.overlaps_in_time(b))
            off = 0
            for lo, hi in busy:
                if off + b.size <= lo:
                    break
                off = max(off, _align(hi))
        else:
            off = _lowest_fit(g, placed)
        for b, r in g.members:
            b.offset = off + r
            placed.append(b)
    return _align(max((b.offset + b.size for b in placed), default=0))


def _lowest_fit(g: _Group, placed: list[Buffer]) -> int:
    """The lowest aligned base at which no member of `g` shares bytes with a placed buffer
    alive at the same time (the lowest is 0 or puts a member right after a placed one)."""
    busy = [(b, r, [(o.offset, o.offset + o.size) for o in placed if o.overlaps_in_time(b)])
            for b, r in g.members]
    cands = {0} | {_align(hi) - r for _, r, spans in busy for _, hi in spans}
    cands.add(max((_align(hi) for _, _, spans in busy for _, hi in spans), default=0))
    for off in sorted(c for c in cands if c >= 0):
        if all(not (lo < off + r + b.size and off + r < hi)
               for b, r, spans in busy for lo, hi in spans):
            return off
    raise AssertionError("no offset fits")      # unreachable: past every placed buffer fits


def check_arena(buffers: list[Buffer]) -> None:
    """Raise if two buffers alive at the same step share bytes (a planner bug), except a
    buffer written in place over its input, which must sit exactly `below` bytes under it."""
    by = {b.name: b for b in buffers}
    for b in buffers:
        if b.over is not None and b.offset != by[b.over].offset - b.below:
            raise AssertionError(f"arena buffer {b.name} is not {b.below} B under {b.over}")
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.over == b.name or b.over == a.name:
                continue
            if a.overlaps_in_time(b) and a.offset < b.offset + b.size and \
                    b.offset < a.offset + a.size:
                raise AssertionError(f"arena buffers {a.name} and {b.name} overlap")


def _max_linear(n: int, stride: int, pad: int, a: int, b: int) -> int:
    """max over 0 <= i < n of a·i − b·max(0, i·stride − pad) (piecewise linear in i: the
    maximum is at an end or at the kink)."""
    k = -(-pad // stride) if pad > 0 else 0
    return max(a * i - b * max(0, i * stride - pad) for i in {0, n - 1, k - 1, k}
               if 0 <= i < n)


def depthwise_below(windows, out_hw: tuple[int, int], stride: tuple[int, int],
                    pixel_bytes) -> int:
    """How many bytes under its input a depthwise kernel's output must start for the kernel
    to run in place: it overwrites only input bytes no later read needs.

    The kernels (topi.schedules) produce output pixels in row-major order, one or two per
    micro-kernel call, and read a pixel's input window (into their padded row or pixel
    buffer) before writing it; after writing pixel k (or k+1, its pair), no read goes below
    the first input pixel of k's window, f(k) = max(0, oh·s − pad_t)·in_w + max(0, ow·s −
    pad_l). So the output may start D = max over k of (k+2)·out_px − f(k)·in_px bytes under
    the input (0 when that is negative). windows: (in_w, pad_t, pad_l) of every call (one per
    patch in the stage); pixel_bytes: (input, output) bytes per pixel of every branch."""
    oh, ow = out_hw
    d = 0
    for in_w, pad_t, pad_l in set(windows):
        for pi, po in set(pixel_bytes):
            d = max(d, _max_linear(oh, stride[0], pad_t, ow * po, in_w * pi)
                    + 2 * po + _max_linear(ow, stride[1], pad_l, po, pi))
    return _align(d)


@dataclass
class ArenaLayer:
    """A kernel call as the arena sees it: the tensor it writes and the tensors it reads."""
    name: str                         # its output tensor (named after the layer)
    inputs: list[str]
    below: int | None = None          # depthwise: may write in place, this far under its input


@dataclass
class WholeTensor(ArenaLayer):
    """A layer of the rest (or the stage output) computing a whole H×W×C tensor at `bits`."""
    hwc: tuple[int, int, int] = (0, 0, 0)
    bits: int = 8

    @property
    def bytes(self) -> int:
        return packed_bytes(self.hwc, self.bits)


def region_buffer(tensor: str, stage_output: str | None) -> str:
    """Name of the buffer a stage layer writes (the stage output's region has its own)."""
    return "region_" + tensor if tensor == stage_output else tensor


def stage_region_bytes(tensors, sizes: dict, channels: dict, branch_bits: list[dict]) -> dict:
    """Bytes of each stage tensor's canonical region (`sizes`: its (H, W)) at the widest of the
    branches' bits (a tensor not in a branch's dict is 8-bit there)."""
    return {t: max(packed_bytes((*sizes[t], channels[t]), bb.get(t, 8)) for bb in branch_bits)
            for t in tensors}


def program_buffers(input_tensor: str, stage: list[ArenaLayer], region_bytes: dict,
                    stage_output: WholeTensor | None, rest: list[WholeTensor]) -> list[Buffer]:
    """The buffers of a program and their lifetimes (the rules in the module docstring).
    stage: the patch stage's layers (empty without patches); region_bytes: their tensors'
    (and the input window's) region bytes; stage_output: the whole stage output tensor."""
    bufs = []
    step = 0
    if stage:
        n = len(stage)
        so = stage[-1].name
        last_use = {}
        for i, l in enumerate(stage):
            for t in l.inputs:
                last_use[t] = i + 1
        bufs.append(Buffer(input_tensor, region_bytes[input_tensor], 0, last_use[input_tensor]))
        for i, l in enumerate(stage):
            bufs.append(_in_place(Buffer(region_buffer(l.name, so), region_bytes[l.name], i + 1,
                                         last_use.get(l.name, n + 1)), l, last_use))
        step = n + 2
    last = {}
    for i, l in enumerate(rest):
        for t in l.inputs:
            last[t] = step + i
    if stage_output is not None:
        bufs.append(Buffer(stage_output.name, stage_output.bytes, 0,
                           last.get(stage_output.name, 0)))
    names = {b.name for b in bufs}
    for i, l in enumerate(rest):
        b = Buffer(l.name, l.bytes, step + i, last.get(l.name, step + i))
        bufs.append(_in_place(b, l, last) if l.inputs and l.inputs[0] in names else b)
        names.add(l.name)
    return bufs


def _in_place(b: Buffer, layer: ArenaLayer, last_use: dict) -> Buffer:
    """`b` written over the layer's input when the layer may run in place and is the input's
    last reader (no tensor is overwritten while a later layer still needs it)."""
    if layer.below is not None and len(layer.inputs) == 1 and \
            last_use.get(layer.inputs[0]) == b.first:
        b.over, b.below = layer.inputs[0], layer.below
    return b
