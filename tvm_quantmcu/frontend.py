"""torch → Relax (torch.export + from_exported_program, BatchNorm folded) → layer graph."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import torch

from . import models
from .graph import Graph, Layer
from .models.blocks import fold_batchnorm


class UnsupportedOpError(NotImplementedError):
    pass


def to_relax(model: torch.nn.Module, input_shape: tuple[int, ...], fold_bn: bool = True):
    """Export a torch module (eval mode) to a Relax IRModule with the weights as constants.

    input_shape: (C, H, W); batch 1. BatchNorm is folded into the convolutions first, so the
    Relax graph holds conv2d + bias add + clip only.
    """
    import tvm  # noqa: F401  (heavy import kept local)
    from tvm.relax.frontend.torch import from_exported_program


    model = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(model)
    x = torch.zeros((1, *input_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(model, (x,))
    return from_exported_program(ep, keep_params_as_input=False, unwrap_unit_return_tuple=True)


def build_vm(mod, target: str = "llvm"):
    """Compile a Relax module for the host and return a callable numpy → numpy."""
    import tvm
    from tvm import relax

    ex = tvm.compile(mod, target=tvm.target.Target({"kind": target}))
    vm = relax.VirtualMachine(ex, tvm.cpu())

    def run(x: np.ndarray) -> np.ndarray:
        return vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run


# ---------------------------------------------------------------------------------------------
# Relax → layer graph

def _const(expr) -> np.ndarray | None:
    from tvm.ir.expr import Constant
    if isinstance(expr, Constant) and hasattr(expr.value, "numpy"):
        return expr.value.numpy()
    return None


def _ints(arr) -> tuple[int, ...]:
    return tuple(int(v) for v in arr)


def torch_flatten_to_nhwc(w: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    """Dense weights (out, C·H·W) that read a map torch flattened in C, H, W order → the same
    weights for the layer graph's H, W, C flattening (its maps are NHWC)."""
    c, h, wd = chw
    return np.ascontiguousarray(
        w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1))


def from_relax(mod, func: str = "main") -> Graph:
    """Read the layer graph off a Relax module produced by :func:`to_relax`.

    Recognised: conv2d (+ bias add) (+ clip 0..6 / relu), residual add, mean over H,W or
    avg_pool2d, reshape/flatten, dense (permute_dims + matmul + bias add). Anything else raises
    UnsupportedOpError naming the op.
    """
    from tvm import relax

    f = mod[func]
    if len(f.params) != 1:
        raise UnsupportedOpError(f"{func} takes {len(f.params)} inputs; one image input expected")
    x = f.params[0]
    in_shape = _ints(x.ty.shape)
    if len(in_shape) != 4:
        raise UnsupportedOpError(f"input {x.name} has shape {in_shape}; NCHW expected")

    tensors: dict = {x: "input"}       # Relax var → graph tensor name
    consts: dict = {}                  # Relax var → numpy array (reshaped/transposed consts)
    flattened: dict = {}               # Relax var → (C, H, W) of the map it flattens
    layers: list[Layer] = []
    by_output: dict[str, Layer] = {}
    uses: dict = {}
    out_var = None

    bindings = [b for blk in f.body.blocks for b in blk.bindings]

    def count_uses(e):
        if isinstance(e, relax.Var):
            uses[e] = uses.get(e, 0) + 1
    for b in bindings:
        relax.analysis.post_order_visit(b.value, count_uses)

    def value_of(e):
        c = _const(e)
        if c is not None:
            return c
        return consts.get(e)

    for b in bindings:
        v, e = b.var, b.value
        if isinstance(e, relax.Var):
            if e in tensors:
                tensors[v] = tensors[e]
            elif e in consts:
                consts[v] = consts[e]
            out_var = v
            continue
        if not isinstance(e, relax.Call):
            raise UnsupportedOpError(f"binding {v.name}: {type(e).__name__} not supported")
        op = e.op.name if hasattr(e.op, "name") else str(e.op)
        args = list(e.args)
        name = f"l{len(layers)}"

        def new_layer(**kw) -> None:
            lay = Layer(name=name, output=name, **kw)
            layers.append(lay)
            by_output[lay.output] = lay
            tensors[v] = lay.output

        if op == "relax.nn.conv2d":
            a = e.attrs
            if a.data_layout != "NCHW" or a.kernel_layout != "OIHW":
                raise UnsupportedOpError(f"conv2d {v.name}: layout {a.data_layout}")
            w = value_of(args[1])
            if w is None or args[0] not in tensors:
                raise UnsupportedOpError(f"conv2d {v.name}: weight must be a constant")
            p = _ints(a.padding)
            new_layer(op="conv2d", inputs=[tensors[args[0]]], weight=w.astype(np.float32),
                      stride=_ints(a.strides), padding=(p[0], p[1], p[2], p[3]),
                      dilation=_ints(a.dilation), groups=int(a.groups))
        elif op == "relax.reshape":
            if args[0] in tensors:
                src_shape = _ints(args[0].ty.shape)
                dst_shape = _ints(v.ty.shape)
                if len(src_shape) == 4 and (len(dst_shape) != 2 or dst_shape[0] != src_shape[0]):
                    raise UnsupportedOpError(
                        f"reshape {v.name} {src_shape} → {dst_shape}: only flattening "
                        "a feature map to (N, C·H·W) is supported")
                tensors[v] = tensors[args[0]]
                if len(src_shape) == 4:
                    flattened[v] = src_shape[1:]
            else:
                c = value_of(args[0])
                if c is None:
                    raise UnsupportedOpError(f"reshape {v.name} of unknown value")
                consts[v] = c.reshape(-1)
        elif op == "relax.permute_dims":
            c = value_of(args[0])
            if c is None:
                raise UnsupportedOpError(f"permute_dims {v.name} of an activation")
            axes = None if e.attrs.axes is None else _ints(e.attrs.axes)
            consts[v] = np.transpose(c, axes)
        elif op == "relax.matmul":
            w = value_of(args[1])
            if w is None or args[0] not in tensors:
                raise UnsupportedOpError(f"matmul {v.name}: weight must be a constant")
            w = w.T
            if args[0] in flattened:
                w = torch_flatten_to_nhwc(w, flattened[args[0]])
            new_layer(op="dense", inputs=[tensors[args[0]]], weight=w.astype(np.float32))
        elif op == "relax.add":
            lhs, rhs = args
            if lhs in tensors and rhs in tensors:
                new_layer(op="add", inputs=[tensors[lhs], tensors[rhs]])
            else:
                act_side, c = (lhs, value_of(rhs)) if lhs in tensors else (rhs, value_of(lhs))
                prod = by_output.get(tensors.get(act_side))
                if c is None or prod is None or prod.op not in ("conv2d", "dense") \
                        or prod.bias is not None or prod.act or uses.get(act_side, 0) != 1:
                    raise UnsupportedOpError(f"add {v.name}: only a bias after conv/dense")
                prod.bias = c.reshape(-1).astype(np.float32)
                tensors[v] = prod.output
        elif op in ("relax.clip", "relax.nn.relu", "relax.nn.relu6"):
            src = args[0]
            prod = by_output.get(tensors.get(src))
            if op == "relax.clip":
                lo, hi = float(args[1].value), float(args[2].value)
                act = "relu6" if (lo, hi) == (0.0, 6.0) else "relu" if lo == 0 and hi > 1e30 \
                    else None
                if act is None:
                    raise UnsupportedOpError(f"clip {v.name} to [{lo}, {hi}]")
            else:
                act = "relu6" if op.endswith("relu6") else "relu"
            if prod is None or prod.act or uses.get(src, 0) != 1:
                raise UnsupportedOpError(f"{op} {v.name}: activation must follow one layer")
            prod.act = act
            tensors[v] = prod.output
        elif op == "relax.mean":
            axes = sorted(int(a) % 4 for a in e.attrs.axis)
            if axes != [2, 3]:
                raise UnsupportedOpError(f"mean {v.name} over axes {axes}")
            _, _, h, w = _ints(args[0].ty.shape)
            new_layer(op="avgpool", inputs=[tensors[args[0]]], kernel=(h, w), stride=(h, w))
        elif op == "relax.nn.avg_pool2d":
            a = e.attrs
            p = _ints(a.padding)
            if a.ceil_mode or not a.count_include_pad and any(p):
                raise UnsupportedOpError(f"avg_pool2d {v.name}: ceil_mode/exclude-pad")
            new_layer(op="avgpool", inputs=[tensors[args[0]]], kernel=_ints(a.pool_size),
                      stride=_ints(a.strides), padding=(p[0], p[1], p[2], p[3]))
        elif op == "relax.nn.adaptive_avg_pool2d":
            _, _, h, w = _ints(args[0].ty.shape)
            if _ints(e.attrs.output_size) != (1, 1):
                raise UnsupportedOpError(f"adaptive_avg_pool2d {v.name}: only 1×1 output")
            new_layer(op="avgpool", inputs=[tensors[args[0]]], kernel=(h, w), stride=(h, w))
        else:
            raise UnsupportedOpError(
                f"op {op} (binding {v.name}) is not supported by the layer graph; "
                "supported: conv2d, add, clip/relu/relu6, mean/avg_pool2d, matmul (dense)")
        out_var = v

    out = f.body.body
    if isinstance(out, relax.Var) and out in tensors:
        out_tensor = tensors[out]
    elif out_var is not None and out_var in tensors:
        out_tensor = tensors[out_var]
    else:
        raise UnsupportedOpError("the function's result is not a layer output")
    return Graph("input", tuple(in_shape[1:]), layers, out_tensor)


def import_model(model: torch.nn.Module, input_shape: tuple[int, int, int]):
    """(Relax IRModule, layer graph) of a torch model."""
    mod = to_relax(model, input_shape)
    return mod, from_relax(mod)


def load_zoo(name: str, checkpoint: str | None = None):
    """(torch model, Relax module, layer graph) of a registered model."""
    mi = models.info(name)
    model = models.get(name, checkpoint=checkpoint)
    mod, graph = import_model(model, mi.input_shape)
    return model, mod, graph
