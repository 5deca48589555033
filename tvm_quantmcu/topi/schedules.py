"""Schedules of the compute definitions.

* ``default``: no scheduling at all — TVM's lowering of the compute as written (every stage
  materialised over the whole tile). The baseline of the benchmarks.
* ``portable``: plain C for any host. The padded input is produced one output row at a time
  (``xpad`` at the row loop) and the accumulators one pixel at a time, so scratch stays
  O(kernel rows × row) instead of O(tile).
* ``dsp``: the portable loop structure with each output pixel (or pair of pixels) computed by
  one micro-kernel call: the inner products over packed activations (SMLAD/SXTB16 on ARMv7E-M,
  C fallback on other hosts) fused with requantization and packing, tensorized from the
  ``acc`` update and ``y`` blocks together.

Ops that never pad (1×1 convolutions, dense) read the input in place: their ``xpad`` stage is
inlined. Knobs (for tuning):

* ``xpad_at`` ("row" or "pixel"): where the padded input is produced;
* ``unroll_pixels``: unroll the output-column loop by this factor;
* ``pixels``: register blocking of the DSP schedule — 1 or 2 output pixels per micro-kernel
  call, sharing each weight load (2 applies when the tile width is even); "row": one call per
  output row, which runs its pixels in pairs and an odd row's last one alone, at the cost of
  the whole row's accumulators in scratch (``xpad_at`` and ``unroll_pixels`` do not apply);
* ``loop_pragma``: compile with the optimisation pragma of ``registry.PRAGMA``;
* ``requant_at`` ("end" or "pair"): the micro-kernel requantizes the outputs after all the
  products, or each output-channel pair right after its products, from registers (see
  ``qmcu_ukernels_dsp.h``);
* ``lw_pairs`` ("auto", 2 or 1): output-channel pairs per pass of the packed low-bit-weight
  micro-kernels (``qmcu_ukernels_lowbit_w.h``): two share each unpacked activation lane,
  one leaves registers to the drains and the address arithmetic; "auto" takes two unless
  drains are due.
"""
from __future__ import annotations

from tvm import s_tir, tirx

from . import intrinsics
from .compute import (Compute, kernel_taps, lane_order, never_pads, packs_weights,
                      stores_narrow_weights)

SCHEDULES = ("default", "portable", "dsp")
# loop_pragma: compile the kernel file with registry.PRAGMA (the registry turns it off for the
# default schedule unless asked for, so that the baseline is TVM's lowering as emitted).
DEFAULT_KNOBS = {"xpad_at": "row", "unroll_pixels": 1, "pixels": 2, "loop_pragma": True,
                 "requant_at": "end", "lw_pairs": "auto"}


def moot_knobs(knobs: dict) -> set[str]:
    """Knobs that have no effect given the others (whatever the spec)."""
    return {"xpad_at", "unroll_pixels"} if knobs.get("pixels") == "row" else set()


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
    yh, yw, _ = sch.get_loops(y)
    acc = sch.get_sblock("acc")
    xpad = sch.get_sblock("xpad")
    if name == "dsp" and knobs["pixels"] == "row" and spec.op in ("conv2d", "depthwise"):
        return _row_schedule(sch, comp, acc, y, xpad, yh)
    npx = 2 if (name == "dsp" and knobs["pixels"] == 2 and spec.op in ("conv2d", "depthwise")
                and spec.out_hw[1] % 2 == 0) else 1
    if npx == 2:
        yw, _ = sch.split(yw, [None, 2])
    sch.compute_at(acc, yw)
    if never_pads(spec):
        sch.compute_inline(xpad)
    else:
        sch.compute_at(xpad, yh if knobs["xpad_at"] == "row" else yw)
    if name == "dsp" and spec.op not in ("avgpool", "maxpool"):
        _tensorize(sch, comp, acc, y, yw, npx)
    if knobs["unroll_pixels"] > 1:
        _, inner = sch.split(yw, [None, knobs["unroll_pixels"]])
        sch.unroll(inner)
    return sch.mod["main"]


def _row_schedule(sch, comp, acc, y, xpad, yh) -> tirx.PrimFunc:
    """pixels = "row": one micro-kernel call per output row (pairs of pixels, then the last
    one of an odd row), the accumulators of the whole row in scratch."""
    sch.compute_at(acc, yh)
    if never_pads(comp.spec):
        sch.compute_inline(xpad)
    else:
        sch.compute_at(xpad, yh)
    _tensorize(sch, comp, acc, y, yh, comp.spec.out_hw[1])
    return sch.mod["main"]


def _tensorize(sch, comp, acc, y, yw, npx):
    spec = comp.spec
    kh, kw = kernel_taps(spec)
    loops = sch.get_loops(acc)
    below = [i for i, l in enumerate(loops) if sch.get(l).same_as(sch.get(yw))][0] + 1
    if all(int(sch.get(l).extent) == 1 for l in loops[below:]) and npx == 1:
        return                    # one MAC per output value: nothing worth a call
    sch.decompose_reduction(acc, loops[below])
    kind = "dw" if spec.op == "depthwise" else "conv"
    oc = spec.out_channels
    # Whole output bytes per pixel: the micro-kernel requantizes and packs too. Otherwise it
    # only accumulates (a partial last byte's clamped channel indices defeat region matching)
    # and the requantization stays generated code.
    fused = oc % (8 // spec.out_bits) == 0
    target = [acc, y] if fused else sch.get_loops(acc)[below]
    block = sch.blockize(target, preserve_unit_iters=False)
    packed = packs_weights(spec) or stores_narrow_weights(spec)
    # packs_weights leaves out the degenerate shapes whose weight index TVM simplifies
    # differently from the packed description, so every selected kernel tensorizes
    sch.tensorize(block, intrinsics.product(
        kind, npx, kh, kw, spec.in_channels, oc, spec.stride[1], spec.in_bits,
        lane_order(spec), spec.out_bits if fused else None,
        intrinsics.block_regions(sch.get(block)), spec.w_bits if packed else 8))
