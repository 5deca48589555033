"""The integer TIR functions a lowered module calls, each added once per shape.

* layer kernels: ``tvm_quantmcu.topi.compute.make_compute(spec)`` with the runtime window
  arguments (``in_h``, ``in_w``, ``pad_t``, ``pad_l``) specialised to the call's window, so the
  Relax call passes tensors only;
* ``requant``: re-express a packed tensor in another quantization, exactly
  ``tvm_quantmcu.quant.requant_int`` (the switch from the 8-bit to the low-bit branch);
* ``outlier check``: ``max(map) >= threshold_q or min(map) <= threshold_q_lo`` over an 8-bit
  map, a boolean scalar for ``relax.If``.

Tensors are NHWC without the batch axis, uint8, packed along the channels at their bits
(:mod:`tvm_quantmcu.quant.packing`).
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
from tvm import relax, te, tirx

from tvm_quantmcu.quant import ActQuant, quantize_multiplier
from tvm_quantmcu.quant.packing import packed_channels
from tvm_quantmcu.topi.compute import (QP_LEN, KernelSpec, make_compute, pack_expr, requant,
                                       unpack_value)


# What each integer TIR function computes, as attributes the C generator reads.
ATTR_KERNEL = "quantmcu.kernel"            # human-readable description
ATTR_SPEC = "quantmcu.spec"                # layer kernels: the KernelSpec fields
ATTR_WINDOW = "quantmcu.window"            # layer kernels: (in_h, in_w, pad_t, pad_l)
ATTR_REQUANT = "quantmcu.requant"          # requantization: (h, w, c, src_bits, dst_bits)
ATTR_CHECK = "quantmcu.outlier_check"      # outlier check: (h, w, c) of the 8-bit map


def spec_attr(spec: KernelSpec) -> dict:
    """The KernelSpec as a function attribute (:func:`spec_of_attr` reads it back)."""
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(spec).items()}


def spec_of_attr(a) -> KernelSpec:
    """The KernelSpec a layer kernel's :data:`ATTR_SPEC` attribute holds."""
    d = {}
    for k in a.keys():
        v = a[k]
        d[str(k)] = str(v) if str(k) == "op" else int(v) if isinstance(
            v, (int, tirx.IntImm)) else tuple(int(x) for x in v)
    return KernelSpec(**d)


def packed_type(h: int, w: int, channels: int, bits: int) -> relax.TensorType:
    return relax.TensorType((h, w, packed_channels(channels, bits)), "uint8")


def requant_func(h: int, w: int, c: int, src_bits: int, dst_bits: int) -> tirx.PrimFunc:
    """y = clamp(floor(((x - zp_src)·M + 2^(n-1)) / 2^n) + zp_dst, 0, qmax) per value;
    arguments (x, mult[1], shift[1], qp[5] as the kernels' qp, y)."""
    X = te.placeholder((h, w, packed_channels(c, src_bits)), "uint8", name="x")
    M = te.placeholder((1,), "int32", name="mult")
    N = te.placeholder((1,), "int32", name="shift")
    qp = te.placeholder((QP_LEN,), "int32", name="qp")

    def out(i, j, cb):
        return pack_expr(lambda ch: requant(unpack_value(X, i, j, ch, src_bits), -qp[0], M[0],
                                            N[0], qp), cb, c, dst_bits)
    y = te.compute((h, w, packed_channels(c, dst_bits)), out, name="y")
    return te.create_prim_func([X, M, N, qp, y])


def requant_args(src: ActQuant, dst: ActQuant) -> list[np.ndarray]:
    """(mult, shift, qp) of :func:`requant_func` for src → dst, as quant.requant_int."""
    m, n = quantize_multiplier(src.scale / dst.scale)
    qp = np.array([src.zero_point, dst.zero_point, 0, dst.qmax, 0], np.int32)
    return [np.array([m], np.int32), np.array([n], np.int32), qp]


def outlier_check_func(h: int, w: int, c: int) -> tirx.PrimFunc:
    """outlier = max(x) >= thr[0] or min(x) <= thr[1] over an unpacked 8-bit map."""
    X = te.placeholder((h, w, c), "uint8", name="x")
    thr = te.placeholder((2,), "int32", name="thr")

    def reduce(fn, name):
        axes = [te.reduce_axis((0, n)) for n in (h, w, c)]
        return te.compute((), lambda: fn(X[axes[0], axes[1], axes[2]].astype("int32"),
                                         axis=axes), name=name)
    mx, mn = reduce(te.max, "max"), reduce(te.min, "min")
    out = te.compute((), lambda: tirx.any(mx() >= thr[0], mn() <= thr[1]), name="outlier")
    return te.create_prim_func([X, thr, out])


class KernelLibrary:
    """Adds each distinct integer TIR function to the module being built, once."""

    def __init__(self, bb: relax.BlockBuilder):
        self.bb = bb
        self._gvs: dict = {}

    def _add(self, key, name: str, make, describe: str, attrs: dict):
        if key not in self._gvs:
            digest = hashlib.sha1(repr(key).encode()).hexdigest()[:8]
            gname = f"{name}_{digest}"
            f = make().with_attr({"global_symbol": gname, ATTR_KERNEL: describe, **attrs})
            self._gvs[key] = self.bb.add_func(f, gname)
        return self._gvs[key]

    def layer(self, spec: KernelSpec, window: tuple[int, int, int, int]):
        """The kernel of `spec` for an input window (in_h, in_w, pad_t, pad_l)."""
        def make():
            f = make_compute(spec).prim_func()
            return f.specialize(dict(zip(f.params[-4:], window)))
        return self._add(("layer", spec, window), f"qmcu_{spec.op}", make,
                         f"{spec.describe()} window {list(window)}",
                         {ATTR_SPEC: spec_attr(spec), ATTR_WINDOW: [int(v) for v in window]})

    def requant(self, h: int, w: int, c: int, src_bits: int, dst_bits: int):
        return self._add(("requant", h, w, c, src_bits, dst_bits), "qmcu_requant",
                         lambda: requant_func(h, w, c, src_bits, dst_bits),
                         f"requant {h}x{w}x{c} bits {src_bits}->{dst_bits}",
                         {ATTR_REQUANT: [h, w, c, src_bits, dst_bits]})

    def outlier_check(self, h: int, w: int, c: int):
        return self._add(("check", h, w, c), "qmcu_outlier_check",
                         lambda: outlier_check_func(h, w, c), f"outlier check {h}x{w}x{c}",
                         {ATTR_CHECK: [h, w, c]})
