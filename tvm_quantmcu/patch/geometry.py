"""Window arithmetic of patch-based inference: boxes, grids and receptive fields.

A box is a half-open rectangle [h0, h1) × [w0, w1) in the spatial coordinates of one tensor.
Going backwards through a conv or pooling layer maps an output box to the input box it reads;
the part of that box outside the tensor is the padding the layer needs there, which for a patch
is non-zero only at the image border.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import Layer


@dataclass(frozen=True)
class Box:
    h0: int
    h1: int
    w0: int
    w1: int

    @property
    def height(self) -> int:
        return self.h1 - self.h0

    @property
    def width(self) -> int:
        return self.w1 - self.w0

    @property
    def hw(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def area(self) -> int:
        return self.height * self.width

    def union(self, other: "Box | None") -> "Box":
        """Bounding box of both (a tensor read by several consumers keeps all they need)."""
        if other is None:
            return self
        return Box(min(self.h0, other.h0), max(self.h1, other.h1),
                   min(self.w0, other.w0), max(self.w1, other.w1))

    def relative_to(self, outer: "Box") -> "Box":
        """This box in the coordinates of a buffer that holds `outer`."""
        if not (outer.h0 <= self.h0 and self.h1 <= outer.h1 and outer.w0 <= self.w0
                and self.w1 <= outer.w1):
            raise ValueError(f"box {self} is not inside {outer}")
        return Box(self.h0 - outer.h0, self.h1 - outer.h0, self.w0 - outer.w0,
                   self.w1 - outer.w0)

    def to_list(self) -> list[int]:
        return [self.h0, self.h1, self.w0, self.w1]


def split_ranges(size: int, parts: int) -> list[tuple[int, int]]:
    """Cut [0, size) into `parts` contiguous ranges whose lengths differ by at most one
    (the first ones are the shorter ones when `parts` does not divide `size`)."""
    if not 1 <= parts <= size:
        raise ValueError(f"cannot cut {size} rows/columns into {parts} patches")
    cuts = [i * size // parts for i in range(parts + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(parts)]


def grid_boxes(h: int, w: int, grid: tuple[int, int]) -> list[list[Box]]:
    """The p×q output tiles of an h×w feature map, row-major."""
    rows, cols = split_ranges(h, grid[0]), split_ranges(w, grid[1])
    return [[Box(r0, r1, c0, c1) for (c0, c1) in cols] for (r0, r1) in rows]


def window_1d(o0: int, o1: int, kernel: int, stride: int, pad_before: int, dilation: int,
              in_size: int) -> tuple[int, int, int, int]:
    """Input range [i0, i1) that output range [o0, o1) reads, clipped to the tensor, and the
    (before, after) padding that replaces the clipped part."""
    lo = o0 * stride - pad_before
    hi = (o1 - 1) * stride - pad_before + dilation * (kernel - 1) + 1
    return max(lo, 0), min(hi, in_size), max(0, -lo), max(0, hi - in_size)


def layer_window(layer: Layer, out: Box, in_hw: tuple[int, int]) -> tuple[Box, tuple]:
    """(input box, border padding (top, left, bottom, right)) that computing `out` of a
    conv2d / pooling layer needs. Adds and concats read their inputs on the output box."""
    if layer.op in ("add", "concat"):
        return out, (0, 0, 0, 0)
    if layer.op not in ("conv2d", "avgpool", "maxpool"):
        raise ValueError(f"layer {layer.name} ({layer.op}) cannot run per patch")
    kh, kw = layer.ksize()
    dh, dw = layer.dilation if layer.op == "conv2d" else (1, 1)
    t, le = layer.padding[0], layer.padding[1]
    h0, h1, pt, pb = window_1d(out.h0, out.h1, kh, layer.stride[0], t, dh, in_hw[0])
    w0, w1, pl, pr = window_1d(out.w0, out.w1, kw, layer.stride[1], le, dw, in_hw[1])
    return Box(h0, h1, w0, w1), (pt, pl, pb, pr)
