"""VDPCRouting: the runtime outlier check of VDPC and the branch it selects, as ``relax.If``.

On an annotated PatchSplit module (AnnotateBits first; the classification map, threshold and
ranges are read from the module), each patch function ``patch_r_c``
becomes

* a prefix that computes the branch up to the policy's classification map (at 8 bits),
* ``outlier = patch_r_c_check(map)``: some 8-bit value of the map is at least
  ``threshold_q`` or at most ``threshold_q_lo`` (the integer thresholds of
  :func:`vdpc_thresholds`, the ones ``tvm_quantmcu.search.Simulator`` uses),
* ``tile = R.If(outlier, patch_r_c_8bit(...), patch_r_c_low(...))``: the rest of the branch
  as two continuation functions holding the same ops, annotated with the bits of the all-8-bit
  and of the low-bit branch; the lowering requantizes the maps handed to the low-bit one,
* ``return (tile, outlier)``.

``main`` then returns ``(logits, outlier flags)``, one flag per patch in row-major order.
In the float module the check runs on the fake-quantized map (``floor(x/scale + 1/2) + zp``
in float32), and both continuations compute the same float values, so the routed float
module still computes the original logits. Non-VDPC policies (int8, ...) leave the module
unchanged: there is nothing to route.
"""
from __future__ import annotations

import contextlib

import numpy as np
import tvm
from tvm import relax

from tvm_quantmcu.quant import ActQuant
from tvm_quantmcu.quant.policy import integer_thresholds

from .common import (ATTR_BITS, ATTR_BITS8, ATTR_BITS_LOW, ATTR_COMPUTES, ATTR_PARAMS,
                     ATTR_QUANT, ATTR_ROLE, ATTR_ROUTING, INPUT_TENSOR, QUANT_8BIT, QUANT_LOW,
                     QuantPassError, attr, attrs_dict, bindings, free_vars, int_map,
                     patch_functions, policy_of, str_list, subst)

ATTR_OUTPUTS = "quantmcu.outputs"


def classification_quant(policy) -> ActQuant:
    """The 8-bit quantization of the classification map (as in ``policy.qgraph8``)."""
    lo, hi = policy.ranges8[policy.classification_map]
    return ActQuant.from_range(lo, hi, 8)


def vdpc_thresholds(policy) -> tuple[int, int]:
    """(threshold_q, threshold_q_lo) of the integer outlier check: a patch is an outlier when
    its 8-bit map has a value ≥ threshold_q or ≤ threshold_q_lo (the simulator's rule)."""
    return integer_thresholds(classification_quant(policy), policy.threshold)


def _check_function(name: str, cmap_ty, q: ActQuant, thr: tuple[int, int], cmap: str):
    """Float form of the outlier check: fake-quantize the map to 8 bits, compare max / min."""
    fb = relax.BlockBuilder()
    x = relax.Var("map", cmap_ty)
    f32 = lambda v: relax.const(np.float32(v))          # noqa: E731
    attrs = {ATTR_ROLE: "vdpc_check",
             ATTR_ROUTING: {"map": cmap, "threshold_q": thr[0], "threshold_q_lo": thr[1]}}
    with fb.function(name, [x], attrs=attrs, private=True):
        with fb.dataflow():
            v = fb.emit(relax.op.floor(relax.op.add(relax.op.divide(x, f32(q.scale)),
                                                    f32(0.5))))
            v = fb.emit(relax.op.clip(relax.op.add(v, f32(q.zero_point)), 0.0, float(q.qmax)))
            hi = fb.emit(relax.op.greater_equal(relax.op.max(v), f32(thr[0])))
            lo = fb.emit(relax.op.less_equal(relax.op.min(v), f32(thr[1])))
            out = fb.emit_output(relax.op.logical_or(hi, lo), name_hint="outlier")
        fb.emit_func_output(out)
    return fb.get()[name]


class _Split:
    """A patch function cut after its classification map."""

    def __init__(self, name: str, func, cmap: str):
        computes = str_list(attr(func, ATTR_COMPUTES, []))
        if cmap not in computes:
            raise QuantPassError(f"{name}: the classification map {cmap} is not computed in "
                                 f"this branch (it computes {computes})")
        k = computes.index(cmap)
        self.prefix_layers, self.suffix_layers = computes[:k + 1], computes[k + 1:]
        binds = bindings(func)
        ends = [i for i, b in enumerate(binds) if b.var.name == cmap]
        if len(ends) != 1:
            raise QuantPassError(f"{name}: no single binding completes layer {cmap}; was the "
                                 "module made by PatchSplit?")
        self.prefix, self.suffix = binds[:ends[0] + 1], binds[ends[0] + 1:]
        self.map_var = binds[ends[0]].var
        self.body = func.body.body
        (self.window,) = func.params
        acts = {self.window}
        for b in self.prefix:
            if any(a in acts for a in free_vars(b.value)):
                acts.add(b.var)
        defined = {b.var: b for b in self.prefix}
        used = []
        for e in [b.value for b in self.suffix] + [self.body]:
            used += [a for a in free_vars(e) if (a in defined or a == self.window)
                     and a not in used]
        # maps that cross the cut are parameters of the continuations; constant-derived
        # values they need are recomputed there
        order = {b.var: i for i, b in enumerate(self.prefix)}
        self.cross = sorted((a for a in used if a in acts), key=lambda a: order.get(a, -1))
        for a in self.cross:
            if a != self.window and a.name not in self.prefix_layers:
                raise QuantPassError(f"{name}: {a.name} is used after the classification map "
                                     f"{cmap} but is not a complete layer output")
        need, todo = set(), [a for a in used if a not in acts]
        while todo:
            a = todo.pop()
            if a not in need:
                need.add(a)
                todo += [d for d in free_vars(defined[a].value) if d in defined]
        self.consts = [b for b in self.prefix if b.var in need]

    def tensor(self, var) -> str:
        return INPUT_TENSOR if var == self.window else var.name


def _continuation(name: str, split: _Split, quant: str, bits: dict,
                  patch: str) -> relax.Function:
    params = [relax.Var(split.tensor(a), a.ty) for a in split.cross]
    remap = dict(zip(split.cross, params))
    attrs = {ATTR_ROLE: "continuation", ATTR_QUANT: quant, ATTR_COMPUTES: split.suffix_layers,
             ATTR_BITS: {t: bits[t] for t in split.suffix_layers},
             ATTR_PARAMS: [split.tensor(a) for a in split.cross],
             "quantmcu.continuation_of": patch}
    fb = relax.BlockBuilder()
    with fb.function(name, params, attrs=attrs, private=True):
        with fb.dataflow():
            for b in split.consts + split.suffix:
                remap[b.var] = fb.emit(subst(b.value, remap), name_hint=b.var.name)
            out = fb.emit_output(subst(split.body, remap), name_hint="tile")
        fb.emit_func_output(out)
    return fb.get()[name]


@tvm.transform.module_pass(opt_level=0, name="VDPCRouting")
class VDPCRouting:
    """Insert the VDPC outlier check and the ``relax.If`` between the all-8-bit and the
    low-bit continuation of every patch branch (see module docstring)."""

    def __init__(self, func: str = "main"):
        if not isinstance(func, str):
            raise TypeError("VDPCRouting reads the policy from the module (AnnotateBits wrote "
                            "it); construct it as VDPCRouting()")
        self.func = func

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        patches = patch_functions(mod)
        for name, f in patches.items():
            if attr(f, ATTR_BITS8) is None:
                raise QuantPassError(f"{name} carries no bitwidths; run AnnotateBits before "
                                     "VDPCRouting")
        if not patches:
            return mod
        pol = policy_of(mod, self.func)
        if not pol.vdpc:
            return mod
        if not pol.classification_map or pol.threshold is None:
            raise QuantPassError(f"VDPC policy {pol.name} names no classification map or "
                                 "threshold")
        thr = vdpc_thresholds(pol)
        q = classification_quant(pol)
        # A fresh module: the routed functions return (tile, flag), so their callers need
        # GlobalVars of the new signature.
        keep = {gv: f for gv, f in mod.functions.items()
                if gv.name_hint not in patches and gv.name_hint != self.func}
        bb = relax.BlockBuilder(tvm.IRModule(keep, attrs=mod.attrs))
        routed = {}
        for name, f in patches.items():
            if attr(f, ATTR_ROUTING) is not None:
                raise QuantPassError(f"{name} is already routed; run VDPCRouting once")
            split = _Split(name, f, pol.classification_map)
            gv8 = bb.add_func(_continuation(f"{name}_8bit", split, QUANT_8BIT,
                                            int_map(f.attrs[ATTR_BITS8]), name), f"{name}_8bit")
            gvlow = bb.add_func(_continuation(f"{name}_low", split, QUANT_LOW,
                                              int_map(f.attrs[ATTR_BITS_LOW]), name),
                                f"{name}_low")
            gvchk = bb.add_func(_check_function(f"{name}_check", split.map_var.ty, q, thr,
                                                pol.classification_map), f"{name}_check")
            new = bb.add_func(self._prefix(name, f, split, gv8, gvlow, gvchk, thr,
                                           pol.classification_map), name)
            routed[mod.get_global_var(name)] = new
        bb.add_func(_route_main(self.func, mod[self.func], routed, bb.get()), self.func)
        return bb.get()

    def _prefix(self, name, f, split: _Split, gv8, gvlow, gvchk, thr,
                cmap: str) -> relax.Function:
        win = relax.Var("window", split.window.ty)
        remap = {split.window: win}
        bits = int_map(f.attrs[ATTR_BITS8])
        attrs = attrs_dict(f)
        attrs.update({ATTR_COMPUTES: split.prefix_layers, ATTR_QUANT: QUANT_8BIT,
                      ATTR_BITS: {t: bits[t] for t in split.prefix_layers},
                      ATTR_ROUTING: {"map": cmap,
                                     "threshold_q": thr[0], "threshold_q_lo": thr[1],
                                     "if_outlier": gv8.name_hint, "else": gvlow.name_hint}})
        fb = relax.BlockBuilder()
        with fb.function(name, [win], attrs=attrs, private=True):
            with fb.dataflow():
                for b in split.prefix:
                    remap[b.var] = fb.emit(subst(b.value, remap), name_hint=b.var.name)
                outs = {a: fb.emit_output(remap[a], name_hint=a.name)
                        for a in dict.fromkeys(split.cross + [split.map_var])
                        if a != split.window}
            args = [win if a == split.window else outs[a] for a in split.cross]
            flag = fb.emit(relax.Call(gvchk, [outs[split.map_var]]), name_hint="outlier")
            tile = fb.emit(relax.If(flag, relax.Call(gv8, args), relax.Call(gvlow, args)),
                           name_hint="tile")
            fb.emit_func_output(relax.Tuple([tile, flag]))
        # constants only the continuations use were re-emitted there
        return relax.analysis.remove_all_unused(fb.get()[name])


def _route_main(name: str, main, routed: dict, mod) -> relax.Function:
    """main with every routed patch call unpacked into (tile, flag) and the flags returned.
    routed: old GlobalVar of a patch function → GlobalVar of its routed version."""
    x = relax.Var(main.params[0].name, main.params[0].ty)
    remap = {main.params[0]: x}
    calls = [b.var for b in bindings(main) if isinstance(b.value, relax.Call)
             and b.value.op in routed]
    flags: list = []
    attrs = attrs_dict(main)
    attrs[ATTR_OUTPUTS] = ["logits", "outlier"]
    fb = relax.BlockBuilder(mod)

    def emit(v, e, df: bool):
        if isinstance(e, relax.Call) and e.op in routed:
            patch = routed[e.op]
            res = fb.emit(relax.Call(patch, [subst(a, remap) for a in e.args]),
                          name_hint=f"{patch.name_hint}_out")
            new = fb.emit(relax.TupleGetItem(res, 0), name_hint=v.name)
            flags.append(fb.emit(relax.op.reshape(relax.TupleGetItem(res, 1), (1,)),
                                 name_hint=f"{patch.name_hint}_outlier"))
        else:
            new = fb.emit(subst(e, remap), name_hint=v.name)
        if df and not isinstance(v, relax.DataflowVar):
            new = fb.emit_output(new, name_hint=v.name)
        remap[v] = new
        if v == calls[-1]:              # all flags known: one vector, row-major patches
            out = fb.emit(relax.op.concat(flags, axis=0), name_hint="outlier")
            remap["flags"] = fb.emit_output(out, name_hint="outlier") if df else out

    with fb.function(name, [x], attrs=attrs):
        for blk in main.body.blocks:
            df = isinstance(blk, relax.DataflowBlock)
            with fb.dataflow() if df else contextlib.nullcontext():
                for b in blk.bindings:
                    emit(b.var, b.value, df)
        fb.emit_func_output(relax.Tuple([subst(main.body.body, remap), remap["flags"]]))
    return fb.get()[name]
