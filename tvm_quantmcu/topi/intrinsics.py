"""Tensor intrinsics: the per-pixel inner products and the requantize+pack step, each
described in TIR (what it computes, matched by ``sch.tensorize``) and implemented by a call to
a C micro-kernel of ``ukernels/qmcu_ukernels.h`` (DSP on ARMv7E-M, portable C elsewhere).

Intrinsics are shape-specialised (output channels, window, bits) and registered on first use
under a name that encodes the shape.
"""
from __future__ import annotations

import re

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

from . import compute as CP

_REGISTERED: set[str] = set()


def _register(name, desc, impl) -> str:
    if name not in _REGISTERED:
        TensorIntrin.register(name, desc, impl, override=True)
        _REGISTERED.add(name)
    return name


def _product_intrin(name, dims, x_idx, w_shape, w_idx, a_ch, call, x_shape_override=None):
    """Register an accumulate-into-A intrinsic. dims: (var, extent, "S"/"R") in loop order;
    the index lists name the dims (or 0). Unit-extent dims get no loop and no block iter var,
    because compute_at and blockize drop them from the scheduled IR too."""
    live = [(v, e, k) for v, e, k in dims if e > 1]
    sub = {v: (f"v{v}" if e > 1 else "0") for v, e, _ in dims}

    def one(term):
        # "p*2+j"-style index terms: substitute each dim name
        if term in sub:
            return sub[term]
        out = term
        for v in sorted(sub, key=len, reverse=True):
            out = re.sub(rf"\b{v}\b", sub[v], out)
        return out

    def idx(names):
        return ", ".join(one(n) for n in names)

    ext = {v: e for v, e, _ in dims}
    x_shape = tuple(x_shape_override or (ext[n] for n in x_idx))
    a_pix = ext.get("p", 1)
    header = f"""
@T.prim_func(s_tir=True)
def f(x: T.handle, w: T.handle, a: T.handle):
    x0 = T.int32()
    x1 = T.int32()
    a0 = T.int32()
    a1 = T.int32()
    X = T.match_buffer(x, {x_shape}, "int16", strides=[x0, x1, 1], offset_factor=1)
    W = T.match_buffer(w, {tuple(w_shape)}, "int8", offset_factor=1)
    A = T.match_buffer(a, (1, {a_pix}, {ext[a_ch]}), "int32", strides=[a0, a1, 1],
                       offset_factor=1)
    with T.sblock("root"):
        T.reads(A[0, 0:{a_pix}, 0:{ext[a_ch]}], X[0:{x_shape[0]}, 0:{x_shape[1]}, 0:{x_shape[2]}],
                W[{", ".join(f"0:{e}" for e in w_shape)}])
        T.writes(A[0, 0:{a_pix}, 0:{ext[a_ch]}])
"""
    body = ""
    ind = "        "
    for v, e, _ in live:
        body += f"{ind}for {v} in range({e}):\n"
        ind += "    "
    a_ref = f"A[0, {sub.get('p', '0')}, {sub[a_ch]}]"
    update = (f"{a_ref} = {a_ref} + T.Cast(\"int32\", X[{idx(x_idx)}]) * "
              f"T.Cast(\"int32\", W[{idx(w_idx)}])")
    body += f"{ind}with T.sblock(\"update\"):\n"
    ind += "    "
    if len(live) == 1:
        v, e, k = live[0]
        kind = "spatial" if k == "S" else "reduce"
        body += f"{ind}v{v} = T.axis.{kind}({e}, {v})\n"
    elif live:
        body += (f"{ind}{', '.join('v' + v for v, _, _ in live)} = T.axis.remap("
                 f"\"{''.join(k for _, _, k in live)}\", [{', '.join(v for v, _, _ in live)}])\n")
    else:
        body += f"{ind}T.reads({a_ref}, X[{idx(x_idx)}], W[{idx(w_idx)}])\n"
        body += f"{ind}T.writes({a_ref})\n"
    body += f"{ind}{update}\n"
    desc = _parse(header + body)
    impl = _parse(header + f"        T.evaluate({call})\n")
    return _register(name, desc, impl)


def _parse(src: str):
    import tvm.script
    return tvm.script.from_source(src, extra_vars={"T": T})


def conv_px(oc: int, kh: int, kw: int, c: int) -> str:
    """acc[0, 0, o] += Σ x[i, j, ch] · w[o, i, j, ch] → qmcu_conv_px."""
    call = ("T.call_extern(\"int32\", \"qmcu_conv_px\", A.access_ptr(\"rw\"), "
            f"X.access_ptr(\"r\"), x0, {kh}, {kw * c}, W.access_ptr(\"r\"), {oc})")
    return _product_intrin(f"qmcu_conv_px_{oc}_{kh}_{kw}_{c}",
                           [("o", oc, "S"), ("i", kh, "R"), ("j", kw, "R"), ("ch", c, "R")],
                           ["i", "j", "ch"], (oc, kh, kw, c), ["o", "i", "j", "ch"], "o", call)


def dw_px(c: int, kh: int, kw: int) -> str:
    """acc[0, 0, ch] += Σ x[i, j, ch] · w[i, j, ch] → qmcu_dw_px."""
    call = ("T.call_extern(\"int32\", \"qmcu_dw_px\", A.access_ptr(\"rw\"), "
            f"X.access_ptr(\"r\"), x0, {kh}, {kw}, {c}, W.access_ptr(\"r\"))")
    return _product_intrin(f"qmcu_dw_px_{c}_{kh}_{kw}",
                           [("ch", c, "S"), ("i", kh, "R"), ("j", kw, "R")],
                           ["i", "j", "ch"], (kh, kw, c), ["i", "j", "ch"], "ch", call)


def conv_px2(oc: int, kh: int, kw: int, c: int, sw: int) -> str:
    """Two horizontally adjacent output pixels (column stride sw) → qmcu_conv_px2."""
    call = ("T.call_extern(\"int32\", \"qmcu_conv_px2\", A.access_ptr(\"rw\"), "
            f"X.access_ptr(\"r\"), x0, {kh}, {kw * c}, W.access_ptr(\"r\"), {oc}, a1, "
            f"{sw * c})")
    return _product_intrin(f"qmcu_conv_px2_{oc}_{kh}_{kw}_{c}_{sw}",
                           [("p", 2, "S"), ("o", oc, "S"), ("i", kh, "R"), ("j", kw, "R"),
                            ("ch", c, "R")],
                           ["i", f"p*{sw}+j", "ch"], (oc, kh, kw, c), ["o", "i", "j", "ch"], "o",
                           call, x_shape_override=(kh, sw + kw, c))


def dw_px2(c: int, kh: int, kw: int, sw: int) -> str:
    """Two horizontally adjacent output pixels of a depthwise conv → qmcu_dw_px2."""
    call = ("T.call_extern(\"int32\", \"qmcu_dw_px2\", A.access_ptr(\"rw\"), "
            f"X.access_ptr(\"r\"), x0, {kh}, {kw}, {c}, W.access_ptr(\"r\"), a1, {sw * c})")
    return _product_intrin(f"qmcu_dw_px2_{c}_{kh}_{kw}_{sw}",
                           [("p", 2, "S"), ("ch", c, "S"), ("i", kh, "R"), ("j", kw, "R")],
                           ["i", f"p*{sw}+j", "ch"], (kh, kw, c), ["i", "j", "ch"], "ch", call,
                           x_shape_override=(kh, sw + kw, c))


class _QpView:
    """qp indexed as in compute.py over a buffer holding only qp[ZP_OUT:HI+1]."""
    def __init__(self, buf):
        self.buf = buf

    def __getitem__(self, i):
        return self.buf[i - CP.QP_ZP_OUT]


def requant_px(oc: int, bits: int) -> str:
    """y[0, 0, :] = pack(requant(acc[0, 0, :])) → qmcu_requant_px."""
    name = f"qmcu_requant_px_{oc}_{bits}"
    cb = (oc * bits + 7) // 8
    ocr = cb * (8 // bits)   # channels the region analysis sees (whole output bytes)

    def _y(A, B, M, N, Q, vj):
        q = _QpView(Q)
        return CP.pack_expr(lambda ch: CP.requant(A[0, 0, ch], B[ch], M[ch], N[ch], q), vj, oc,
                            bits)

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, m: T.handle, n: T.handle, q: T.handle, y: T.handle):
        a0 = T.int32()
        a1 = T.int32()
        y0 = T.int32()
        y1 = T.int32()
        A = T.match_buffer(a, (1, 1, ocr), "int32", strides=[a0, a1, 1], offset_factor=1)
        B = T.match_buffer(b, (ocr,), "int32", offset_factor=1)
        M = T.match_buffer(m, (ocr,), "int32", offset_factor=1)
        N = T.match_buffer(n, (ocr,), "int32", offset_factor=1)
        Q = T.match_buffer(q, (3,), "int32", offset_factor=1)
        Y = T.match_buffer(y, (1, 1, cb), "uint8", strides=[y0, y1, 1], offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0, 0, 0:ocr], B[0:ocr], M[0:ocr], N[0:ocr], Q[0:3])
            T.writes(Y[0, 0, 0:cb])
            for j in range(cb):
                with T.sblock("y"):
                    vj = T.axis.spatial(cb, j)
                    Y[0, 0, vj] = _y(A, B, M, N, Q, vj)

    @T.prim_func(s_tir=True)
    def desc_one_byte(a: T.handle, b: T.handle, m: T.handle, n: T.handle, q: T.handle,
                      y: T.handle):
        # A single output byte: blockize leaves the unit loop's block without iter vars.
        a0 = T.int32()
        a1 = T.int32()
        y0 = T.int32()
        y1 = T.int32()
        A = T.match_buffer(a, (1, 1, ocr), "int32", strides=[a0, a1, 1], offset_factor=1)
        B = T.match_buffer(b, (ocr,), "int32", offset_factor=1)
        M = T.match_buffer(m, (ocr,), "int32", offset_factor=1)
        N = T.match_buffer(n, (ocr,), "int32", offset_factor=1)
        Q = T.match_buffer(q, (3,), "int32", offset_factor=1)
        Y = T.match_buffer(y, (1, 1, 1), "uint8", strides=[y0, y1, 1], offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0, 0, 0:ocr], B[0:ocr], M[0:ocr], N[0:ocr], Q[0:3])
            T.writes(Y[0, 0, 0])
            for j in range(1):
                with T.sblock("y"):
                    T.reads(A[0, 0, 0:ocr], B[0:ocr], M[0:ocr], N[0:ocr],
                            Q[0:3])
                    T.writes(Y[0, 0, 0])
                    Y[0, 0, 0] = _y(A, B, M, N, Q, 0)

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, m: T.handle, n: T.handle, q: T.handle, y: T.handle):
        a0 = T.int32()
        a1 = T.int32()
        y0 = T.int32()
        y1 = T.int32()
        A = T.match_buffer(a, (1, 1, ocr), "int32", strides=[a0, a1, 1], offset_factor=1)
        B = T.match_buffer(b, (ocr,), "int32", offset_factor=1)
        M = T.match_buffer(m, (ocr,), "int32", offset_factor=1)
        N = T.match_buffer(n, (ocr,), "int32", offset_factor=1)
        Q = T.match_buffer(q, (3,), "int32", offset_factor=1)
        Y = T.match_buffer(y, (1, 1, cb), "uint8", strides=[y0, y1, 1], offset_factor=1)
        with T.sblock("root"):
            T.reads(A[0, 0, 0:ocr], B[0:ocr], M[0:ocr], N[0:ocr], Q[0:3])
            T.writes(Y[0, 0, 0:cb])
            T.evaluate(T.call_extern("int32", "qmcu_requant_px", Y.access_ptr("w"),
                                     A.access_ptr("r"), B.access_ptr("r"), M.access_ptr("r"),
                                     N.access_ptr("r"), Q.access_ptr("r"), oc, bits))

    return _register(name, desc_one_byte if cb == 1 else desc, impl)
