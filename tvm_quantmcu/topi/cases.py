"""Random kernel cases with their expected output from the integer numpy reference
(tvm_quantmcu.quant.reference): used by the tests and the benchmarks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quant import reference as ref
from ..quant.packing import pack
from ..quant.qparams import weight_range
from .compute import KernelSpec
from .params import KernelParams, prepare


@dataclass
class RefCase:
    spec: KernelSpec
    x: np.ndarray           # packed input (H, W, bytes)
    params: KernelParams
    expected: np.ndarray    # packed expected output, flattened
    window: tuple[int, int, int, int]
    # conv2d/depthwise: the reference's own arguments (x unpacked NHWC, w OIHW, bias before
    # the input zero point is folded in, M, n, zero points, clamp), for other libraries' kernels
    raw: dict | None = None


def random_case(spec: KernelSpec, rng: np.random.Generator, small_shift: bool = False,
                window: tuple[int, int, int, int] | None = None, w_bits: int = 8,
                extreme: bool = False) -> RefCase:
    """Random input/weights/quantization for `spec`, expected output from the reference.

    window = (in_h, in_w, pad_t, pad_l) runs a patch: an input window smaller than the spec's
    maximum, with its own top/left padding (bottom/right follow from the output tile).
    Weights are drawn in the range of the spec's weight bits (or of w_bits < 8, for kernels
    that store them as int8), with the smaller shifts their scale brings. extreme: the
    exactness bound of packed kernels — every activation at its maximum against weights at
    the extremes of their range (all maximum, or maximum and minimum alternating by output
    channel)."""
    h, w, c = spec.in_shape
    w_bits = spec.w_bits if spec.w_bits != 8 else w_bits
    in_h, in_w, pt, pl = window or (h, w, spec.padding[0], spec.padding[1])
    qin, qout = (1 << spec.in_bits) - 1, (1 << spec.out_bits) - 1
    x = rng.integers(0, qin + 1, (1, in_h, in_w, c))
    if extreme:
        x[:] = qin
    zp_in = int(rng.integers(0, qin + 1))
    zp_out = int(rng.integers(0, qout + 1))
    lo = int(rng.integers(0, zp_out + 1)) if rng.random() < 0.5 else 0
    hi = int(rng.integers(max(lo, zp_out), qout + 1)) if rng.random() < 0.5 else qout
    oc = spec.out_channels

    def mult_shift(count, acc_scale):
        # Multipliers spread the accumulator range over a few output steps.
        M = rng.integers(1 << 30, 1 << 31, count)
        n = np.round(np.log2(acc_scale) + 31 - np.log2(qout + 1) + rng.uniform(-1, 2, count))
        n = np.clip(n, 1 if small_shift else 32, 62).astype(np.int64)
        if small_shift:
            n = rng.integers(1, 34, count)
        return M, n

    oh, ow = spec.out_hw
    if spec.op == "add":
        x2 = rng.integers(0, (1 << spec.in2_bits), (1, h, w, c))
        zp2 = int(rng.integers(0, 1 << spec.in2_bits))
        M, n = mult_shift(2, 256.0)
        nn = int(n.min())
        M1, M2 = (int(v) for v in M)
        y = ref.add_int(x, zp_in, x2, zp2, M1, M2, nn, zp_out, lo, hi)
        p = prepare(spec, M=M1, M2=M2, n=nn, zp_in=zp_in, zp_out=zp_out, lo=lo, hi=hi,
                    zp_in2=zp2)
        p.w = pack(x2[0], spec.in2_bits).reshape(-1).view(np.int8)
        return RefCase(spec, pack(x[0], spec.in_bits), p, pack(y[0], spec.out_bits).reshape(-1),
                       (h, w, 0, 0))
    kh, kw = (h, w) if spec.op == "dense" else spec.kernel
    sh, sw = spec.stride
    pb = (oh - 1) * sh + kh - in_h - pt
    pr = (ow - 1) * sw + kw - in_w - pl
    # With stride > 1 the last rows/columns may be unused (negative padding): crop them.
    xr = x[:, :in_h + min(pb, 0), :in_w + min(pr, 0)]
    padding = (pt, pl, max(pb, 0), max(pr, 0))
    if spec.op in ("avgpool", "maxpool"):
        M, n = mult_shift(1, float(qin * (kh * kw if spec.op == "avgpool" else 1)))
        pool = ref.avgpool_int if spec.op == "avgpool" else ref.maxpool_int
        y = pool(xr, zp_in, (kh, kw), (sh, sw), padding, int(M[0]), int(n[0]), zp_out, lo, hi)
        p = prepare(spec, M=int(M[0]), n=int(n[0]), zp_in=zp_in, zp_out=zp_out, lo=lo, hi=hi)
        return RefCase(spec, pack(x[0], spec.in_bits), p, pack(y[0], spec.out_bits).reshape(-1),
                       (in_h, in_w, pt, pl))
    wmin, wmax = weight_range(w_bits)
    wshape = (oc, 1, kh, kw) if spec.op == "depthwise" else (oc, c, kh, kw)
    wt = rng.integers(wmin, wmax + 1, wshape)
    if extreme:
        wt[:] = wmax
        if rng.random() < 0.5:
            wt[1::2] = wmin
    groups, k_per = (c, kh * kw) if spec.op == "depthwise" else (1, kh * kw * c)
    bias = rng.integers(-(1 << 16), 1 << 16, oc) >> (8 - w_bits)
    M, n = mult_shift(oc, float(qin) * wmax * np.sqrt(k_per) + 1)
    if spec.op == "dense":
        wd = wt.transpose(0, 2, 3, 1).reshape(oc, -1)          # (OC, H·W·C), NHWC order
        y = ref.dense_int(x, zp_in, wd, bias, M, n, zp_out, lo, hi)
        p = prepare(spec, w=wd, bias=bias, M=M, n=n, zp_in=zp_in, zp_out=zp_out, lo=lo, hi=hi)
    else:
        y = ref.conv2d_int(xr, zp_in, wt, bias, M, n, zp_out, lo, hi, (sh, sw), padding,
                           groups=groups)
        p = prepare(spec, w=wt, bias=bias, M=M, n=n, zp_in=zp_in, zp_out=zp_out, lo=lo, hi=hi)
        raw = {"x": x[0], "w": wt, "bias": bias, "M": M, "n": n, "zp_in": zp_in,
               "zp_out": zp_out, "lo": lo, "hi": hi}
        return RefCase(spec, pack(x[0], spec.in_bits), p,
                       pack(y[0], spec.out_bits).reshape(-1), (in_h, in_w, pt, pl), raw)
    return RefCase(spec, pack(x[0], spec.in_bits), p, pack(y[0], spec.out_bits).reshape(-1),
                   (in_h, in_w, pt, pl))
