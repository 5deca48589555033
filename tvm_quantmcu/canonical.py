"""The layer graph as a canonical Relax module: the one the Relax passes transform.

torch's own translation (``from_exported_program``) spells the same network in many ways:
BatchNorm as an op, explicit pads, input normalisation as arithmetic, max pooling with its
unused indices. The frontend reads all of them into the layer graph; this module writes the
graph back as Relax in one spelling per layer — conv2d (padding folded in) + bias add + clip,
matmul after a flattening reshape (torch's C, H, W order), avg/max pooling, add, concat — so
that every pass sees exactly the layers of the graph. An input offset (what is left of an
input normalisation) is one ``subtract`` of the image by a constant before the first
convolution, which ``frontend.from_relax`` reads back as the offset.
"""
from __future__ import annotations

import numpy as np

from .graph import Graph, Layer


def _const(a: np.ndarray):
    from tvm import relax
    return relax.const(np.ascontiguousarray(a, np.float32))


def _chw_weights(w_hwc: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Dense weights in the layer graph's H, W, C order → torch's C, H, W order."""
    c, h, wd = chw
    return w_hwc.reshape(w_hwc.shape[0], h, wd, c).transpose(0, 3, 1, 2).reshape(
        w_hwc.shape[0], -1)


def _layer(bb, l: Layer, xs: list, g: Graph):
    from tvm import relax
    op = relax.op
    if l.op == "conv2d":
        y = bb.emit(op.nn.conv2d(xs[0], _const(l.weight), l.stride, l.padding, l.dilation,
                                 l.groups, "NCHW", "OIHW", "NCHW", "float32"))
        if l.bias is not None:
            y = bb.emit(op.add(y, _const(l.bias.reshape(1, -1, 1, 1))))
    elif l.op == "dense":
        chw = g.shapes[l.inputs[0]]
        flat = bb.emit(op.reshape(xs[0], (1, int(np.prod(chw)))))
        w = _chw_weights(l.weight, chw)
        y = bb.emit(op.matmul(flat, bb.emit(op.permute_dims(_const(w), [1, 0])),
                              out_dtype="float32"))
        if l.bias is not None:
            y = bb.emit(op.add(y, _const(l.bias.reshape(1, -1))))
    elif l.op == "add":
        y = bb.emit(op.add(xs[0], xs[1]))
    elif l.op == "avgpool":
        y = bb.emit(op.nn.avg_pool2d(xs[0], l.kernel, l.stride, l.padding,
                                     count_include_pad=True))
    elif l.op == "maxpool":
        y = bb.emit(op.nn.max_pool2d(xs[0], l.kernel, l.stride, l.padding))
    elif l.op == "concat":
        y = bb.emit(op.concat(xs, axis=1))
    else:
        raise ValueError(f"{l.name}: op {l.op} has no Relax spelling")
    if l.act == "relu":
        y = bb.emit(op.nn.relu(y))
    elif l.act == "relu6":
        y = bb.emit(op.clip(y, 0.0, 6.0))
    return y


def graph_to_relax(g: Graph, func: str = "main"):
    """The canonical Relax IRModule of a layer graph; ``main`` takes the N=1 NCHW image in
    [0, 1] and returns the output map (NCHW) or (1, C) when it is a vector."""
    import tvm
    from tvm import relax

    x = relax.Var("x", relax.TensorType((1, *g.input_shape), "float32"))
    bb = relax.BlockBuilder()
    with bb.function(func, [x]):
        with bb.dataflow():
            env = {g.input: x}
            if g.input_offset is not None:
                off = np.asarray(g.input_offset, np.float32).reshape(1, -1, 1, 1)
                env[g.input] = bb.emit(relax.op.subtract(x, _const(off)))
            for l in g.layers:
                env[l.output] = _layer(bb, l, [env[t] for t in l.inputs], g)
            out = env[g.output]
            c, h, w = g.shapes[g.output]
            if (h, w) == (1, 1) and len(out.ty.shape) == 4:   # a global pool's (1, C)
                out = bb.emit(relax.op.reshape(out, (1, c)))
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    mod = bb.get()
    return tvm.IRModule({func: mod[func]})
