"""The layer graph: the CNN as a list of fused layers, read off the Relax module.

Every stage after import (calibration, patch planning, search, the integer reference, code
generation) works on this one small IR. A layer is a fused op: conv2d (incl. depthwise and
pointwise) or dense with bias and optional ReLU/ReLU6, residual add, average or max pooling,
or channel concatenation. Tensors are named; shapes are (C, H, W) without the batch axis.
Maps are NHWC in memory, so a dense layer reads a flattened map in H, W, C order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ACTS = (None, "relu", "relu6")


@dataclass
class Layer:
    name: str
    op: str                      # conv2d | dense | add | avgpool | maxpool | concat
    inputs: list[str]
    output: str
    weight: np.ndarray | None = None   # conv: OIHW; dense: (out, in)
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kernel: tuple[int, int] = (1, 1)   # pooling window (conv: from the weight)
    act: str | None = None

    @property
    def is_depthwise(self) -> bool:
        return self.op == "conv2d" and self.groups > 1 and self.groups == self.weight.shape[0] \
            and self.weight.shape[1] == 1

    @property
    def kind(self) -> str:
        """conv / depthwise / pointwise / dense / add / avgpool / maxpool / concat."""
        if self.op != "conv2d":
            return self.op
        if self.is_depthwise:
            return "depthwise"
        kh, kw = self.weight.shape[2:]
        if (kh, kw) == (1, 1) and self.groups == 1 and self.stride == (1, 1):
            return "pointwise"
        return "conv"

    def ksize(self) -> tuple[int, int]:
        if self.op == "conv2d":
            return int(self.weight.shape[2]), int(self.weight.shape[3])
        return self.kernel


@dataclass
class Graph:
    input: str
    input_shape: tuple[int, int, int]
    layers: list[Layer]
    output: str
    shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # Per input channel, subtracted from the [0, 1] image before the first layer: what is left
    # of an input normalisation in `forward` once its scale is folded into the first layer.
    input_offset: np.ndarray | None = None

    def __post_init__(self):
        if not self.shapes:
            self.infer_shapes()

    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(f"no layer named {name!r}")

    def producer(self, tensor: str) -> Layer | None:
        for l in self.layers:
            if l.output == tensor:
                return l
        return None

    def consumers(self, tensor: str) -> list[Layer]:
        return [l for l in self.layers if tensor in l.inputs]

    def infer_shapes(self) -> None:
        self.shapes = {self.input: tuple(self.input_shape)}
        for l in self.layers:
            self.shapes[l.output] = out_shape(l, [self.shapes[i] for i in l.inputs])

    def macs(self, layer: Layer) -> int:
        """Multiply-accumulates of a layer over its whole output."""
        c, h, w = self.shapes[layer.output]
        if layer.op == "conv2d":
            o, ipg, kh, kw = layer.weight.shape
            return c * h * w * ipg * kh * kw
        if layer.op == "dense":
            return int(layer.weight.size)
        return 0


def out_shape(l: Layer, in_shapes: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    c, h, w = in_shapes[0]
    if l.op == "add":
        if in_shapes[0] != in_shapes[1]:
            raise ValueError(f"{l.name}: add of shapes {in_shapes[0]} and {in_shapes[1]}")
        return in_shapes[0]
    if l.op == "dense":
        return (int(l.weight.shape[0]), 1, 1)
    if l.op == "concat":
        if len({s[1:] for s in in_shapes}) != 1:
            raise ValueError(f"{l.name}: concat of maps of different sizes {in_shapes}")
        return (sum(s[0] for s in in_shapes), h, w)
    kh, kw = l.ksize()
    t, le, b, r = l.padding
    dh, dw = l.dilation if l.op == "conv2d" else (1, 1)
    oh = (h + t + b - dh * (kh - 1) - 1) // l.stride[0] + 1
    ow = (w + le + r - dw * (kw - 1) - 1) // l.stride[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"{l.name}: output {oh}×{ow} from input {h}×{w}")
    oc = int(l.weight.shape[0]) if l.op == "conv2d" else c
    return (oc, oh, ow)


# ---------------------------------------------------------------------------------------------
# Float execution in NHWC numpy (calibration and equivalence checks).

def conv2d_nhwc(x: np.ndarray, w_oihw: np.ndarray, stride, padding, dilation, groups,
                dtype=np.float32) -> np.ndarray:
    """Zero-padded NHWC convolution by im2col + matmul. x: N×H×W×C. Exact for integers in
    float64 as long as sums stay below 2**53."""
    n, h, wd, c = x.shape
    o, ipg, kh, kw = w_oihw.shape
    t, le, b, r = padding
    sh, sw = stride
    dh, dw = dilation
    xp = np.pad(x.astype(dtype, copy=False), ((0, 0), (t, b), (le, r), (0, 0)))
    oh = (h + t + b - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + le + r - dw * (kw - 1) - 1) // sw + 1
    w = w_oihw.astype(dtype, copy=False)
    if groups == c and ipg == 1:  # depthwise: per-tap multiply-accumulate
        mult = o // c
        out = np.zeros((n, oh, ow, o), dtype)
        wt = w.reshape(c, mult, kh, kw)
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw, :]
                if mult != 1:
                    patch = np.repeat(patch, mult, axis=3)
                out += patch * wt[:, :, i, j].reshape(-1)
        return out
    opg = o // groups
    outs = []
    for g in range(groups):
        xg = xp[..., g * ipg:(g + 1) * ipg]
        cols = np.empty((n, oh, ow, kh, kw, ipg), dtype)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, i, j, :] = xg[:, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                                            j * dw:j * dw + sw * (ow - 1) + 1:sw, :]
        wg = w[g * opg:(g + 1) * opg].transpose(2, 3, 1, 0).reshape(kh * kw * ipg, opg)
        outs.append(cols.reshape(n * oh * ow, -1) @ wg)
    return np.concatenate(outs, axis=1).reshape(n, oh, ow, o)


def avgpool_sum_nhwc(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """Window sums (zero padding) of an average pool; divide by the window size outside."""
    c = x.shape[3]
    w = np.ones((c, 1, kernel[0], kernel[1]), dtype=x.dtype)
    return conv2d_nhwc(x, w, stride, padding, (1, 1), c, dtype=x.dtype)


def maxpool_nhwc(x: np.ndarray, kernel, stride, padding, pad_value) -> np.ndarray:
    """Window maxima; the padding holds `pad_value` (below every value: torch pads with -inf)."""
    n, h, wd, c = x.shape
    t, le, b, r = padding
    xp = np.pad(x, ((0, 0), (t, b), (le, r), (0, 0)), constant_values=pad_value)
    oh = (h + t + b - kernel[0]) // stride[0] + 1
    ow = (wd + le + r - kernel[1]) // stride[1] + 1
    out = None
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            v = xp[:, i:i + stride[0] * (oh - 1) + 1:stride[0],
                   j:j + stride[1] * (ow - 1) + 1:stride[1], :]
            out = v if out is None else np.maximum(out, v)
    return out


def apply_act(y: np.ndarray, act: str | None) -> np.ndarray:
    if act == "relu":
        return np.maximum(y, 0)
    if act == "relu6":
        return np.clip(y, 0, 6)
    return y


def run_layer_float(l: Layer, xs: list[np.ndarray]) -> np.ndarray:
    if l.op == "conv2d":
        y = conv2d_nhwc(xs[0], l.weight, l.stride, l.padding, l.dilation, l.groups)
        if l.bias is not None:
            y = y + l.bias.astype(np.float32)
    elif l.op == "dense":
        y = (xs[0].reshape(xs[0].shape[0], -1) @ l.weight.T.astype(np.float32))
        if l.bias is not None:
            y = y + l.bias
        y = y.reshape(y.shape[0], 1, 1, -1)
    elif l.op == "add":
        y = xs[0] + xs[1]
    elif l.op == "avgpool":
        y = avgpool_sum_nhwc(xs[0], l.kernel, l.stride, l.padding) / float(np.prod(l.kernel))
    elif l.op == "maxpool":
        y = maxpool_nhwc(xs[0], l.kernel, l.stride, l.padding, -np.inf)
    elif l.op == "concat":
        y = np.concatenate(xs, axis=3)
    else:
        raise NotImplementedError(f"{l.name}: op {l.op}")
    return apply_act(y, l.act).astype(np.float32)


def input_nhwc(g: Graph, x_nchw: np.ndarray) -> np.ndarray:
    """The graph's float input: the NHWC image less the input offset."""
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)).astype(np.float32)
    return x if g.input_offset is None else x - g.input_offset.astype(np.float32)


def run_float(g: Graph, x_nchw: np.ndarray, keep: bool = False):
    """Run the float graph on N×C×H×W input. Returns the N×classes output, or with keep=True
    the dict of every tensor (NHWC)."""
    env = {g.input: input_nhwc(g, x_nchw)}
    uses = {t: sum(t in l.inputs for l in g.layers) for t in env}
    for l in g.layers:
        env[l.output] = run_layer_float(l, [env[i] for i in l.inputs])
        if not keep:  # free dead tensors to bound memory on large batches
            for i in l.inputs:
                uses.setdefault(i, sum(i in m.inputs for m in g.layers))
                uses[i] -= 1
                if uses[i] == 0 and i != g.output:
                    del env[i]
    if keep:
        return env
    return env[g.output].reshape(x_nchw.shape[0], -1)
