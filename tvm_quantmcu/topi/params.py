"""Kernel parameters in the layout the kernels read (part of the C ABI).

From the integer reference's parameters (OIHW int8 weights, int32 bias, per-channel M/n, zero
points, clamp) to the arrays a kernel takes:

* weights: conv2d OHWI ``(OC, KH, KW, C')``; dense ``(OC, H, W, C')`` (the NHWC flattening of
  the reference); depthwise HWC ``(KH, KW, C')``; avgpool/maxpool none; add: the second input's slot.
  Along the channel axis the weights sit in the lane order of the micro-kernels
  (:func:`.compute.weight_pos`): the identity at 8-bit inputs and for gathered windows;
  otherwise C' is C rounded up to 8/16 channels (4/2 bits) and the padding is zero.
* bias: ``bias - zp_in·Σw`` per output channel (the zero-point correction, exact because the
  kernels pad with zp_in); avgpool ``-zp_in·KH·KW``; maxpool ``-zp_in`` (it pads with 0).
* mult/shift: int32 per output channel (add: ``[M1, M2]`` and ``[n]``).
* qp: ``[zp_in, zp_out, lo, hi, zp_in2]``.

Flash: :class:`ConstantPool` is the one account of what these arrays take in the firmware.
The C emitter prints the pool's arrays (each word-aligned, identical arrays once) into the
weights section, and the search and reports read the same pool's bytes, so the flash figure of
a policy is the weights section its firmware links.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quant.qparams import weight_range
from . import mve, wnib, wpack
from .compute import (QP_LEN, KernelSpec, UnsupportedKernel, kernel_taps, packs_weights,
                      stores_narrow_weights, weight_channels, weight_pos)


@dataclass
class KernelParams:
    w: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    qp: np.ndarray

    def arrays(self):
        return self.w, self.bias, self.mult, self.shift, self.qp

    def named_arrays(self) -> tuple[tuple[str, np.ndarray], ...]:
        """The arrays in the C ABI order, with the suffix of their constant's name."""
        return tuple(zip(("w", "bias", "mult", "shift", "qp"), self.arrays()))


CONST_ALIGN = 4     # every constant starts on a word: the kernels read weights a word at a time


def stored_bytes(a: np.ndarray) -> int:
    """Flash one constant array takes: its bytes, padded to the next constant's alignment."""
    return -(-np.asarray(a).nbytes // CONST_ALIGN) * CONST_ALIGN


class ConstantPool:
    """The constant arrays of one firmware by kind ("weights": kernel parameters, "tables":
    patch geometry), each stored once: arrays of equal type and content share one constant
    (the VDPC branches of a layer often share some). The emitter prints :attr:`entries`;
    :meth:`bytes` is their flash."""

    def __init__(self):
        self._names: dict[bytes, str] = {}
        self.entries: list[tuple[str, str, np.ndarray]] = []     # (name, kind, array)

    def add(self, name: str, a: np.ndarray, kind: str = "weights") -> str:
        """The constant holding `a`: `name`, or the earlier one with the same content."""
        a = np.ascontiguousarray(a)
        key = a.dtype.str.encode() + kind.encode() + a.tobytes()
        if key not in self._names:
            self._names[key] = name
            self.entries.append((name, kind, a))
        return self._names[key]

    def add_params(self, tag: str, params: KernelParams) -> list[str]:
        """The constants of one kernel call (named tag_w, tag_bias, ...), in ABI order."""
        return [self.add(f"{tag}_{k}", a) for k, a in params.named_arrays()]

    def bytes(self, kind: str = "weights") -> int:
        return sum(stored_bytes(a) for _, k, a in self.entries if k == kind)

    def names(self, kind: str = "weights") -> list[str]:
        return [n for n, k, _ in self.entries if k == kind]


def _per_channel(v, n: int, what: str, spec: KernelSpec) -> np.ndarray:
    a = np.broadcast_to(np.asarray(v, np.int64), (n,)).copy()
    if what == "mult" and (a.min() < 0 or a.max() >= 1 << 31):
        raise UnsupportedKernel(f"{spec.describe()}: multiplier outside [0, 2^31)")
    if what == "shift" and (a.min() < 1 or a.max() > 62):
        raise UnsupportedKernel(f"{spec.describe()}: shift outside [1, 62]")
    return a.astype(np.int32)


def _qp(zp_in, zp_out, lo, hi, zp_in2=0) -> np.ndarray:
    qp = np.zeros(QP_LEN, np.int32)
    qp[:] = [zp_in, zp_out, lo, hi, zp_in2]
    return qp


def _check_qp(spec: KernelSpec, zp_in, zp_out, lo, hi, zp_in2) -> None:
    # The kernels saturate to the output range before clamping: the clamp must lie inside it.
    qo = (1 << spec.out_bits) - 1
    if not 0 <= lo <= hi <= qo:
        raise UnsupportedKernel(f"{spec.describe()}: clamp [{lo}, {hi}] must satisfy "
                                f"0 ≤ lo ≤ hi ≤ {qo}")
    for name, zp, b in (("zp_in", zp_in, spec.in_bits), ("zp_in2", zp_in2, spec.in2_bits)):
        if not 0 <= zp < 1 << b:
            raise UnsupportedKernel(f"{spec.describe()}: {name} {zp} outside 0..{(1 << b) - 1}")


def prepare(spec: KernelSpec, *, M, n, zp_in: int, zp_out: int, lo: int, hi: int,
            w: np.ndarray | None = None, bias=None, M2: int | None = None,
            zp_in2: int = 0) -> KernelParams:
    """Arrays for `spec` from reference-style parameters (w: OIHW for conv, (OC, C, KH, KW)
    with C=1 for depthwise, (OC, H·W·C) for dense; add: M, M2 and a shared n)."""
    oc = spec.out_channels
    _check_qp(spec, zp_in, zp_out, lo, hi, zp_in2)
    qp = _qp(zp_in, zp_out, lo, hi, zp_in2)
    if spec.op == "add":
        if M2 is None:
            raise UnsupportedKernel(f"{spec.describe()}: add needs M (first input) and M2")
        mult = np.array([M, M2], np.int64)
        return KernelParams(np.zeros(1, np.int8), np.zeros(1, np.int32),
                            _per_channel(mult, 2, "mult", spec),
                            _per_channel(n, 1, "shift", spec), qp)
    mult = _per_channel(M, oc, "mult", spec)
    shift = _per_channel(n, oc, "shift", spec)
    h, wd, c = spec.in_shape
    kh, kw = spec.kernel
    if spec.op in ("avgpool", "maxpool"):
        b = np.full(oc, -zp_in * (kh * kw if spec.op == "avgpool" else 1), np.int64)
        return KernelParams(np.zeros(1, np.int8), b.astype(np.int32), mult, shift, qp)
    w = np.asarray(w)
    want = {"conv2d": (oc, c, kh, kw), "dense": (oc, h * wd * c),
            "depthwise": (oc, 1, kh, kw)}[spec.op]
    if w.shape != want:
        raise UnsupportedKernel(f"{spec.describe()}: weights {w.shape}, expected "
                                f"{'OIHW ' if spec.op == 'conv2d' else ''}{want}")
    w2 = w.reshape(oc, -1).astype(np.int64)
    wlo, whi = (-128, 127) if spec.w_bits == 8 else weight_range(spec.w_bits)
    if w2.size and (w2.min() < wlo or w2.max() > whi):
        raise UnsupportedKernel(f"{spec.describe()}: weights outside {wlo}..{whi}")
    b = (np.zeros(oc, np.int64) if bias is None else np.asarray(bias, np.int64)) \
        - zp_in * w2.sum(axis=1)
    # The kernels accumulate raw values in int32: bound the worst case.
    worst = np.abs(b) + ((1 << spec.in_bits) - 1) * np.abs(w2).sum(axis=1)
    if worst.max() >= 1 << 31:
        raise UnsupportedKernel(f"{spec.describe()}: accumulator may overflow int32 "
                                f"(|bias| + max|Σx·w| = {int(worst.max())})")
    packed, narrow = packs_weights(spec), stores_narrow_weights(spec)
    k = _fast_shift(w2, worst, shift.astype(np.int64), int8_weights=not (packed or narrow))
    if packed and wpack.uniform_exponent(worst, shift, spec.w_bits):
        k = np.full(oc, wpack.field_bits(spec.w_bits), np.int64)
    if packed or narrow:   # the kernel scales the accumulator by 2^k, the weights stay
        kh_, kw_ = kernel_taps(spec)
        wk = (w2.reshape(oc, c, kh_ * kw_).transpose(0, 2, 1) if spec.op == "conv2d"
              else w2.reshape(oc, kh_ * kw_, c))
        wst = (wpack.pack(wk, k, c, spec.in_bits, spec.w_bits) if packed
               else wnib.pack(wk, k, spec.w_bits))
        return KernelParams(wst, (b << k).astype(np.int32), mult, (shift + k).astype(np.int32),
                            qp)
    w = (w2 << k[:, None]).reshape(w.shape)
    if spec.op == "conv2d":
        wk = w.transpose(0, 2, 3, 1)
    elif spec.op == "dense":
        wk = w.reshape(oc, h, wd, c)
    else:
        wk = w[:, 0].transpose(1, 2, 0)
    wk = _lane_order(wk, spec)
    return KernelParams(np.ascontiguousarray(wk, np.int8), (b << k).astype(np.int32), mult,
                        (shift + k).astype(np.int32), qp)


def _fast_shift(w: np.ndarray, worst: np.ndarray, n: np.ndarray,
                int8_weights: bool = True) -> np.ndarray:
    """Per output channel (rows of `w`), the k ≥ 0 by which weights and bias can be multiplied
    by 2^k and n raised by k without changing one output — floor((2^k·a·M + 2^(n+k−1)) /
    2^(n+k)) is floor((a·M + 2^(n−1)) / 2^n) — so that n + k reaches 33, where the DSP
    requantization is one SMMUL and shifts instead of a 64-bit product. n < 33 comes with
    low-bit weights (their larger scale); their small values leave int8 room for the 2^k.
    Bounded by int8 weights (unless the kernel scales the accumulator instead: packed
    weights), the int32 accumulator and n ≤ 62."""
    lo, hi = w.min(axis=1, initial=0), w.max(axis=1, initial=0)
    if not int8_weights:
        lo, hi = np.zeros_like(lo), np.zeros_like(hi)
    k = np.maximum(33 - n, 0)
    for _ in range(33):
        bad = (k > 0) & (((hi << k) > 127) | ((lo << k) < -128) | ((worst << k) >= 1 << 31)
                         | (n + k > 62))
        if not bad.any():
            break
        k = np.where(bad, k - 1, k)
    return k


def _lane_order(wk: np.ndarray, spec: KernelSpec) -> np.ndarray:
    """Weights (..., C) → (..., C') with channel c at weight_pos(c) (zeros elsewhere)."""
    out = np.zeros(wk.shape[:-1] + (weight_channels(spec),), np.int64)
    out[..., weight_pos(np.arange(wk.shape[-1]), spec)] = wk
    return out


def spec_for_layer(qlayer, in_shape_hwc, in_bits: int, out_bits: int,
                   padding=None, in2_bits: int = 8, target: str | None = None) -> KernelSpec:
    """KernelSpec of a reference QLayer (tvm_quantmcu.quant.reference) on an input window.
    target: the kernels' target, where it decides how weights are stored (sub-byte weights as
    int8 for the Helium kernels, :func:`.mve.stored_w_bits`); None: as on the Cortex-M4."""
    l = qlayer.layer
    w_bits = mve.stored_w_bits(qlayer.w_bits, target)
    if l.op == "conv2d":
        if tuple(l.dilation) != (1, 1):
            raise UnsupportedKernel(f"{l.name}: dilation {l.dilation} has no kernel")
        if l.is_depthwise:
            op = "depthwise"
        elif l.groups == 1:
            op = "conv2d"
        else:
            raise UnsupportedKernel(f"{l.name}: grouped convolution (groups={l.groups})")
        return KernelSpec(op, tuple(in_shape_hwc), int(l.weight.shape[0]), l.ksize(),
                          tuple(l.stride), tuple(padding or l.padding), in_bits, out_bits,
                          w_bits=w_bits)
    if l.op == "dense":
        return KernelSpec("dense", tuple(in_shape_hwc), int(l.weight.shape[0]),
                          in_bits=in_bits, out_bits=out_bits, w_bits=w_bits)
    if l.op in ("avgpool", "maxpool"):
        return KernelSpec(l.op, tuple(in_shape_hwc), in_shape_hwc[2], tuple(l.kernel),
                          tuple(l.stride), tuple(padding or l.padding), in_bits, out_bits)
    if l.op == "add":
        return KernelSpec("add", tuple(in_shape_hwc), in_shape_hwc[2], in_bits=in_bits,
                          out_bits=out_bits, in2_bits=in2_bits)
    raise UnsupportedKernel(f"{l.name}: op {l.op} has no kernel")


def params_for_layer(qlayer, spec: KernelSpec) -> KernelParams:
    """KernelParams of a reference QLayer for `spec` (see :func:`spec_for_layer`)."""
    lo, hi = qlayer.clamp
    zo = qlayer.out_q.zero_point
    zi = qlayer.in_q[0].zero_point
    if spec.op == "add":
        return prepare(spec, M=qlayer.M_add[0], M2=qlayer.M_add[1], n=int(qlayer.n), zp_in=zi,
                       zp_out=zo, lo=lo, hi=hi, zp_in2=qlayer.in_q[1].zero_point)
    if spec.op in ("avgpool", "maxpool"):
        return prepare(spec, M=int(qlayer.M), n=int(qlayer.n), zp_in=zi, zp_out=zo, lo=lo,
                       hi=hi)
    return prepare(spec, w=qlayer.w, bias=qlayer.bias, M=qlayer.M, n=qlayer.n, zp_in=zi,
                   zp_out=zo, lo=lo, hi=hi)
