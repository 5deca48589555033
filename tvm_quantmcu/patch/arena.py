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

A buffer lives from the step that writes it to the last step that reads it.
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


def plan_arena(buffers: list[Buffer], restarts: int = 400, seed: int = 0) -> int:
    """Assign `offset` to every buffer; returns the arena size in bytes. The fixed orders
    first, then seeded random orders until one reaches the lower bound (deterministic)."""
    bound = _align(lower_bound(buffers))
    rng = random.Random(seed)
    best = None
    orders = list(ORDERS) + [None] * restarts
    for order in orders:
        if order is None:
            keys = {id(b): rng.random() for b in buffers}
            order = lambda b, keys=keys: keys[id(b)]   # noqa: E731
        size = _place(buffers, order)
        if best is None or size < best[0]:
            best = (size, [b.offset for b in buffers])
        if best[0] <= bound:
            break
    for b, off in zip(buffers, best[1]):
        b.offset = off
    return best[0]


def lower_bound(buffers: list[Buffer]) -> int:
    """Most bytes alive at one step: no placement can do better."""
    steps = {s for b in buffers for s in (b.first, b.last)}
    return max((sum(b.size for b in buffers if b.first <= s <= b.last) for s in steps),
               default=0)


def _place(buffers: list[Buffer], order) -> int:
    placed: list[Buffer] = []
    for b in sorted(buffers, key=order):
        busy = sorted((o.offset, o.offset + o.size) for o in placed if o.overlaps_in_time(b))
        off = 0
        for lo, hi in busy:
            if off + b.size <= lo:
                break
            off = max(off, _align(hi))
        b.offset = off
        placed.append(b)
    return _align(max((b.offset + b.size for b in buffers), default=0))


def check_arena(buffers: list[Buffer]) -> None:
    """Raise if two buffers alive at the same step share bytes (a planner bug)."""
    for i, a in enumerate(buffers):
        for b in buffers[i + 1:]:
            if a.overlaps_in_time(b) and a.offset < b.offset + b.size and \
                    b.offset < a.offset + a.size:
                raise AssertionError(f"arena buffers {a.name} and {b.name} overlap")


@dataclass
class ArenaLayer:
    """A kernel call as the arena sees it: the tensor it writes and the tensors it reads."""
    name: str                         # its output tensor (named after the layer)
    inputs: list[str]


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
            bufs.append(Buffer(region_buffer(l.name, so), region_bytes[l.name], i + 1,
                               last_use.get(l.name, n + 1)))
        step = n + 2
    last = {}
    for i, l in enumerate(rest):
        for t in l.inputs:
            last[t] = step + i
    if stage_output is not None:
        bufs.append(Buffer(stage_output.name, stage_output.bytes, 0,
                           last.get(stage_output.name, 0)))
    for i, l in enumerate(rest):
        bufs.append(Buffer(l.name, l.bytes, step + i, last.get(l.name, step + i)))
    return bufs
