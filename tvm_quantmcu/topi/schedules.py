"""Schedules of the compute definitions.

* ``default``: no scheduling at all — TVM's lowering of the compute as written (every stage
  materialised over the whole tile). The baseline of the benchmarks.
* ``portable``: plain C for any host. The padded input is produced one output row at a time
  (``xpad`` at the row loop) and the accumulators one pixel at a time, so scratch stays
  O(kernel rows × row) instead of O(tile).
* ``dsp``: the portable loop structure with the per-pixel inner products and the
  requantize+pack step tensorized into micro-kernels (SMLAD/SXTB16 on ARMv7E-M, C fallback on
  other hosts).

Knobs (for tuning): ``xpad_at`` ("row" or "pixel": where the padded input is produced),
``unroll_pixels`` (unroll the output-column loop by this factor) and ``pixels`` (register
blocking of the DSP schedule: 1 or 2 output pixels per micro-kernel call, sharing each weight
load; 2 applies when the tile width is even).
"""
from __future__ import annotations

from tvm import s_tir, tirx

from . import intrinsics
from .compute import Compute

SCHEDULES = ("default", "portable", "dsp")
DEFAULT_KNOBS = {"xpad_at": "row", "unroll_pixels": 1, "pixels": 2}


def schedule(comp: Compute, name: str, knobs: dict | None = None) -> tirx.PrimFunc:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known: {', '.join(SCHEDULES)}")
    knobs = {**DEFAULT_KNOBS, **(knobs or {})}
    func = comp.prim_func()
    if name == "default":
        return func
    sch = s_tir.Schedule(func)
    spec = comp.spec
    y = sch.get_sblock("y")
    if spec.op == "add":
        return sch.mod["main"]
    yh, yw, ycb = sch.get_loops(y)
    acc = sch.get_sblock("acc")
    xpad = sch.get_sblock("xpad")
    two = (name == "dsp" and knobs["pixels"] == 2 and spec.op in ("conv2d", "depthwise")
           and spec.out_hw[1] % 2 == 0)
    if two:
        yw, _ = sch.split(yw, [None, 2])
    sch.compute_at(acc, yw)
    sch.compute_at(xpad, yh if knobs["xpad_at"] == "row" else yw)
    per = 8 // spec.in_bits
    if spec.in_bits < 8 and spec.in_channels % per == 0:
        # One packed byte per inner iteration: constant shifts instead of c % per, c // per.
        _, inner = sch.split(sch.get_loops(xpad)[-1], [None, per])
        sch.unroll(inner)
    if name == "dsp" and spec.op != "avgpool":
        _tensorize(sch, comp, acc, y, yw, two)
    if knobs["unroll_pixels"] > 1:
        _, inner = sch.split(yw, [None, knobs["unroll_pixels"]])
        sch.unroll(inner)
    return sch.mod["main"]


def _tensorize(sch, comp, acc, y, yw, two):
    spec = comp.spec
    c = spec.in_channels
    oc = spec.out_channels
    if spec.op == "dense":
        kh, kw = spec.in_shape[:2]
    else:
        kh, kw = spec.kernel
    loops = sch.get_loops(acc)
    below = [i for i, l in enumerate(loops) if sch.get(l).same_as(sch.get(yw))][0] + 1
    if below < len(loops):    # else the per-pixel product is a single MAC: nothing to call
        first = loops[below]
        sch.decompose_reduction(acc, first)
        sw = spec.stride[1]
        if spec.op == "depthwise":
            sch.tensorize(first, intrinsics.dw_px2(c, kh, kw, sw) if two
                          else intrinsics.dw_px(c, kh, kw))
        else:
            sch.tensorize(first, intrinsics.conv_px2(oc, kh, kw, c, sw) if two
                          else intrinsics.conv_px(oc, kh, kw, c))
    if oc % (8 // spec.out_bits) == 0:
        sch.tensorize(sch.get_loops(y)[-1], intrinsics.requant_px(oc, spec.out_bits))
    # else: a partial last output byte — its clamped channel indices defeat region matching;
    # the requantization stays as generated loops (exact, slower; odd widths are rare).
