"""Static arena: offsets for buffers with known lifetimes (no heap at run time).

Every buffer lives over an inclusive range of steps of the program (for the patch stage, the
steps of one patch, repeated per patch; the stage output buffer spans the whole stage). Buffers
whose lifetimes overlap must not overlap in memory. Placement is greedy: largest first, each at
the lowest aligned offset that clears every already placed buffer alive at the same time —
the usual heuristic of TFLM's and TVM's memory planners — over a few fixed orders and then
seeded random ones, until the most bytes alive at one step (a lower bound) is reached.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

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
