"""torch → Relax (torch.export + from_exported_program, BatchNorm folded) → layer graph."""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import numpy as np

from .canonical import graph_to_relax
from .graph import Graph, Layer
from .import_check import ImportCheckError, check_graph, check_supported  # noqa: F401


class UnsupportedOpError(NotImplementedError):
    pass


def export_relax(model: torch.nn.Module, input_shape: tuple[int, ...], fold_bn: bool = True):
    """torch's own translation of a module (eval mode): ``torch.export`` +
    ``from_exported_program``, weights as constants. input_shape: (C, H, W); batch 1.
    BatchNorm right after a conv in an ``nn.Sequential`` is folded first (the rest is folded
    by the layer graph reader). Unsupported torch ops raise UnsupportedOpError naming the
    torch module."""
    import tvm  # noqa: F401  (heavy import kept local)
    import torch  # torch only where a torch model is imported: from_relax needs none
    from tvm.relax.frontend.torch import from_exported_program

    from .models.blocks import fold_batchnorm

    model = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(model)
    x = torch.zeros((1, *input_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(model, (x,))
    check_supported(ep, UnsupportedOpError, SUPPORTED)
    return from_exported_program(ep, keep_params_as_input=False, unwrap_unit_return_tuple=True)


def to_relax(model: torch.nn.Module, input_shape: tuple[int, ...], check: bool = True):
    """The canonical Relax IRModule of a torch module (see :mod:`.canonical`): torch's
    translation read into the layer graph (BatchNorm, pads, input normalisation, dropout
    folded), checked against torch on a few random inputs (ImportCheckError names the first
    diverging layer), and written back in one spelling per layer."""
    torch_mod = export_relax(model, input_shape)
    graph = from_relax(torch_mod)
    if check:
        check_graph(model, graph, input_shape, lambda x: relax_layer_values(torch_mod, x))
    return graph_to_relax(graph)


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


SUPPORTED = ("conv2d (+ bias, BatchNorm, ReLU/ReLU6/Hardtanh(0, 6)), linear after flatten, "
             "residual add, channel concat, avg/max pooling, global average pooling, "
             "zero padding before a conv/avg pool, input normalisation by constants before "
             "the first conv, dropout/identity")


@dataclass
class _Affine:
    """a·image + b per input channel: an input normalisation not yet folded."""
    a: np.ndarray
    b: np.ndarray


@dataclass
class _Padded:
    """A zero-padded value (top, left, bottom, right) waiting for its conv / avg pool."""
    src: object
    pad: tuple[int, int, int, int]


class _Reader:
    """Walks the bindings of one Relax function and builds the layer graph.

    Values are tracked per Relax var: a graph tensor (its name), a constant, a pending input
    normalisation, a pending zero pad, a tuple, or nothing the layers may read (the unused
    indices of max pooling)."""

    def __init__(self, f, fail):
        from tvm import relax
        self.relax, self.fail = relax, fail
        self.values: dict = {}
        self.layers: list[Layer] = []
        self.by_output: dict[str, Layer] = {}
        self.uses: dict = {}
        self.input_offset = None
        self.layer_var: dict[str, object] = {}       # layer name → var of its final value

        def count_uses(e):
            if isinstance(e, relax.Var):
                self.uses[e] = self.uses.get(e, 0) + 1
        self.bindings = [b for blk in f.body.blocks for b in blk.bindings]
        for b in self.bindings:
            relax.analysis.post_order_visit(b.value, count_uses)

    # ---- values
    def value(self, e):
        c = _const(e)
        if c is not None:
            return c
        if isinstance(e, self.relax.Var):
            return self.values.get(e)
        if hasattr(e, "value"):              # a PrimValue (the bounds of a clip)
            return np.asarray(float(e.value))
        return None

    def tensor(self, e, v, what: str) -> str:
        val = self.value(e)
        if isinstance(val, str):
            return val
        if isinstance(val, _Affine):
            self.fail(v, f"{what} reads the normalised input; only a convolution may")
        if isinstance(val, _Padded):
            self.fail(v, f"{what} reads a zero-padded map; only a convolution or an average "
                         "pool may")
        self.fail(v, f"{what} reads a value that is not a feature map")

    def producer(self, e) -> Layer | None:
        val = self.value(e)
        return self.by_output.get(val) if isinstance(val, str) else None

    def new_layer(self, v, **kw) -> Layer:
        name = f"l{len(self.layers)}"
        lay = Layer(name=name, output=name, **kw)
        self.layers.append(lay)
        self.by_output[name] = lay
        self.values[v] = name
        self.layer_var[name] = v
        return lay

    def extend(self, v, lay: Layer) -> None:
        """v is `lay`'s output with a fused step (bias, BatchNorm, activation) applied."""
        self.values[v] = lay.output
        self.layer_var[lay.name] = v

    def fusable(self, e, v, what: str, ops=("conv2d", "dense")) -> Layer:
        lay = self.producer(e)
        if lay is None or lay.op not in ops or lay.act or self.uses.get(e, 0) != 1:
            self.fail(v, f"{what} must directly follow a {' or '.join(ops)} layer that "
                         "nothing else reads")
        return lay

    # ---- ops
    def read(self, v, e, op: str, args: list) -> None:
        a = e.attrs
        if op == "relax.nn.conv2d":
            self.conv2d(v, e, args)
        elif op == "relax.reshape":
            src = self.value(args[0])
            if isinstance(src, str):
                src_shape, dst_shape = _ints(args[0].ty.shape), _ints(v.ty.shape)
                if len(dst_shape) != 2 or dst_shape[0] != src_shape[0]:
                    self.fail(v, f"reshape {src_shape} → {dst_shape}: only flattening a "
                                 "feature map to (N, C·H·W) is supported")
                self.values[v] = src
                self.flattened[v] = src_shape[1:]
            elif isinstance(src, np.ndarray):
                self.values[v] = src.reshape(_ints(v.ty.shape))
            else:
                self.fail(v, "reshape of an unsupported value")
        elif op == "relax.permute_dims":
            c = self.value(args[0])
            if not isinstance(c, np.ndarray):
                self.fail(v, "transposing a feature map is not supported")
            self.values[v] = np.transpose(c, None if a.axes is None else _ints(a.axes))
        elif op == "relax.matmul":
            w = self.value(args[1])
            if not isinstance(w, np.ndarray):
                self.fail(v, "the weight of a matmul must be a constant")
            x = self.tensor(args[0], v, "linear")
            if len(args[0].ty.shape) != 2:
                self.fail(v, "a linear layer must read a flattened (N, features) input")
            w = w.T
            if args[0] in self.flattened and len(self.flattened[args[0]]) == 3:
                w = torch_flatten_to_nhwc(w, self.flattened[args[0]])
            self.new_layer(v, op="dense", inputs=[x], weight=w.astype(np.float32))
        elif op in ("relax.add", "relax.subtract", "relax.multiply", "relax.divide"):
            self.arith(v, op, args)
        elif op == "relax.nn.batch_norm":
            self.batch_norm(v, e, args)
        elif op in ("relax.clip", "relax.nn.relu", "relax.nn.relu6"):
            if op == "relax.clip":
                lo, hi = float(self.value(args[1])), float(self.value(args[2]))
                act = "relu6" if (lo, hi) == (0.0, 6.0) else "relu" if lo == 0 and hi > 1e30 \
                    else None
                if act is None:
                    self.fail(v, f"clamp to [{lo}, {hi}]: only ReLU and ReLU6 / Hardtanh(0, 6)")
            else:
                act = "relu6" if op.endswith("relu6") else "relu"
            lay = self.producer(args[0])
            if lay is None or lay.act or lay.op == "concat" or self.uses.get(args[0], 0) != 1:
                self.fail(v, "an activation must directly follow one layer that nothing "
                             "else reads")
            lay.act = act
            self.extend(v, lay)
        elif op == "relax.nn.pad":
            self.pad(v, e, args)
        elif op == "relax.mean":
            axes = sorted(int(x) % 4 for x in a.axis)
            if axes != [2, 3]:
                self.fail(v, f"mean over axes {axes}: only over H and W (global pooling)")
            _, _, h, w = _ints(args[0].ty.shape)
            self.new_layer(v, op="avgpool", inputs=[self.tensor(args[0], v, "mean")],
                           kernel=(h, w), stride=(h, w))
        elif op in ("relax.nn.avg_pool2d", "relax.nn.max_pool2d"):
            self.pool(v, e, op, args)
        elif op == "relax.nn.adaptive_avg_pool2d":
            _, _, h, w = _ints(args[0].ty.shape)
            if _ints(a.output_size) != (1, 1):
                self.fail(v, "adaptive average pooling to more than 1×1")
            self.new_layer(v, op="avgpool", inputs=[self.tensor(args[0], v, "pool")],
                           kernel=(h, w), stride=(h, w))
        elif op == "relax.concat":
            parts = list(args[0].fields) if isinstance(args[0], self.relax.Tuple) \
                else self.value(args[0])
            if int(a.axis) % 4 != 1 or not isinstance(parts, list):
                self.fail(v, f"concat along axis {a.axis}: only channels (axis 1)")
            self.new_layer(v, op="concat", inputs=[self.tensor(p, v, "concat") for p in parts])
        elif op == "relax.zeros_like":
            self.values[v] = None            # max pooling's unused indices
        else:
            self.fail(v, "not supported")

    def conv2d(self, v, e, args):
        a = e.attrs
        if a.data_layout != "NCHW" or a.kernel_layout != "OIHW":
            self.fail(v, f"layout {a.data_layout}/{a.kernel_layout}")
        w = self.value(args[1])
        if not isinstance(w, np.ndarray):
            self.fail(v, "the weight of a convolution must be a constant")
        w = w.astype(np.float32)
        p = _ints(a.padding)
        pad = (p[0], p[1], p[2], p[3])
        src = self.value(args[0])
        if isinstance(src, _Padded):
            pad = tuple(x + y for x, y in zip(pad, src.pad))
            src = self.value(src.src)
        if isinstance(src, _Affine):
            # a·(x − m) with m = −b/a: a is folded into the weights (exact, it commutes with
            # zero padding); m stays the graph's input offset.
            if self.input_offset is not None or int(a.groups) != 1:
                self.fail(v, "input normalisation can only be folded into one ordinary conv")
            if np.any(src.a == 0):
                self.fail(v, "input normalisation multiplies a channel by 0")
            w = w * src.a.astype(np.float32)[None, :, None, None]
            self.input_offset = (-src.b / src.a).astype(np.float32)
            src = "input"
        if not isinstance(src, str):
            self.fail(v, "a convolution must read a feature map")
        self.new_layer(v, op="conv2d", inputs=[src], weight=w, stride=_ints(a.strides),
                       padding=pad, dilation=_ints(a.dilation), groups=int(a.groups))

    def arith(self, v, op, args):
        lhs, rhs = (self.value(x) for x in args)
        if isinstance(lhs, str) and isinstance(rhs, str):
            if op != "relax.add":
                self.fail(v, "only addition of two feature maps")
            self.new_layer(v, op="add", inputs=[lhs, rhs])
            return
        const_first = isinstance(lhs, np.ndarray)
        act, c, act_e = (rhs, lhs, args[1]) if const_first else (lhs, rhs, args[0])
        if not isinstance(c, np.ndarray):
            self.fail(v, "arithmetic on unsupported values")
        if act == "input" or isinstance(act, _Affine):
            self.affine(v, op, act, np.asarray(c, np.float64), const_first)
            return
        if op != "relax.add":
            self.fail(v, "only a constant bias may be added to a layer's output "
                         "(multiplying or dividing a feature map by a constant is supported "
                         "only on the input)")
        lay = self.fusable(act_e, v, "a constant add (bias)")
        if lay.bias is not None:
            self.fail(v, "a second bias")
        lay.bias = c.reshape(-1).astype(np.float32)
        if lay.bias.size not in (1, lay.weight.shape[0]):
            self.fail(v, f"bias of {lay.bias.size} values for {lay.weight.shape[0]} channels")
        lay.bias = np.broadcast_to(lay.bias, (lay.weight.shape[0],)).copy()
        self.extend(v, lay)

    def affine(self, v, op, act, c, const_first):
        chans = self.in_shape[0]
        if c.size not in (1, chans):
            self.fail(v, f"input normalisation by a constant of shape {c.shape}: only a "
                         "scalar or one value per channel")
        k = np.broadcast_to(c.reshape(-1), (chans,)).astype(np.float64)
        cur = act if isinstance(act, _Affine) else _Affine(np.ones(chans), np.zeros(chans))
        if op == "relax.add":
            new = _Affine(cur.a, cur.b + k)
        elif op == "relax.subtract":
            new = _Affine(-cur.a, k - cur.b) if const_first else _Affine(cur.a, cur.b - k)
        elif op == "relax.multiply":
            new = _Affine(cur.a * k, cur.b * k)
        elif const_first:
            self.fail(v, "dividing a constant by the input")
        else:
            new = _Affine(cur.a / k, cur.b / k)
        self.values[v] = new

    def batch_norm(self, v, e, args):
        lay = self.fusable(args[0], v, "BatchNorm", ops=("conv2d",))
        gamma, beta, mean, var = (self.value(x) for x in args[1:5])
        if int(e.attrs.axis) % 4 != 1 or any(not isinstance(x, np.ndarray)
                                             for x in (gamma, beta, mean, var)):
            self.fail(v, "BatchNorm over channels with constant statistics (eval mode)")
        s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + float(e.attrs.epsilon))
        lay.weight = (lay.weight * s[:, None, None, None]).astype(np.float32)
        b = np.zeros(len(s)) if lay.bias is None else lay.bias.astype(np.float64)
        lay.bias = ((b - mean) * s + beta).astype(np.float32)
        self.values[v] = [lay.output, None, None]
        self.layer_var[lay.name] = v

    def pad(self, v, e, args):
        a = e.attrs
        pw = _ints(a.pad_width)
        if str(a.pad_mode) != "constant" or float(a.pad_value) != 0.0 or any(pw[:4]) \
                or min(pw) < 0:
            self.fail(v, "only zero padding of H and W")
        src = self.value(args[0])
        if isinstance(src, _Padded):
            prev = src.pad
            args0, src = src.src, None
        else:
            prev, args0 = (0, 0, 0, 0), args[0]
        if src is not None and not isinstance(src, (str, _Affine)):
            self.fail(v, "padding of an unsupported value")
        t, b, le, r = pw[4:8]
        self.values[v] = _Padded(args0, tuple(x + y for x, y in zip(prev, (t, le, b, r))))

    def pool(self, v, e, op, args):
        a = e.attrs
        if a.ceil_mode or _ints(a.dilation) != (1, 1):
            self.fail(v, "pooling with ceil_mode or dilation")
        p = _ints(a.padding)
        pad = (p[0], p[1], p[2], p[3])
        src = self.value(args[0])
        kind = "avgpool" if op.endswith("avg_pool2d") else "maxpool"
        if isinstance(src, _Padded):
            if kind == "maxpool":
                self.fail(v, "max pooling of a zero-padded map (zero is not below every "
                             "value); pad in the pooling instead")
            pad = tuple(x + y for x, y in zip(pad, src.pad))
            src = self.value(src.src)
            if any(p) and not a.count_include_pad:
                self.fail(v, "average pooling excluding its own padding after an explicit pad")
        elif kind == "avgpool" and not a.count_include_pad and any(pad):
            self.fail(v, "average pooling that excludes the padding (count_include_pad=False)")
        if not isinstance(src, str):
            self.fail(v, "pooling must read a feature map")
        self.new_layer(v, op=kind, inputs=[src], kernel=_ints(a.pool_size),
                       stride=_ints(a.strides), padding=pad)


def read_layers(mod, func: str = "main") -> tuple[Graph, dict]:
    """(layer graph, layer name → Relax var holding its output) of a Relax module made by
    :func:`to_relax`. Raises UnsupportedOpError naming the Relax binding and op."""
    from tvm import relax

    f = mod[func]
    if len(f.params) != 1:
        raise UnsupportedOpError(f"{func} takes {len(f.params)} inputs; one image input expected")
    x = f.params[0]
    in_shape = _ints(x.ty.shape)
    if len(in_shape) != 4:
        raise UnsupportedOpError(f"input {x.name} has shape {in_shape}; NCHW expected")
    current = {}

    def fail(v, why):
        raise UnsupportedOpError(f"op {current.get('op')} (binding {v.name}): {why}. "
                                 f"Supported: {SUPPORTED}")

    r = _Reader(f, fail)
    r.in_shape = in_shape[1:]
    r.flattened = {}
    r.values[x] = "input"
    for b in r.bindings:
        v, e = b.var, b.value
        if isinstance(e, relax.Var):
            r.values[v] = r.values.get(e)
            if e in r.flattened:
                r.flattened[v] = r.flattened[e]
        elif isinstance(e, relax.Tuple):
            r.values[v] = [r.value(x) for x in e.fields]
        elif isinstance(e, relax.TupleGetItem):
            tup = r.value(e.tuple_value)
            if not isinstance(tup, list):
                fail(v, "indexing a value that is not a tuple")
            item = r.values[v] = tup[int(e.index)]
            lay = r.by_output.get(item) if isinstance(item, str) else None
            if lay is not None and e.tuple_value.same_as(r.layer_var.get(lay.name)):
                r.layer_var[lay.name] = v      # BatchNorm's tuple → the layer's tensor
        elif isinstance(e, relax.Call):
            current["op"] = e.op.name if hasattr(e.op, "name") else str(e.op)
            r.read(v, e, current["op"], list(e.args))
        else:
            fail(v, f"{type(e).__name__} bindings")
    out = f.body.body
    out_tensor = r.values.get(out)
    if not isinstance(out_tensor, str) or out_tensor == "input":
        raise UnsupportedOpError("the function's result is not a layer output")
    g = Graph("input", tuple(in_shape[1:]), r.layers, out_tensor,
              input_offset=r.input_offset)
    return g, r.layer_var


def from_relax(mod, func: str = "main") -> Graph:
    """Read the layer graph off a Relax module produced by :func:`to_relax` (see
    :data:`SUPPORTED`). Anything else raises UnsupportedOpError naming the op."""
    return read_layers(mod, func)[0]


def relax_layer_values(mod, x: np.ndarray) -> list[np.ndarray]:
    """The Relax module's value (NCHW) of every layer graph layer's output on input x, run on
    the Relax VM: the per-layer reference of the import check."""
    import tvm
    from tvm import relax

    mod = relax.transform.ToNonDataflow()(mod)
    graph, layer_vars = read_layers(mod)
    vars_ = [layer_vars[lay.name] for lay in graph.layers]
    f = mod["main"]
    blocks = [relax.BindingBlock(list(b.bindings)) for b in f.body.blocks]
    probe = relax.Function(f.params, relax.SeqExpr(blocks, relax.Tuple(vars_)),
                           relax.TupleType([v.ty for v in vars_]))
    ex = tvm.compile(tvm.IRModule({"main": probe}), target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(np.ascontiguousarray(x, dtype=np.float32)))
    return [o.numpy() for o in out]


def import_model(model: torch.nn.Module, input_shape: tuple[int, int, int],
                 check: bool = True):
    """(canonical Relax IRModule, layer graph) of a torch model (see :func:`to_relax`)."""
    mod = to_relax(model, input_shape, check)
    return mod, from_relax(mod)


def load_zoo(name: str, checkpoint: str | None = None):
    """(torch model, Relax module, layer graph) of a registered model."""
    from . import models   # the zoo needs torch
    mi = models.info(name)
    model = models.get(name, checkpoint=checkpoint)
    mod, graph = import_model(model, mi.input_shape)
    return model, mod, graph
