"""LowerToQuantMCUKernels: replace every layer's float ops by integer TIR kernel calls.

Input: a PatchSplit module annotated by AnnotateBits (and routed by VDPCRouting for a VDPC
policy). Output: the integer module the device runs, on the host's Relax VM:

* ``main(image)`` takes the quantized image as NHWC uint8 values without the batch axis,
  ``(H, W, C)`` = ``tvm_quantmcu.quant.quantize_input(x)[i]`` (what the device receives), and
  returns ``(logits, outlier)``: the quantized logits (uint8, packed at the output's bits —
  8 in every shipped policy) and one routing decision per patch (bool, row-major; all False
  when the policy does not route).
* Every layer (conv2d / depthwise / dense + bias + fused ReLU/ReLU6, residual add, average
  pooling) is one ``R.call_tir`` of ``tvm_quantmcu.topi.compute.make_compute(spec)``
  specialised to its input window, with the weights, bias, multipliers and zero points of
  ``tvm_quantmcu.topi.params.params_for_layer`` as constants. Feature maps are packed uint8
  NHWC tensors at the bits of the function's integer graph (``quantmcu.quant``: the policy's
  all-8-bit graph or its low-bit graph); explicit pads become the kernels' border padding, and
  crops / tile concatenations become ``strided_slice`` / ``concat`` on the packed tensors.
* Where a tensor passes from one quantization to another (the maps handed to the low-bit
  continuation), a requantization kernel computes exactly ``quant.requant_int``.
* The VDPC check function becomes an integer check over the 8-bit map.
* Each TIR function says what it computes in its attributes (:mod:`.int_kernels`: the
  KernelSpec and window of a layer kernel, the shape and bits of a requantization or check),
  and ``main`` carries the output's tensor, bits and channels, the planner's predicted
  peak SRAM and the target the kernels were chosen for: ``tvm_quantmcu.codegen`` generates
  the firmware from this module alone.

Everything is read from the module: the widths from each function's attributes, the ranges,
routing and plan from ``main`` (:func:`relax_passes.policy_of`), the weights from the float
layer graph PatchSplit kept (:func:`relax_passes.layer_graph`); the pass checks that the
functions' layers and weight shapes agree with it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from tvm_quantmcu.patch import policy_peak
from tvm_quantmcu.quant import INPUT_QUANT, ActQuant
from tvm_quantmcu.topi import TARGETS, UnsupportedKernel, params_for_layer, spec_for_layer

from .common import (ATTR_COMPUTES, ATTR_PARAMS, ATTR_QUANT, ATTR_ROLE, ATTR_ROUTING,
                     ATTR_VDPC, INPUT_TENSOR, LAYERS_FUNC, layers_function, QUANT_8BIT, QUANT_LOW, LayerWalker,
                     QuantPassError, attr, attrs_dict, ints, layer_graph, op_name,
                     patch_functions, policy_of, shape_of, str_list)
from .int_kernels import KernelLibrary, packed_type, requant_args

_LAYER_OPS = {"conv2d": ("relax.nn.conv2d",), "dense": ("relax.matmul",),
              "add": ("relax.add",),
              "avgpool": ("relax.mean", "relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d"),
              "maxpool": ("relax.nn.max_pool2d",)}
_NCHW_TO_HWC = {2: 0, 3: 1}
ATTR_TARGET = "quantmcu.target"     # main: the target the module was lowered for
DEFAULT_TARGET = "cortex-m4"


@dataclass
class Act:
    """An integer feature map: packed NHWC uint8 tensor of graph tensor `tensor`."""
    var: relax.Expr
    tensor: str
    quant: ActQuant
    channels: int
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)   # pending border padding (t, l, b, r)

    @property
    def hw(self) -> tuple[int, int]:
        s = shape_of(self.var)
        return s[0], s[1]


@dataclass
class Plain:
    """A value lowered as it is (routing flags)."""
    var: relax.Expr


@dataclass
class Items:
    """A tuple of lowered values (what a routed patch function returns)."""
    var: relax.Expr
    items: list


@dataclass
class Lowered:
    gv: relax.GlobalVar
    params: list[tuple[str, ActQuant]]
    result: object                    # Act / Plain / Items template (its var is the callee's)


class _FunctionLowering:
    """Lowers one Relax function into the shared BlockBuilder."""

    def __init__(self, pass_, name: str, func: relax.Function):
        self.p, self.name, self.func = pass_, name, func
        quant = attr(func, ATTR_QUANT)
        if quant not in (QUANT_8BIT, QUANT_LOW):
            raise QuantPassError(f"{name} has no {ATTR_QUANT} attribute; run AnnotateBits "
                                 "before LowerToQuantMCUKernels")
        self.qg = pass_.qg8 if quant == QUANT_8BIT else pass_.qg_low
        self.walker = LayerWalker(func, str_list(attr(func, ATTR_COMPUTES, [])), name)
        self.bb: relax.BlockBuilder = pass_.bb
        self.env: dict = {}
        self.branch_bindings: list | None = None   # collecting the bindings of an If branch

    # ---- errors
    def _fail(self, v, op: str, why: str):
        layer = self.walker.layer_of.get(v)
        where = f"layer {layer}" if layer else "no layer"
        raise QuantPassError(f"{self.name}: op {op} (binding {v.name}, {where}) cannot be "
                             f"lowered to QuantMCU kernels: {why}")

    # ---- the function
    def run(self) -> Lowered:
        f, bb = self.func, self.bb
        tensors = str_list(attr(f, ATTR_PARAMS, []))
        if len(tensors) != len(f.params):
            raise QuantPassError(f"{self.name}: {ATTR_PARAMS} names {len(tensors)} tensors "
                                 f"for {len(f.params)} parameters; run AnnotateBits")
        params, new_params = [], []
        for p, t in zip(f.params, tensors):
            q = self.qg.acts.get(t, INPUT_QUANT) if t == INPUT_TENSOR else self.qg.acts[t]
            _, c, h, w = shape_of(p)
            var = relax.Var(p.name, packed_type(h, w, c, q.bits))
            self.env[p] = Act(var, t, q, c)
            params.append((t, q))
            new_params.append(var)
        is_main = self.name == self.p.func
        attrs = attrs_dict(f)
        attrs.pop("global_symbol", None)
        with bb.function(self.name, new_params, attrs=attrs, private=not is_main):
            for blk in f.body.blocks:
                df = isinstance(blk, relax.DataflowBlock)
                with bb.dataflow() if df else contextlib.nullcontext():
                    for b in blk.bindings:
                        self.binding(b, df)
            result = self.value(f.body.body)
            if is_main:
                out = self._main_outputs(result)
            else:
                out = result.var
            gv = bb.emit_func_output(out)
        return Lowered(gv, params, result)

    def _main_outputs(self, result):
        """(logits flattened, flags): the interface the VM helper and the tests read."""
        bb = self.bb
        if isinstance(result, Items):
            logits, flags = result.items[0], result.items[1].var
        else:
            n = len(patch_functions(self.p.mod))
            logits, flags = result, relax.const(np.zeros(n, bool))
        if not isinstance(logits, Act):
            raise QuantPassError(f"{self.name} does not return a feature map")
        size = int(np.prod(shape_of(logits.var)))
        flat = bb.emit(relax.op.reshape(logits.var, (size,)), name_hint="logits")
        self.p.outputs = {"quantmcu.output_bits": logits.quant.bits,
                          "quantmcu.output_channels": logits.channels,
                          "quantmcu.output_tensor": logits.tensor}
        return relax.Tuple([flat, flags])

    def value(self, expr):
        if isinstance(expr, relax.Tuple):
            items = [self.value(f) for f in expr.fields]
            return Items(relax.Tuple([i.var for i in items]), items)
        return self.env[expr]

    # ---- bindings
    def binding(self, b, df: bool):
        v, e = b.var, b.value
        if not self.walker.is_act(v):
            return                      # derived from constants only: folded into kernels
        val = self.lower(v, e)
        if df and not isinstance(v, relax.DataflowVar):
            val = replace(val, var=self.bb.emit_output(val.var, name_hint=v.name))
        self.env[v] = val

    def emit(self, expr, name: str):
        if self.branch_bindings is None:
            return self.bb.emit(expr, name_hint=name)
        expr = self.bb.normalize(expr)          # infers the struct info of the new var
        var = relax.Var(name, expr.ty)
        self.branch_bindings.append(relax.VarBinding(var, expr))
        return var

    def lower(self, v, e):
        if isinstance(e, relax.Var):
            return self.env[e]
        if isinstance(e, relax.TupleGetItem):
            tup = self.env[e.tuple_value]
            item = tup.items[e.index]
            return replace(item, var=self.emit(relax.TupleGetItem(tup.var, e.index), v.name))
        if isinstance(e, relax.If):
            return self.lower_if(v, e)
        if isinstance(e, relax.Tuple):
            items = [self.env[f] for f in e.fields]
            return Items(self.emit(relax.Tuple([i.var for i in items]), v.name), items)
        if not isinstance(e, relax.Call):
            self._fail(v, type(e).__name__, "unsupported expression")
        if isinstance(e.op, relax.GlobalVar):
            return self.lower_call(v, e)
        op = op_name(e)
        if v in self.walker.starts:
            return self.lower_layer(v, e, op, self.walker.starts[v])
        acts = [self.env[a] for a in self._act_args(e)]
        if op == "relax.add" or op in ("relax.clip", "relax.nn.relu", "relax.nn.relu6"):
            return acts[0]              # bias and activation: inside the layer's kernel
        if isinstance(acts[0], Plain):  # routing flags: reshape / concat as they are
            if op not in ("relax.reshape", "relax.concat"):
                self._fail(v, op, "only reshape/concat of routing flags are supported")
            return Plain(self.emit(relax.Call(e.op, [self._plain(a) for a in e.args],
                                              e.attrs, e.ty_args), v.name))
        if op == "relax.reshape":
            return acts[0]              # flatten before dense: the dense kernel reads NHWC
        if op == "relax.subtract" and acts[0].tensor == INPUT_TENSOR:
            return acts[0]              # the input offset: the input's zero point carries it
        if op == "relax.nn.pad":
            return self.lower_pad(v, e, acts[0])
        if op == "relax.strided_slice":
            return self.lower_slice(v, e, acts[0])
        if op == "relax.concat":
            return self.lower_concat(v, e, acts)
        self._fail(v, op, "no integer kernel implements it")

    def _act_args(self, e) -> list:
        found = []
        for a in e.args:
            fields = a.fields if isinstance(a, relax.Tuple) else [a]
            found += [f for f in fields if self.walker.is_act(f)]
        return found

    def _plain(self, a):
        if isinstance(a, relax.Tuple):
            return relax.Tuple([self._plain(f) for f in a.fields])
        return self.env[a].var if isinstance(a, relax.Var) else a

    # ---- data movement
    def lower_pad(self, v, e, x: Act) -> Act:
        pw = ints(e.attrs.pad_width)
        zero_hw_only = not any(pw[:4]) and float(e.attrs.pad_value) == 0.0 \
            and str(e.attrs.pad_mode) == "constant"
        if not zero_hw_only:
            self._fail(v, "relax.nn.pad", "only zero padding of H and W is supported")
        t, b, le, r = pw[4:]
        return replace(x, pad=(x.pad[0] + t, x.pad[1] + le, x.pad[2] + b, x.pad[3] + r))

    def lower_slice(self, v, e, x: Act) -> Act:
        axes, begin, end = ints(e.args[1]), ints(e.args[2]), ints(e.args[3])
        if len(e.args) > 4 and e.args[4] is not None and any(s != 1 for s in ints(e.args[4])):
            self._fail(v, "relax.strided_slice", "strides other than 1")
        if any(a not in _NCHW_TO_HWC for a in axes) or any(x.pad):
            self._fail(v, "relax.strided_slice", "only crops in H and W of unpadded maps")
        out = relax.op.strided_slice(x.var, [_NCHW_TO_HWC[a] for a in axes], begin, end)
        return replace(x, var=self.emit(out, v.name))

    def lower_concat(self, v, e, xs: list) -> Act:
        axis = int(e.attrs.axis) % 4
        if axis not in _NCHW_TO_HWC or any(any(x.pad) for x in xs):
            self._fail(v, "relax.concat", "only tiles along H or W")
        if any(x.quant != xs[0].quant or x.tensor != xs[0].tensor for x in xs):
            self._fail(v, "relax.concat", "tiles of different tensors or quantizations")
        out = relax.op.concat([x.var for x in xs], axis=_NCHW_TO_HWC[axis])
        return replace(xs[0], var=self.emit(out, v.name))

    def requantized(self, x: Act, q: ActQuant, name: str) -> Act:
        """x in quantization q (the requantization kernel when they differ)."""
        if x.quant == q:
            return x
        h, w = x.hw
        gv = self.p.kernels.requant(h, w, x.channels, x.quant.bits, q.bits)
        args = [x.var] + [relax.const(a) for a in requant_args(x.quant, q)]
        out = self.emit(relax.call_tir(gv, args, out_ty=packed_type(h, w, x.channels, q.bits)),
                        f"{name}_requant")
        return replace(x, var=out, quant=q)

    # ---- layers
    def lower_layer(self, v, e, op: str, lname: str) -> Act:
        ql = self.qg.qlayer(lname)
        layer = ql.layer
        if op not in _LAYER_OPS.get(layer.op, ()):
            self._fail(v, op, f"the layer graph has a {layer.op} layer here; the module and "
                              "the graph disagree")
        inputs = list(e.args) if layer.op == "add" else [e.args[0]]
        xs = [self.env[a] for a in inputs]
        if any(not isinstance(x, Act) for x in xs) or (layer.op == "add" and any(
                any(x.pad) for x in xs)):
            self._fail(v, op, "its inputs are not feature maps")
        self._check_weight(v, e, op, layer)
        xs = [self.requantized(x, q, lname) for x, q in zip(xs, ql.in_q)]
        pad = list(xs[0].pad)
        if op in ("relax.nn.conv2d", "relax.nn.avg_pool2d", "relax.nn.max_pool2d"):
            p = ints(e.attrs.padding)
            pad = [pad[0] + p[0], pad[1] + p[1], pad[2] + p[2], pad[3] + p[3]]
        h, w = xs[0].hw
        try:
            spec = spec_for_layer(ql, (h, w, xs[0].channels), xs[0].quant.bits,
                                  ql.out_q.bits, padding=tuple(pad),
                                  in2_bits=xs[-1].quant.bits, target=self.p.target)
            spec.validate()
            kp = params_for_layer(ql, spec)
        except UnsupportedKernel as err:
            self._fail(v, op, str(err))
        want = shape_of(v)
        want_hw = (want[2], want[3]) if len(want) == 4 else (1, 1)
        if spec.out_hw != want_hw:
            self._fail(v, op, f"kernel output {spec.out_hw} but the float op gives {want_hw}")
        gv = self.p.kernels.layer(spec, (h, w, pad[0], pad[1]))
        if layer.op == "add":
            args = [xs[0].var, xs[1].var] + [relax.const(a) for a in kp.arrays()[1:]]
        else:
            args = [xs[0].var] + [relax.const(a) for a in kp.arrays()]
        oc = spec.out_channels
        out = self.emit(relax.call_tir(gv, args, out_ty=packed_type(*spec.out_hw, oc,
                                                                    ql.out_q.bits)), lname)
        return Act(out, layer.output, ql.out_q, oc)

    def _check_weight(self, v, e, op, layer):
        if op not in ("relax.nn.conv2d", "relax.matmul"):
            return
        w = e.args[1]
        want = layer.weight.shape if op == "relax.nn.conv2d" else layer.weight.shape[::-1]
        if tuple(shape_of(w)) != tuple(want):
            self._fail(v, op, f"weight shape {shape_of(w)} but layer {layer.name} of the "
                              f"graph has {tuple(want)}: the graph is not this module's")
        if isinstance(w, Constant) and op == "relax.nn.conv2d" and not np.array_equal(
                w.value.numpy(), layer.weight):
            self._fail(v, op, f"its weights differ from layer {layer.name} of the graph")

    # ---- calls and routing
    def lower_call(self, v, e):
        callee = e.op.name_hint
        low = self.p.lowered.get(callee)
        if low is None:
            self._fail(v, callee, "the callee was not lowered")
        if isinstance(low, dict):       # the VDPC check
            return self.lower_check(v, e, low)
        args = []
        for a, (tensor, q) in zip(e.args, low.params):
            x = self.env[a]
            if not isinstance(x, Act) or any(x.pad) or x.tensor != tensor:
                self._fail(v, callee, f"argument {a.name} is not the map {tensor}")
            args.append(self.requantized(x, q, f"{callee}_{tensor}").var)
        out = self.emit(relax.Call(low.gv, args), v.name)
        return replace(low.result, var=out)

    def lower_check(self, v, e, routing: dict):
        x = self.env[e.args[0]]
        if not isinstance(x, Act) or x.tensor != routing["map"] or x.quant.bits != 8:
            self._fail(v, "vdpc_check", f"the check needs the 8-bit map {routing['map']}")
        h, w = x.hw
        gv = self.p.kernels.outlier_check(h, w, x.channels)
        thr = np.array([routing["threshold_q"], routing["threshold_q_lo"]], np.int32)
        out = relax.call_tir(gv, [x.var, relax.const(thr)], out_ty=relax.TensorType((), "bool"))
        return Plain(self.emit(out, v.name))

    def lower_if(self, v, e):
        cond = self.env[e.cond]
        branches = [self._branch(s) for s in (e.true_branch, e.false_branch)]
        (t_seq, t_val), (f_seq, f_val) = branches
        if type(t_val) is not type(f_val) or (isinstance(t_val, Act) and (
                t_val.tensor, t_val.quant) != (f_val.tensor, f_val.quant)):
            self._fail(v, "relax.If", "the two branches return differently quantized maps; "
                                      "the stage output must have one quantization")
        return replace(t_val, var=self.emit(relax.If(cond.var, t_seq, f_seq), v.name))

    def _branch(self, seq):
        """One If branch lowered to a SeqExpr of its own bindings."""
        outer, self.branch_bindings = self.branch_bindings, []
        try:
            for blk in seq.blocks:
                for b in blk.bindings:
                    self.binding(b, False)
            val = self.value(seq.body)
            block = relax.BindingBlock(self.branch_bindings)
        finally:
            self.branch_bindings = outer
        return relax.SeqExpr([block], val.var), val


def predicted_peak(graph, policy) -> int:
    """The patch planner's peak SRAM for this policy (the arena its program plans)."""
    return policy_peak(graph, policy)


def _call_order(mod, root: str) -> list[str]:
    """Relax functions reachable from `root`, callees first."""
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        f = mod[name]
        callees = []
        relax.analysis.post_order_visit(f.body, lambda e: callees.append(e.op.name_hint) if (
            isinstance(e, relax.Call) and isinstance(e.op, relax.GlobalVar)
            and isinstance(mod[e.op.name_hint], relax.Function)) else None)
        for c in callees:
            visit(c)
        order.append(name)
    visit(root)
    return order


@tvm.transform.module_pass(opt_level=0, name="LowerToQuantMCUKernels")
class LowerToQuantMCUKernels:
    """Lower an annotated (and, for VDPC, routed) PatchSplit module to integer kernels (see
    module docstring); everything it needs is read from the module, except the target the
    kernels are for (a ``tvm_quantmcu.topi.TARGETS`` name), which enters here: it decides how
    the kernels store weights (sub-byte weights as int8 for the Cortex-M55's Helium kernels,
    ``topi.mve.stored_w_bits``) and is recorded as ``main``'s ``quantmcu.target`` for the C
    generator."""

    def __init__(self, func: str = "main", target: str = DEFAULT_TARGET):
        if not isinstance(func, str):
            raise TypeError("LowerToQuantMCUKernels reads the policy and the layer graph from "
                            "the module; construct it as LowerToQuantMCUKernels()")
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
        self.func, self.target = func, target

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        if attr(mod[self.func], ATTR_VDPC) is None:
            raise QuantPassError(f"{self.func} carries no bitwidths; run AnnotateBits first")
        pol = policy_of(mod, self.func)
        self.policy, self.graph = pol, layer_graph(mod, self.func)
        self.qg8, self.qg_low = pol.qgraph8(self.graph), pol.qgraph_low(self.graph)
        if pol.vdpc and any(attr(f, ATTR_ROUTING) is None
                            for f in patch_functions(mod).values()):
            raise QuantPassError(f"policy {pol.name} routes patches (VDPC) but the module "
                                 "has no routing; run VDPCRouting before lowering")
        self.mod = mod
        self.bb = relax.BlockBuilder()
        self.kernels = KernelLibrary(self.bb)
        self.lowered: dict = {}
        self.outputs: dict = {}
        for name in _call_order(mod, self.func):
            f = mod[name]
            if attr(f, ATTR_ROLE) == "vdpc_check":
                r = f.attrs[ATTR_ROUTING]
                self.lowered[name] = {"map": str(r["map"]),
                                      "threshold_q": int(r["threshold_q"]),
                                      "threshold_q_lo": int(r["threshold_q_lo"])}
                continue
            self.lowered[name] = _FunctionLowering(self, name, f).run()
        out = self.bb.get()
        main_gv = out.get_global_var(self.func)
        self.outputs["quantmcu.predicted_peak_sram_bytes"] = predicted_peak(self.graph, pol)
        self.outputs[ATTR_TARGET] = self.target
        out[main_gv] = out[main_gv].with_attr(self.outputs)
        # the float layers stay the module's reference (the integer reference reads them
        # with the widths and ranges the functions carry; the C generator does not need them)
        if any(gv.name_hint == LAYERS_FUNC for gv in mod.functions):
            out[LAYERS_FUNC] = mod[LAYERS_FUNC]
        else:                                   # not split: main was the float layers
            out[LAYERS_FUNC] = layers_function(mod[self.func])
        return out
