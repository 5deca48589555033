"""Tensor intrinsics: the inner products of one or two output pixels, fused with their
requantization and packing, described in TIR (what they compute, matched by ``sch.tensorize``)
and implemented by one call to a C micro-kernel of ``ukernels/qmcu_ukernels.h``.

Two families, each for 1 or 2 horizontally adjacent pixels (column stride ``sw``):

* ``conv`` (conv2d, pointwise, dense): ``acc[p, o] += Σ x[i, p·sw + j, c] · w[o, i, j, c]``
* ``dw`` (depthwise): ``acc[p, c] += Σ_{i,j} x[i, p·sw + j, c] · w[i, j, c]``

where x is read packed (``in_bits``) and the weights in lane order where the micro-kernel
reads whole words of activations (``compute.lane_order``). The fused form also covers the
output block ``y[p, :] = pack(requant(acc[p, :]))``: the scheduled ``acc`` update and ``y``
blocks are blockized together and replaced by one call that writes packed output bytes. The
product-only form (``out_bits=None``) is used when the output channels do not fill whole
output bytes.

Intrinsics are shape-specialised and registered on first use under a name that encodes the
shape and the order of the block's regions. Unit-extent dims get no loop and no block iter
var, because compute_at and blockize drop them from the scheduled IR too.
"""
from __future__ import annotations

from tvm import tirx
from tvm.ir.prim.expr import RShift
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T
from tvm.sym.analyzer import Analyzer

from ..quant.packing import packed_channels
from . import compute as CP
from . import wnib, wpack

_REGISTERED: set[str] = set()


class _QpView:
    """qp indexed as in compute.py over a buffer holding only qp[ZP_OUT:HI+1]."""
    def __init__(self, buf):
        self.buf = buf

    def __getitem__(self, i):
        return self.buf[i - CP.QP_ZP_OUT]


def _parse(src: str, env: dict):
    import tvm.script
    return tvm.script.from_source(src, extra_vars={"T": T, **env})


def _loops(dims, ind):
    """Loop nest + block iter vars for `dims` [(name, extent, "S"|"R")]; returns (text, ind,
    substitution name → index expression)."""
    live = [(v, e, k) for v, e, k in dims if e > 1]
    sub = {v: (f"v{v}" if e > 1 else "0") for v, e, _ in dims}
    txt = ""
    for v, e, _ in live:
        txt += f"{ind}for {v} in range({e}):\n"
        ind += "    "
    return txt, ind, live, sub


def _bind(live, ind):
    if len(live) == 1:
        v, e, k = live[0]
        return f"{ind}v{v} = T.axis.{'spatial' if k == 'S' else 'reduce'}({e}, {v})\n"
    if live:
        return (f"{ind}{', '.join('v' + v for v, _, _ in live)} = T.axis.remap("
                f"\"{''.join(k for _, _, k in live)}\", [{', '.join(v for v, _, _ in live)}])\n")
    return ""


# Role in the description of each buffer of the scheduled kernel.
_ROLE = {"x": "X", "xpad": "X", "w": "W", "acc": "A", "bias": "B", "mult": "M", "shift": "N",
         "qp": "Q", "y": "Y"}


def block_regions(block) -> tuple:
    """(reads, writes) of a blockized block as ((role, extents), ...). The description must
    list its regions in the same order and with the same extents; blockizing several blocks
    orders the union of their regions arbitrarily, so the order is taken from the block."""
    ana = Analyzer()

    def one(regions):
        return tuple((_ROLE[r.source.name], tuple(int(ana.simplify(x.extent))
                                                  for x in r.region)) for r in regions)
    return one(block.reads), one(block.writes)


def _name(kind, npx, kh, kw, c, oc, sw, in_bits, lane, out_bits, regions, w_bits):
    ob = "acc" if out_bits is None else f"o{out_bits}"
    sig = "_".join("".join(role for role, _ in rs) for rs in regions)
    return (f"qmcu_{kind}_{npx}px_{kh}x{kw}_c{c}_oc{oc}_s{sw}_i{in_bits}{'l' if lane else ''}"
            f"_w{w_bits}_{ob}_{sig}")


def product(kind: str, npx: int, kh: int, kw: int, c: int, oc: int, sw: int, in_bits: int,
            lane: bool, out_bits: int | None, regions: tuple, w_bits: int = 8) -> str:
    """Register (once) and return the name of the intrinsic: kind "conv" or "dw"; lane: the
    weights are in lane order (compute.lane_order); out_bits None for the product-only form;
    regions from :func:`block_regions` of the block it is to replace; w_bits < 8 (conv):
    the weights are packed (compute.packs_weights), read through wpack.decode, or with 8-bit
    inputs stored narrow (compute.stores_narrow_weights), read through wnib.decode."""
    name = _name(kind, npx, kh, kw, c, oc, sw, in_bits, lane, out_bits, regions, w_bits)
    if name in _REGISTERED:
        return name
    if kind not in ("conv", "dw"):
        raise ValueError(f"unknown intrinsic kind {kind!r}")
    body = _update(kind, npx, kh, kw, c, oc, sw, w_bits < 8)
    if out_bits is not None:
        body += _output(npx, oc, packed_channels(oc, out_bits), None if w_bits == 8 else
                        wnib.k_offset(oc, kh * kw, c, w_bits) if in_bits == 8 else
                        wpack.k_offset(oc, kh * kw, c, in_bits, w_bits))
    env = _expressions(in_bits, lane, oc, out_bits, (kh, kw, c, w_bits))
    head = _header(regions, out_bits is not None)
    call = _call(kind, npx, kh, kw, c, oc, sw, in_bits, out_bits, w_bits)
    desc = _parse(head + body, env)
    impl = _parse(head + f"        T.evaluate({call})\n", env)
    TensorIntrin.register(name, desc, impl, override=True)
    _REGISTERED.add(name)
    return name


def _header(regions, fused: bool) -> str:
    """Parameters, buffers (shaped as the block's regions) and the root block's regions."""
    shapes = {role: ext for rs in regions for role, ext in rs}
    params = "x: T.handle, w: T.handle, a: T.handle" + (
        ", b: T.handle, m: T.handle, n: T.handle, q: T.handle, y: T.handle" if fused else "")
    h = f"""
@T.prim_func(s_tir=True)
def f({params}):
    x0 = T.int32()
    x1 = T.int32()
    a0 = T.int32()
    a1 = T.int32()
    X = T.match_buffer(x, {shapes["X"]}, "uint8", strides=[x0, x1, 1], offset_factor=1)
    W = T.match_buffer(w, {shapes["W"]}, "int8", offset_factor=1)
    A = T.match_buffer(a, {shapes["A"]}, "int32", strides=[a0, a1, 1], offset_factor=1)
"""
    if fused:
        h += f"""    y0 = T.int32()
    y1 = T.int32()
    B = T.match_buffer(b, {shapes["B"]}, "int32", offset_factor=1)
    M = T.match_buffer(m, {shapes["M"]}, "int32", offset_factor=1)
    N = T.match_buffer(n, {shapes["N"]}, "int32", offset_factor=1)
    Q = T.match_buffer(q, {shapes["Q"]}, "int32", offset_factor=1)
    Y = T.match_buffer(y, {shapes["Y"]}, "uint8", strides=[y0, y1, 1], offset_factor=1)
"""

    def lst(rs):
        return ", ".join(f"{role}[{', '.join(f'0:{e}' for e in ext)}]" for role, ext in rs)
    return h + f"""    with T.sblock("root"):
        T.reads({lst(regions[0])})
        T.writes({lst(regions[1])})
"""


def _update(kind, npx, kh, kw, c, oc, sw, packed=False) -> str:
    """The accumulation block as the schedule leaves it."""
    if kind == "conv":
        dims = [("p", npx, "S"), ("o", oc, "S"), ("i", kh, "R"), ("j", kw, "R"),
                ("c", c, "R")]
        w_idx, a_ch = ["o", "i", "j"], "o"
    else:
        dims = [("p", npx, "S"), ("c", c, "S"), ("i", kh, "R"), ("j", kw, "R")]
        w_idx, a_ch = ["i", "j"], "c"
    txt, ind, live, sub = _loops(dims, "        ")
    col = sub["j"] if npx == 1 else (f"{sub['p']} * {sw} + {sub['j']}" if kw > 1
                                     else f"{sub['p']} * {sw}")
    a_ref = f"A[0, {sub['p']}, {sub[a_ch]}]"
    w_ref = f"W[{', '.join(sub[t] for t in w_idx)}, _wp({sub['c']})]"
    if packed:
        w_ref = f"_wv(W, {sub['o']}, {sub['i']}, {sub['j']}, {sub['c']})"
    return (txt + f"{ind}with T.sblock(\"update\"):\n" + _bind(live, ind + "    ")
            + f"{ind}    {a_ref} = {a_ref} + _x(X, {sub['i']}, {col}, {sub['c']}) * "
            f"T.Cast(\"int32\", {w_ref})\n")


def _output(npx, oc, cbo, k_offset=None) -> str:
    """The requantize-and-pack block of the same pixels (k_offset: packed weights, whose
    tail scales the accumulators)."""
    txt, ind, live, sub = _loops([("p", npx, "S"), ("k", cbo, "S")], "        ")
    if cbo == 1:                       # the output-byte loop of the scheduled IR stays
        txt, ind = txt + f"{ind}for k in range(1):\n", ind + "    "
    txt += f"{ind}with T.sblock(\"y\"):\n" + _bind(live, ind + "    ")
    if not live:
        wr = "" if k_offset is None else f", W[{k_offset}:{k_offset + oc}]"
        txt += (f"{ind}    T.reads(A[0, 0, 0:{oc}], B[0:{oc}], M[0:{oc}], N[0:{oc}], Q[0:3]"
                f"{wr})\n{ind}    T.writes(Y[0, 0, 0])\n")
    return txt + (f"{ind}    Y[0, {sub['p']}, {sub['k']}] = _y(A, B, M, N, Q, {sub['p']}, "
                  f"{sub['k']}, W)\n")


def _expressions(in_bits, lane, oc, out_bits, window) -> dict:
    """The expressions of compute.py the description is built from; window = (kh, kw, c,
    w_bits)."""
    kh, kw, c, w_bits = window
    # sub-byte weights: packed lanes (wpack) with low-bit inputs, narrow words (wnib) at 8
    store, wargs = (wnib, (kh * kw, c, w_bits)) if in_bits == 8 else \
        (wpack, (kh * kw, c, in_bits, w_bits))
    def _x(X, i, j, ch):
        if in_bits == 8:
            return CP._unpack(X, i, j, ch, in_bits)
        # As compute._unpack, but a constant channel (a unit channel dim) keeps its shift by
        # 0 as the scheduled IR does (the operator would fold it away).
        per = 8 // in_bits
        byte = X[i, j, ch // per].astype("int32")
        amount = tirx.const(ch % per * in_bits, "int32") if isinstance(ch, int) else \
            ch % per * in_bits
        return tirx.bitwise_and(RShift(byte, amount), (1 << in_bits) - 1)

    def _wp(ch):
        return CP.lane_pos(ch, in_bits) if lane else ch

    def _wv(W, o, i, j, ch):
        return store.decode(W, o, i * kw + j, ch, *wargs)

    def _y(A, B, M, N, Q, p, k, W=None):
        q = _QpView(Q)

        def a(ch):
            if w_bits == 8:
                return A[0, p, ch]
            return tirx.shift_left(A[0, p, ch], store.scale_exponent(W, ch, oc, *wargs))
        return CP.pack_expr(lambda ch: CP.requant(a(ch), B[ch], M[ch], N[ch], q), k, oc,
                            out_bits)
    return {"_x": _x, "_wp": _wp, "_y": _y, "_wv": _wv}


def _call(kind, npx, kh, kw, c, oc, sw, in_bits, out_bits, w_bits=8) -> str:
    """The micro-kernel call (argument order of ukernels/qmcu_ukernels.h; packed low-bit
    weights: qmcu_conv_lw of ukernels/qmcu_ukernels_lowbit_w.h, with the drain period)."""
    shape = f"{npx}, {kh}, {kw}, {c}, {oc}, {sw}, {in_bits}"
    if w_bits < 8 and in_bits == 8:
        kind = "conv_wn"
        shape = f"{npx}, {kh}, {kw}, {c}, {oc}, {sw}, {w_bits}"
    elif w_bits < 8:
        kind = "conv_lw"
        shape += f", {w_bits}, {wpack.drain_words(in_bits, w_bits)}"
    if out_bits is None:
        return (f"T.call_extern(\"int32\", \"qmcu_{kind}_acc\", A.access_ptr(\"rw\"), a1, "
                f"X.access_ptr(\"r\"), x0, x1, W.access_ptr(\"r\"), {shape})")
    return (f"T.call_extern(\"int32\", \"qmcu_{kind}\", Y.access_ptr(\"w\"), y1, "
            "A.access_ptr(\"rw\"), a1, X.access_ptr(\"r\"), x0, x1, W.access_ptr(\"r\"), "
            "B.access_ptr(\"r\"), M.access_ptr(\"r\"), N.access_ptr(\"r\"), "
            f"Q.access_ptr(\"r\"), {shape}, {out_bits})")
