"""The integer numpy reference: the golden model of the integer semantics.

Tensors are NHWC arrays of unsigned quantized values (unpacked; see packing.py for the ABI).
Every layer computes in int32/int64 exactly; convolutions run as float64 matmuls, which are
exact for these magnitudes (|sum| < 2**53), and are converted back to int64.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..graph import Graph, Layer, avgpool_sum_nhwc, conv2d_nhwc, maxpool_nhwc
from .fixedpoint import quantize_multiplier, quantize_multipliers, requantize, \
    round_shift, shared_shift_multipliers
from .qparams import ActQuant, quantize_weights

INPUT_QUANT = ActQuant.from_range(0.0, 1.0, 8)   # images in [0, 1] → raw 8-bit pixels


# ---------------------------------------------------------------------------------------------
# Integer ops (NHWC, unpacked values). Padding contributes real zero, i.e. the zero point.

def _exact_float(x_centered: np.ndarray, w: np.ndarray, taps: int):
    """The narrowest float type whose sums of `taps` products stay exact integers."""
    bound = taps * float(np.abs(x_centered).max(initial=0)) * float(np.abs(w).max(initial=0))
    return np.float32 if bound < 2 ** 24 else np.float64


def conv2d_int(x: np.ndarray, zp_in: int, w: np.ndarray, bias: np.ndarray, M, n, zp_out: int,
               lo: int, hi: int, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
               groups: int = 1) -> np.ndarray:
    xc = np.asarray(x, np.int32) - np.int32(zp_in)
    dt = _exact_float(xc, w, int(np.prod(w.shape[1:])))
    acc = conv2d_nhwc(xc.astype(dt), w, stride, padding, dilation, groups, dtype=dt)
    acc = np.rint(acc).astype(np.int64) + np.asarray(bias, np.int64)
    return np.clip(requantize(acc, M, n) + zp_out, lo, hi).astype(np.int32)


def dense_int(x: np.ndarray, zp_in: int, w: np.ndarray, bias: np.ndarray, M, n, zp_out: int,
              lo: int, hi: int) -> np.ndarray:
    flat = np.asarray(x, np.float64).reshape(x.shape[0], -1) - zp_in
    acc = np.rint(flat @ w.T.astype(np.float64)).astype(np.int64) + np.asarray(bias, np.int64)
    y = np.clip(requantize(acc, M, n) + zp_out, lo, hi).astype(np.int32)
    return y.reshape(x.shape[0], 1, 1, -1)


def add_int(x1, zp1: int, x2, zp2: int, M1: int, M2: int, n: int, zp_out: int,
            lo: int, hi: int) -> np.ndarray:
    v = (np.asarray(x1, np.int64) - zp1) * M1 + (np.asarray(x2, np.int64) - zp2) * M2
    return np.clip(round_shift(v, n) + zp_out, lo, hi).astype(np.int32)


def avgpool_int(x, zp_in: int, kernel, stride, padding, M: int, n: int, zp_out: int,
                lo: int, hi: int) -> np.ndarray:
    acc = avgpool_sum_nhwc(np.asarray(x, np.float64) - zp_in, kernel, stride, padding)
    acc = np.rint(acc).astype(np.int64)
    return np.clip(requantize(acc, M, n) + zp_out, lo, hi).astype(np.int32)


def maxpool_int(x, zp_in: int, kernel, stride, padding, M: int, n: int, zp_out: int,
                lo: int, hi: int) -> np.ndarray:
    """Window maximum, requantized like an average pool of one tap (M·2^-n = s_in / s_out).
    The padding holds 0, the smallest value: torch's -inf, since every window holds at least
    one real value. Requantization is monotone, so this is the maximum of the requantized
    values too."""
    m = maxpool_nhwc(np.asarray(x, np.int64), kernel, stride, padding, 0) - zp_in
    return np.clip(requantize(m, M, n) + zp_out, lo, hi).astype(np.int32)


def concat_int(xs, in_qs: list[ActQuant], out_q: ActQuant) -> np.ndarray:
    """Channel concatenation, each input re-expressed in the output quantization."""
    return np.concatenate([requant_int(x, q, out_q) for x, q in zip(xs, in_qs)], axis=3)


# ---------------------------------------------------------------------------------------------
# Quantized layer graph

@dataclass
class QLayer:
    layer: Layer
    in_q: list[ActQuant]
    out_q: ActQuant
    w_bits: int = 8
    w: np.ndarray | None = None          # int8 (values within the weight bits)
    w_scale: np.ndarray | None = None
    bias: np.ndarray | None = None       # int32
    M: np.ndarray | None = None          # per output channel (conv/dense) or scalar
    n: np.ndarray | None = None
    M_add: tuple[int, int] | None = None  # add: (M1, M2) sharing n
    clamp: tuple[int, int] = (0, 255)

    def run(self, xs: list[np.ndarray], **geom) -> np.ndarray:
        """Run on unpacked NHWC inputs. geom overrides padding (patch execution)."""
        l = self.layer
        lo, hi = self.clamp
        zo = self.out_q.zero_point
        if l.op == "conv2d":
            return conv2d_int(xs[0], self.in_q[0].zero_point, self.w, self.bias, self.M,
                              self.n, zo, lo, hi, l.stride, geom.get("padding", l.padding),
                              l.dilation, l.groups)
        if l.op == "dense":
            return dense_int(xs[0], self.in_q[0].zero_point, self.w, self.bias, self.M, self.n,
                             zo, lo, hi)
        if l.op == "add":
            return add_int(xs[0], self.in_q[0].zero_point, xs[1], self.in_q[1].zero_point,
                           self.M_add[0], self.M_add[1], int(self.n), zo, lo, hi)
        if l.op in ("avgpool", "maxpool"):
            pool = avgpool_int if l.op == "avgpool" else maxpool_int
            return pool(xs[0], self.in_q[0].zero_point, l.kernel, l.stride,
                        geom.get("padding", l.padding), int(self.M), int(self.n), zo, lo, hi)
        if l.op == "concat":
            return np.clip(concat_int(xs, self.in_q, self.out_q), lo, hi)
        raise NotImplementedError(f"{l.name}: op {l.op}")


@dataclass
class QGraph:
    graph: Graph
    acts: dict[str, ActQuant]
    layers: list[QLayer] = field(default_factory=list)

    def qlayer(self, name: str) -> QLayer:
        for q in self.layers:
            if q.layer.name == name:
                return q
        raise KeyError(name)


def quantize_layer(l: Layer, in_q: list[ActQuant], out_q: ActQuant, w_bits: int = 8) -> QLayer:
    q = QLayer(l, in_q, out_q, w_bits=w_bits, clamp=out_q.clamp_bounds(l.act))
    if l.op in ("conv2d", "dense"):
        q.w, q.w_scale = quantize_weights(l.weight, w_bits)
        s_acc = in_q[0].scale * q.w_scale
        bias = l.bias if l.bias is not None else np.zeros(l.weight.shape[0])
        q.bias = np.clip(np.floor(bias / s_acc + 0.5), -2**31, 2**31 - 1).astype(np.int64)
        q.M, q.n = quantize_multipliers(s_acc / out_q.scale)
    elif l.op == "add":
        (M1, M2), n = shared_shift_multipliers([in_q[0].scale / out_q.scale,
                                                in_q[1].scale / out_q.scale])
        q.M_add, q.n = (M1, M2), np.int64(n)
    elif l.op == "avgpool":
        M, n = quantize_multiplier(in_q[0].scale / (out_q.scale * float(np.prod(l.kernel))))
        q.M, q.n = np.int64(M), np.int64(n)
    elif l.op == "maxpool":
        M, n = quantize_multiplier(in_q[0].scale / out_q.scale)
        q.M, q.n = np.int64(M), np.int64(n)
    return q


def quantize_graph(graph: Graph, ranges: dict[str, tuple[float, float]],
                   bits: dict[str, int] | int = 8, w_bits: dict[str, int] | int = 8) -> QGraph:
    """Quantize every layer. ranges: float (lo, hi) per tensor; bits: per tensor (or one
    width for all); w_bits: per layer name (or one for all). The input is raw 8-bit pixels."""
    def tbits(t):
        return bits if isinstance(bits, int) else bits.get(t, 8)

    acts = {graph.input: input_quant(graph)}
    for l in graph.layers:
        lo, hi = ranges[l.output]
        acts[l.output] = ActQuant.from_range(lo, hi, tbits(l.output))
    qg = QGraph(graph, acts)
    for l in graph.layers:
        wb = w_bits if isinstance(w_bits, int) else w_bits.get(l.name, 8)
        if graph.input in l.inputs and graph.input_offset is not None:
            l = _offset_folded(l, graph.input_offset, acts[graph.input])
        qg.layers.append(quantize_layer(l, [acts[i] for i in l.inputs], acts[l.output], wb))
    return qg


def input_quant(graph: Graph) -> ActQuant:
    """How the layers read the raw 8-bit pixels: real = (q - zp)/255 = image - input offset,
    with zp the offset (its mean over channels) in pixel steps, so that the convolutions'
    zero-point padding is the normalised zero."""
    if graph.input_offset is None:
        return INPUT_QUANT
    zp = int(np.clip(np.floor(float(np.mean(graph.input_offset)) / INPUT_QUANT.scale + 0.5),
                     0, INPUT_QUANT.qmax))
    return ActQuant(INPUT_QUANT.scale, zp, 8)


def _offset_folded(l: Layer, offset: np.ndarray, in_q: ActQuant) -> Layer:
    """The first layer with the part of the input offset that the input zero point does not
    carry (per channel: zp·scale − offset) folded into its bias."""
    import dataclasses
    delta = in_q.zero_point * in_q.scale - np.asarray(offset, np.float64).reshape(-1)
    if not np.any(delta):
        return l
    if l.op != "conv2d" or l.groups != 1:
        raise ValueError(f"{l.name}: a per-channel input offset needs a convolution first")
    extra = (l.weight.astype(np.float64) * delta[None, :, None, None]).sum(axis=(1, 2, 3))
    bias = (np.zeros(l.weight.shape[0]) if l.bias is None else l.bias) + extra
    return dataclasses.replace(l, bias=bias.astype(np.float32))


def quantize_input(x_nchw: np.ndarray) -> np.ndarray:
    """Float images N×C×H×W in [0,1] → NHWC uint8 values (what the device receives)."""
    return INPUT_QUANT.quantize(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)))


def run_int(qg: QGraph, x_q: np.ndarray, keep: bool = False):
    """Integer inference on NHWC quantized input values. Returns the quantized output
    (N×classes) or, with keep=True, every tensor."""
    env = {qg.graph.input: np.asarray(x_q, np.int32)}
    for q in qg.layers:
        env[q.layer.output] = q.run([env[i] for i in q.layer.inputs])
    if keep:
        return env
    out = env[qg.graph.output]
    return out.reshape(out.shape[0], -1)


def requant_int(q: np.ndarray, src: ActQuant, dst: ActQuant) -> np.ndarray:
    """Re-express a quantized tensor in another quantization (e.g. the 8-bit VDPC
    classification map → the low-bit branch's width and range), with the same rounding."""
    if src == dst:
        return np.asarray(q, np.int32)
    M, n = quantize_multiplier(src.scale / dst.scale)
    y = requantize(np.asarray(q, np.int64) - src.zero_point, M, n) + dst.zero_point
    return np.clip(y, 0, dst.qmax).astype(np.int32)
