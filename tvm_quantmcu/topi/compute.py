"""TIR compute definitions (TE) of the integer ops, NHWC, packed sub-byte activations.

Every op has the same stages, which the schedules rearrange:

* ``xpad`` (uint8, packed like the input): the input window with border padding filled with
  the input zero point (= real zero) in every lane. The window's size and its border padding
  are runtime arguments (``in_h``, ``in_w``, ``pad_t``, ``pad_l``), so one kernel instance
  serves every patch of a patch-based layer; the bottom/right padding is whatever the fixed
  output tile needs beyond ``in_h``/``in_w``. A negative ``pad_t``/``pad_l`` starts the window
  inside the buffer passed. Ops that never pad (1×1 convolutions, dense) read the window
  as is: it must cover the tile.
* ``acc`` (int32): the reduction over raw values, unpacked from ``xpad``. The zero-point
  correction ``-zp_in·Σw`` is folded into the bias by :mod:`.params` (exact, since padding
  holds zp_in). Weights are read through :func:`weight_pos` (see there).
* ``y`` (uint8, packed): fixed-point requantization ``floor((acc·M + 2^(n-1)) / 2^n)``, output
  zero point, fused clamp, packing of the output bits.

The scalar quantization parameters are an int32 array ``qp = [zp_in, zp_out, lo, hi, zp_in2]``.
"""
from __future__ import annotations

from dataclasses import dataclass

from tvm import te, tirx

from ..quant.packing import packed_channels
from ..quant.qparams import WEIGHT_BITS
from . import maxpool, wnib, wpack

ACT_BITS = (8, 4, 2)
QP_LEN = 5
QP_ZP_IN, QP_ZP_OUT, QP_LO, QP_HI, QP_ZP_IN2 = range(QP_LEN)
OPS = ("conv2d", "depthwise", "dense", "add", "avgpool", "maxpool")
POOL_OPS = ("avgpool", "maxpool")


class UnsupportedKernel(ValueError):
    """An op/shape/bit combination no kernel implements."""


@dataclass(frozen=True)
class KernelSpec:
    """Everything that determines one compiled kernel (compile-time)."""
    op: str                       # conv2d | depthwise | dense | add | avgpool | maxpool
    in_shape: tuple[int, int, int]   # (H, W, C) of the largest input window (NHWC)
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, left, bottom, right (max)
    in_bits: int = 8
    out_bits: int = 8
    in2_bits: int = 8             # add: bits of the second input
    w_bits: int = 8               # weight bits (quant.qparams.weight_range); 8 for add/avgpool

    @property
    def out_hw(self) -> tuple[int, int]:
        h, w, _ = self.in_shape
        if self.op in ("dense", "add"):
            return (1, 1) if self.op == "dense" else (h, w)
        kh, kw = self.kernel
        t, l, b, r = self.padding
        return ((h + t + b - kh) // self.stride[0] + 1, (w + l + r - kw) // self.stride[1] + 1)

    @property
    def in_channels(self) -> int:
        return self.in_shape[2]

    @property
    def macs(self) -> int:
        oh, ow = self.out_hw
        kh, kw = self.kernel
        if self.op == "conv2d":
            return oh * ow * self.out_channels * kh * kw * self.in_channels
        if self.op == "depthwise":
            return oh * ow * self.out_channels * kh * kw
        if self.op == "dense":
            h, w, c = self.in_shape
            return self.out_channels * h * w * c
        return 0

    def describe(self) -> str:
        h, w, c = self.in_shape
        return (f"{self.op} {h}x{w}x{c}->{self.out_channels} k{self.kernel[0]}x{self.kernel[1]}"
                f" s{self.stride[0]} pad{list(self.padding)} bits {self.in_bits}->"
                f"{self.out_bits}" + (f" (+{self.in2_bits})" if self.op == "add" else "")
                + (f" w{self.w_bits}" if self.w_bits != 8 else ""))

    def validate(self) -> None:
        def bad(why):
            raise UnsupportedKernel(f"{self.describe()}: {why}")
        if self.op not in OPS:
            bad(f"unknown op; kernels exist for {', '.join(OPS)}")
        for name, b in (("input", self.in_bits), ("output", self.out_bits),
                        ("second input", self.in2_bits)):
            if b not in ACT_BITS:
                bad(f"{name} activation bits must be one of {ACT_BITS}")
        if self.w_bits not in WEIGHT_BITS:
            bad(f"weight bits must be one of {WEIGHT_BITS}")
        h, w, c = self.in_shape
        if min(h, w, c, self.out_channels) < 1:
            bad("empty tensor")
        if self.op in ("depthwise", "add", *POOL_OPS):
            if self.out_channels != c:
                bad("output channels must equal input channels (no channel multiplier)")
        if self.op in ("conv2d", "depthwise", *POOL_OPS):
            if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
                bad("kernel and stride must be ≥ 1 and padding ≥ 0")
            if max(self.padding[0], self.padding[2]) >= self.kernel[0] or \
                    max(self.padding[1], self.padding[3]) >= self.kernel[1]:
                bad("padding must be smaller than the kernel")
            oh, ow = self.out_hw
            if oh < 1 or ow < 1:
                bad("kernel larger than the padded input")


def lane_group(bits: int) -> int:
    """Channels in one 32-bit word of packed activations."""
    return 32 // bits


def kernel_taps(spec: "KernelSpec") -> tuple[int, int]:
    """(KH, KW) of the reduction window: the whole input for dense."""
    return spec.in_shape[:2] if spec.op == "dense" else spec.kernel


def gathers(spec: "KernelSpec") -> bool:
    """conv2d/dense with fewer channels than one word of activations: the DSP micro-kernel
    gathers each pixel's window value by value (im2col of one pixel) instead of reading
    words of the packed input."""
    return spec.op in ("conv2d", "dense") and spec.in_channels < lane_group(spec.in_bits)


def lane_order(spec: "KernelSpec") -> bool:
    """Whether the weights are stored in lane order (:func:`lane_pos`): for 4/2-bit inputs
    read a word at a time, i.e. unless the window is gathered."""
    return spec.in_bits < 8 and not gathers(spec)


def packs_weights(spec: "KernelSpec") -> bool:
    """conv2d/dense with ≤ 4-bit weights and activations read a word at a time: the weights
    are stored packed, two output channels per multiply lane (:mod:`.wpack`), when the
    reduction stays within the packed accumulator's exact range, except for shapes whose
    packed block TVM cannot tensorize (one weight word per channel pair, outputs of one
    byte), which would stay generated loops."""
    kh, kw = kernel_taps(spec)
    if not (spec.op in ("conv2d", "dense") and spec.w_bits in wpack.PACKED_W_BITS
            and spec.in_bits in wpack.PACKED_IN_BITS and not gathers(spec)):
        return False
    c, ib, wb = spec.in_channels, spec.in_bits, spec.w_bits
    return (spec.out_channels * spec.out_bits > 8
            and wpack.groups(c, ib) * wpack.words_per_group(ib, wb) > 1
            and wpack.check(spec.out_channels, kh * kw, c, ib, wb) is None)


def stores_narrow_weights(spec: "KernelSpec") -> bool:
    """conv2d/dense with ≤ 4-bit weights and 8-bit activations read a word at a time (whole
    weight words per tap): the weights are stored at their width (:mod:`.wnib`) and unpacked
    in registers (kernels in qmcu_ukernels_narrow_w.h). Not for the degenerate shapes whose
    weight index TVM simplifies differently from the description (outputs of one byte, one
    weight word per channel): their weights are a few bytes."""
    kh, kw = kernel_taps(spec)
    return (spec.op in ("conv2d", "dense") and spec.in_bits == 8 and not gathers(spec)
            and wnib.applies(spec.in_channels, spec.w_bits)
            and spec.out_channels * spec.out_bits > 8
            and wnib.row_words(kh * kw, spec.in_channels, spec.w_bits) > 1)


def weight_channels(spec: "KernelSpec") -> int:
    """Channel extent of the weight layout: C, or C rounded up to a lane group in lane order
    (the padding weights are zero)."""
    c, g = spec.in_channels, lane_group(spec.in_bits)
    return (c + g - 1) // g * g if lane_order(spec) else c


def lane_pos(ch, bits: int):
    """Position of channel `ch` in lane order.

    The DSP micro-kernels unpack one 32-bit word of activations (G = 32/bits channels) into
    16-bit lane pairs with one instruction per pair: pair m = (channel m, channel m + G/2)
    (8 bits: ``UXTB16``; 4/2 bits: ``(v >> m·bits) & mask``). In lane order the weights are
    stored so that ``SXTB16`` of each weight word yields the matching pairs: word q holds
    channels (2q, 2q+1, 2q+G/2, 2q+1+G/2) of its group. At 8 bits that is the identity.
    Works on ints, numpy arrays and TIR expressions."""
    if bits == 8:
        return ch
    g = lane_group(bits)
    h = g // 2
    m = ch % h
    return ch // g * g + m // 2 * 4 + m % 2 + ch % g // h * 2


def weight_pos(ch, spec: "KernelSpec"):
    """Storage position of channel `ch`'s weight along the weight layout's channel axis."""
    return lane_pos(ch, spec.in_bits) if lane_order(spec) else ch


def never_pads(spec: "KernelSpec") -> bool:
    """1×1 convolutions and dense layers have no border: the window covers the tile."""
    return spec.op == "dense" or (spec.op == "conv2d" and spec.kernel == (1, 1))


def unpack_value(X, h, w, c, bits):
    """Unsigned value of channel c of pixel (h, w) of a packed tensor, as int32."""
    if bits == 8:
        return X[h, w, c].astype("int32")
    per = 8 // bits
    byte = X[h, w, tirx.floordiv(c, per)].astype("int32")
    return tirx.bitwise_and(tirx.shift_right(byte, tirx.floormod(c, per) * bits),
                            (1 << bits) - 1)


_unpack = unpack_value


def requant(acc, bias, M, n, qp):
    """clamp(floor(((acc + bias)·M + 2^(n-1)) / 2^n) + zp_out, lo, hi) as int32."""
    a = (acc + bias).astype("int64") * M.astype("int64")
    n64 = n.astype("int64")
    one = tirx.const(1, "int64")
    r = tirx.shift_right(a + tirx.shift_left(one, n64 - one), n64)
    return _clamp64(r, qp)


def _clamp64(r, qp):
    # Clamp before narrowing: with a shift below 32 the requantized value can exceed int32.
    r = r + qp[QP_ZP_OUT].astype("int64")
    return tirx.min(tirx.max(r, qp[QP_LO].astype("int64")),
                    qp[QP_HI].astype("int64")).astype("int32")


def pack_expr(val, cb, c_total, bits):
    """Packed byte cb of a row of `val(channel)` values (channel < c_total)."""
    if bits == 8:
        return val(cb).astype("uint8")
    per = 8 // bits
    byte = None
    for l in range(per):
        ch = cb * per + l
        if c_total % per == 0:
            term = tirx.shift_left(val(ch), l * bits)
        else:   # the last byte is partial: clamp the index, zero the missing lanes
            term = tirx.Select(ch < c_total,
                               tirx.shift_left(val(tirx.min(ch, c_total - 1)), l * bits),
                               tirx.const(0, "int32"))
        byte = term if byte is None else tirx.bitwise_or(byte, term)
    return byte.astype("uint8")


@dataclass
class Compute:
    """The TE tensors and runtime arguments of one kernel, in ABI order."""
    spec: KernelSpec
    args: list
    stages: dict

    def prim_func(self) -> tirx.PrimFunc:
        return te.create_prim_func(self.args)


def _window_vars():
    return (te.var("in_h", "int32"), te.var("in_w", "int32"), te.var("pad_t", "int32"),
            te.var("pad_l", "int32"))


ZP_REPEAT = {8: 0x01, 4: 0x11, 2: 0x55}   # zero point in every lane of a packed byte


def _xpad(X, qp, spec, ph, pw, in_h, in_w, pad_t, pad_l, bits):
    cb = packed_channels(spec.in_channels, bits)
    if never_pads(spec):
        return te.compute((ph, pw, cb), lambda h, w, b: X[h - pad_t, w - pad_l, b],
                          name="xpad")
    zp_byte = (qp[QP_ZP_IN] * ZP_REPEAT[bits]).astype("uint8") if maxpool.pad_byte(spec) \
        is None else tirx.const(maxpool.pad_byte(spec), "uint8")

    def f(h, w, b):
        hi, wi = h - pad_t, w - pad_l
        inside = tirx.all(hi >= 0, hi < in_h, wi >= 0, wi < in_w)
        return tirx.if_then_else(inside, X[hi, wi, b], zp_byte)
    return te.compute((ph, pw, cb), f, name="xpad")


def _output(acc, spec, B, M, N, qp, oh, ow, exponent=None):
    """exponent(ch): packed weights scale channel ch's accumulator by 2^k (see wpack)."""
    oc = spec.out_channels
    cb = packed_channels(oc, spec.out_bits)

    def a(h, w, ch):
        return acc[h, w, ch] if exponent is None else \
            tirx.shift_left(acc[h, w, ch], exponent(ch))

    def f(h, w, j):
        return pack_expr(lambda ch: requant(a(h, w, ch), B[ch], M[ch], N[ch], qp), j, oc,
                         spec.out_bits)
    return te.compute((oh, ow, cb), f, name="y")


def make_compute(spec: KernelSpec) -> Compute:
    """TE definition of `spec`; argument order is the C ABI (see README.md)."""
    spec.validate()
    h, w, c = spec.in_shape
    oc = spec.out_channels
    in_h, in_w, pad_t, pad_l = _window_vars()
    X = te.placeholder((in_h, in_w, packed_channels(c, spec.in_bits)), "uint8", name="x")
    qp = te.placeholder((QP_LEN,), "int32", name="qp")
    B = te.placeholder((oc,), "int32", name="bias")
    M = te.placeholder((oc,), "int32", name="mult")
    N = te.placeholder((oc,), "int32", name="shift")
    if spec.op == "add":
        M = te.placeholder((2,), "int32", name="mult")
        N = te.placeholder((1,), "int32", name="shift")
        return _make_add(spec, X, qp, M, N, (in_h, in_w, pad_t, pad_l))
    if spec.op == "dense":
        kh, kw, sh, sw = h, w, 1, 1
    else:
        (kh, kw), (sh, sw) = spec.kernel, spec.stride
    oh, ow = spec.out_hw
    ph, pw = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    bits = spec.in_bits
    xpad = _xpad(X, qp, spec, ph, pw, in_h, in_w, pad_t, pad_l, bits)
    cw = weight_channels(spec)
    rkh = te.reduce_axis((0, kh), name="rkh")
    rkw = te.reduce_axis((0, kw), name="rkw")
    if packs_weights(spec) or stores_narrow_weights(spec):
        # sub-byte weights stored at their width: packed lanes (low-bit inputs) or narrow words
        store, args = ((wpack, (kh * kw, c, bits, spec.w_bits)) if packs_weights(spec)
                       else (wnib, (kh * kw, c, spec.w_bits)))
        W = te.placeholder((store.storage_bytes(oc, *args),), "int8", name="w")
        rc = te.reduce_axis((0, c), name="rc")
        acc = te.compute((oh, ow, oc), lambda i, j, o: te.sum(
            _unpack(xpad, i * sh + rkh, j * sw + rkw, rc, bits)
            * store.decode(W, o, rkh * kw + rkw, rc, *args), axis=[rkh, rkw, rc]), name="acc")
        y = _output(acc, spec, B, M, N, qp, oh, ow,
                    lambda ch: store.scale_exponent(W, ch, oc, *args))
        return Compute(spec, [X, W, B, M, N, qp, y, in_h, in_w, pad_t, pad_l],
                       {"xpad": xpad, "acc": acc, "y": y})
    if spec.op in ("conv2d", "dense"):
        W = te.placeholder((oc, kh, kw, cw), "int8", name="w")
        rc = te.reduce_axis((0, c), name="rc")
        acc = te.compute((oh, ow, oc), lambda i, j, o: te.sum(
            _unpack(xpad, i * sh + rkh, j * sw + rkw, rc, bits)
            * W[o, rkh, rkw, weight_pos(rc, spec)].astype("int32"), axis=[rkh, rkw, rc]),
            name="acc")
    elif spec.op == "depthwise":
        W = te.placeholder((kh, kw, cw), "int8", name="w")
        acc = te.compute((oh, ow, oc), lambda i, j, ch: te.sum(
            _unpack(xpad, i * sh + rkh, j * sw + rkw, ch, bits)
            * W[rkh, rkw, weight_pos(ch, spec)].astype("int32"), axis=[rkh, rkw]), name="acc")
    elif spec.op == "maxpool":  # weights unused (the ABI keeps the slot)
        W = te.placeholder((1,), "int8", name="w")
        acc = maxpool.window_max(xpad, spec, _unpack, oh, ow)
    else:  # avgpool: weights unused (the ABI keeps the slot)
        W = te.placeholder((1,), "int8", name="w")
        acc = te.compute((oh, ow, oc), lambda i, j, ch: te.sum(
            _unpack(xpad, i * sh + rkh, j * sw + rkw, ch, bits), axis=[rkh, rkw]), name="acc")
    y = _output(acc, spec, B, M, N, qp, oh, ow)
    return Compute(spec, [X, W, B, M, N, qp, y, in_h, in_w, pad_t, pad_l],
                   {"xpad": xpad, "acc": acc, "y": y})


def _make_add(spec, X, qp, M, N, window):
    """y = clamp(floor(((x1-z1)·M1 + (x2-z2)·M2 + 2^(n-1)) / 2^n) + zp_out): M = [M1, M2],
    n = [n]; the second input takes the weight slot of the ABI."""
    h, w, c = spec.in_shape
    X2 = te.placeholder((h, w, packed_channels(c, spec.in2_bits)), "uint8", name="w")
    B = te.placeholder((1,), "int32", name="bias")
    one = tirx.const(1, "int64")

    def val(i, j, ch):
        a = (_unpack(X, i, j, ch, spec.in_bits) - qp[QP_ZP_IN]).astype("int64") \
            * M[0].astype("int64")
        b = (_unpack(X2, i, j, ch, spec.in2_bits) - qp[QP_ZP_IN2]).astype("int64") \
            * M[1].astype("int64")
        n64 = N[0].astype("int64")
        return _clamp64(tirx.shift_right(a + b + tirx.shift_left(one, n64 - one), n64), qp)

    y = te.compute((h, w, packed_channels(c, spec.out_bits)),
                   lambda i, j, cb: pack_expr(lambda ch: val(i, j, ch), cb, c, spec.out_bits),
                   name="y")
    return Compute(spec, [X, X2, B, M, N, qp, y, *window], {"y": y})
