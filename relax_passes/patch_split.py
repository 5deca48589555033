"""PatchSplit: run the patch stage of a Relax module as per-patch dataflow branches.

For a patch plan (split after layer n, p×q grid; see :mod:`tvm_quantmcu.patch`), the pass
rewrites ``main`` so that the first n+1 layers run once per patch: ``main`` cuts each patch's
input window from the image with ``R.strided_slice``, calls the patch's private function
``patch_<r>_<c>`` (the branch: the same conv2d / bias add / clip / add / pooling ops, with
padding only where the patch touches the image border), and assembles the tiles with
``R.concat`` (each row along W, then the rows along H). The layers after the cut run as before.

Later passes find the branch of patch (r, c) as the function ``patch_r_c``; its attributes
``quantmcu.patch`` ([r, c]), ``quantmcu.grid``, ``quantmcu.tile`` and ``quantmcu.window``
([h0, h1, w0, w1]), ``quantmcu.layers`` (layer names in dataflow order) describe it, and the
variable that completes layer ``lK`` is named ``lK`` (so the first feature map of the branch is
the variable named after the first layer; see :func:`branch_feature_maps`). ``main`` carries
``quantmcu.split_layer`` and ``quantmcu.grid``, enough to rebuild the plan with
``tvm_quantmcu.patch.analyze``. The unsplit function stays in the module as the public
``quantmcu_layers``: the float layer graph (weights, strides, paddings) that the later passes
and the integer reference read (:func:`relax_passes.layer_graph`).
"""
from __future__ import annotations

from typing import Mapping

import tvm
from tvm import relax
from tvm.relax.utils import copy_with_new_vars

from tvm_quantmcu.frontend import from_relax
from tvm_quantmcu.patch import Box, PatchPlan, analyze

PAD_MODES = ("explicit", "attr")
LAYERS_FUNC = "quantmcu_layers"


def layers_function(f: relax.Function) -> relax.Function:
    """A float function kept as the module's layer graph: a fresh copy named
    ``quantmcu_layers``, public (so dead-code elimination keeps it), without our
    attributes (it computes nothing the device runs)."""
    g = copy_with_new_vars(f)
    for k in list(g.attrs.keys()) if g.attrs is not None else []:
        if str(k).startswith("quantmcu."):
            g = g.without_attr(str(k))
    return g.with_attr("global_symbol", LAYERS_FUNC)
_NEW_LAYER_OPS = ("relax.nn.conv2d", "relax.matmul", "relax.mean", "relax.nn.avg_pool2d",
                  "relax.nn.adaptive_avg_pool2d", "relax.nn.max_pool2d")
_ACT_OPS = ("relax.clip", "relax.nn.relu", "relax.nn.relu6")


class PatchSplitError(ValueError):
    pass


def _op_name(call) -> str:
    return call.op.name if hasattr(call.op, "name") else str(call.op)


def _bindings(func) -> list:
    return [b for blk in func.body.blocks for b in blk.bindings]


def _map_layers(func, n_layers: int) -> dict:
    """Relax var → index of the layer it belongs to, for every activation (vars derived from
    constants only, such as reshaped biases, are left out). Mirrors how
    ``frontend.from_relax`` groups bindings into layers (a layer starts at conv2d / matmul /
    pooling / an add of two activations)."""
    act = {p: -1 for p in func.params}        # -1: the image
    count = 0
    for b in _bindings(func):
        v, e = b.var, b.value
        if isinstance(e, relax.Var):
            if e in act:
                act[v] = act[e]
            continue
        if not isinstance(e, relax.Call):
            raise PatchSplitError(f"binding {v.name}: {type(e).__name__} is not supported")
        op = _op_name(e)
        acts = [a for a in e.args if isinstance(a, relax.Var) and a in act]
        if not acts:
            continue
        if op in _NEW_LAYER_OPS or (op == "relax.add" and len(acts) == 2):
            act[v] = count
            count += 1
        elif op == "relax.reshape":             # flattening: part of the dense layer after it
            act[v] = count
        else:                                   # bias add, activation, reshape/flatten
            act[v] = act[acts[0]]
    if count != n_layers:
        raise PatchSplitError(f"the Relax function holds {count} layers but the layer graph "
                              f"{n_layers}; was the module changed after planning?")
    return act


class _BranchBuilder:
    """Builds the private function of one patch from the stage bindings of ``main``."""

    def __init__(self, plan: PatchPlan, func, act: dict, pad_mode: str):
        self.plan, self.func, self.act = plan, func, act
        self.pad_mode = pad_mode
        self.defs = {b.var: b.value for b in _bindings(func)}
        n = plan.split_index
        # -1: derived from the image alone (the input offset of the canonical module), which
        # each branch recomputes on its window
        self.stage = [b for b in _bindings(func) if b.var in act and -1 <= act[b.var] <= n]
        last: dict[int, relax.Var] = {}
        for b in self.stage:
            last[act[b.var]] = b.var
        self.last = {v: i for i, v in last.items()}
        last.pop(-1, None)
        self.split_var = last[n]
        self.layers = plan.graph.layers

    # -- helpers
    def _const(self, bb, e, memo):
        """Re-emit a constant-derived value inside the branch (weights stay constants)."""
        if not isinstance(e, relax.Var):
            return e
        if e not in memo:
            val = self.defs[e]
            if isinstance(val, relax.Call):
                val = relax.Call(val.op, [self._const(bb, a, memo) for a in val.args],
                                 val.attrs, val.ty_args)
            else:
                val = self._const(bb, val, memo)
            memo[e] = bb.emit(val, name_hint=e.name)
        return memo[e]

    @staticmethod
    def _crop(bb, x, box: Box, held: Box, name: str):
        if box == held:
            return x
        r = box.relative_to(held)
        return bb.emit(relax.op.strided_slice(x, axes=[2, 3], begin=[r.h0, r.w0],
                                              end=[r.h1, r.w1]), name_hint=name)

    def _padded(self, bb, x, pad, name):
        t, le, b, r = pad
        if self.pad_mode == "attr" or not any(pad):
            return x
        return bb.emit(relax.op.nn.pad(x, [0, 0, 0, 0, t, b, le, r]), name_hint=name)

    def _name(self, v, suffix: str) -> str:
        i = self.act[v]
        return self.layers[i].name if v in self.last else f"{self.layers[i].name}_{suffix}"

    # -- the branch
    def build(self, patch) -> relax.Function:
        g = self.plan.graph
        (img,) = self.func.params
        c_in = g.shapes[g.input][0]
        dtype = img.ty.dtype
        h, w = patch.window.hw
        win = relax.Var("window", relax.TensorType((1, c_in, h, w), dtype))
        attrs = {
            "quantmcu.patch": [patch.row, patch.col],
            "quantmcu.grid": list(self.plan.grid),
            "quantmcu.tile": patch.tile.to_list(),
            "quantmcu.window": patch.window.to_list(),
            "quantmcu.layers": [l.name for l in self.plan.stage_layers],
            "quantmcu.split_layer": self.plan.split_layer,
        }
        bb = relax.BlockBuilder()
        local = {img: (win, patch.window)}      # original var → (branch var, region held)
        memo: dict = {}
        with bb.function(patch.name, [win], attrs=attrs, private=True):
            with bb.dataflow():
                for b in self.stage:
                    local[b.var] = self._emit(bb, b, patch, local, memo)
                out, held = local[self.split_var]
                out = self._crop(bb, out, patch.tile, held, "tile")
                gv = bb.emit_output(out)
            bb.emit_func_output(gv)
        return bb.get()[patch.name]

    def _emit(self, bb, b, patch, local, memo):
        v, e = b.var, b.value
        if isinstance(e, relax.Var):
            return local[e]
        op = _op_name(e)
        if self.act[v] == -1:               # the image less its offset, on the window
            x, held = local[e.args[0]]
            args = [x] + [self._const(bb, a, memo) for a in e.args[1:]]
            return bb.emit(relax.Call(e.op, args, e.attrs, e.ty_args), name_hint=v.name), held
        layer = self.layers[self.act[v]]
        if op in ("relax.nn.conv2d", "relax.nn.avg_pool2d", "relax.nn.max_pool2d"):
            lp = patch.layer(layer.name)
            x, held = local[e.args[0]]
            x = self._crop(bb, x, lp.in_boxes[0], held, f"{layer.name}_in")
            # max pooling pads with -inf: always through its own padding attribute
            attr_pad = self.pad_mode == "attr" or op == "relax.nn.max_pool2d"
            if not attr_pad:
                x = self._padded(bb, x, lp.padding, f"{layer.name}_pad")
            pad = list(lp.padding) if attr_pad else [0, 0, 0, 0]
            a = e.attrs
            if op == "relax.nn.conv2d":
                call = relax.op.nn.conv2d(x, self._const(bb, e.args[1], memo), a.strides, pad,
                                          a.dilation, int(a.groups), a.data_layout,
                                          a.kernel_layout, a.out_layout, a.out_dtype)
            else:
                pool = relax.op.nn.avg_pool2d if op == "relax.nn.avg_pool2d" \
                    else relax.op.nn.max_pool2d
                call = pool(x, a.pool_size, a.strides, pad, a.dilation, bool(a.ceil_mode),
                            bool(a.count_include_pad), a.layout, a.out_layout)
            return bb.emit(call, name_hint=self._name(v, "conv")), lp.out_box
        if op == "relax.add" and all(a in local for a in e.args):
            lp = patch.layer(layer.name)
            xs = [self._crop(bb, local[a][0], box, local[a][1], f"{layer.name}_in{i}")
                  for i, (a, box) in enumerate(zip(e.args, lp.in_boxes))]
            return bb.emit(relax.op.add(*xs), name_hint=self._name(v, "add")), lp.out_box
        if op == "relax.add" or op in _ACT_OPS:
            held = None
            args = []
            for a in e.args:
                if isinstance(a, relax.Var) and a in local:
                    args.append(local[a][0])
                    held = local[a][1]
                else:
                    args.append(self._const(bb, a, memo))
            suffix = "bias" if op == "relax.add" else "act"
            return bb.emit(relax.Call(e.op, args, e.attrs, e.ty_args),
                           name_hint=self._name(v, suffix)), held
        raise PatchSplitError(f"op {op} (binding {v.name}, layer {layer.name}) cannot "
                              f"run per patch")


@relax.expr_functor.mutator
class _MainRewriter(relax.PyExprMutator):
    def __init__(self, mod, plan: PatchPlan, builder: _BranchBuilder):
        super().__init__(mod)
        self.plan, self.branches = plan, builder
        self.stage_vars = {b.var for b in builder.stage}

    def visit_var_binding_(self, binding):
        v = binding.var
        if v not in self.stage_vars:
            return super().visit_var_binding_(binding)
        if v != self.branches.split_var:
            return None                       # computed inside the branches
        img = self.visit_expr(self.branches.func.params[0])
        rows = []
        for row in self.plan.patches:
            tiles = []
            for p in row:
                gv = self.builder_.add_func(self.branches.build(p), p.name)
                w = p.window
                win = self.builder_.emit(relax.op.strided_slice(
                    img, axes=[2, 3], begin=[w.h0, w.w0], end=[w.h1, w.w1]),
                    name_hint=f"window_{p.row}_{p.col}")
                tiles.append(self.builder_.emit(relax.Call(gv, [win]),
                                                name_hint=f"tile_{p.row}_{p.col}"))
            rows.append(tiles[0] if len(tiles) == 1 else
                        self.builder_.emit(relax.op.concat(tiles, axis=3),
                                           name_hint=f"row_{row[0].row}"))
        out = rows[0] if len(rows) == 1 else self.builder_.emit(relax.op.concat(rows, axis=2),
                                                                name_hint="stage_out")
        self.set_var_remap(v, out)
        return None


def _resolve_plan(plan, mod, func: str) -> PatchPlan:
    graph = from_relax(mod, func)
    if isinstance(plan, PatchPlan):
        if [(l.name, graph.shapes[l.output]) for l in graph.layers] != \
                [(l.name, plan.graph.shapes[l.output]) for l in plan.graph.layers]:
            raise PatchSplitError("the patch plan was made for a different layer graph than "
                                  f"the one in {func}")
        return plan
    if isinstance(plan, Mapping):
        split = plan.get("split_layer", plan.get("split_index"))
        return analyze(graph, split, tuple(plan["grid"]))
    raise TypeError(f"PatchSplit needs a PatchPlan or a mapping with split_layer and grid, "
                    f"got {type(plan).__name__}")


@tvm.transform.module_pass(opt_level=0, name="PatchSplit")
class PatchSplit:
    """Rewrite the patch stage of ``func`` into per-patch branches (see module docstring).

    plan: a :class:`tvm_quantmcu.patch.PatchPlan` for this module's layer graph, or a mapping
    ``{"split_layer": "l12", "grid": [p, q]}`` (as printed by ``quantmcu plan --json``).
    pad_mode: "explicit" pads border patches with ``R.nn.pad`` and convolves with padding 0;
    "attr" puts the border padding in the conv/pool padding attribute instead.
    """

    def __init__(self, plan, pad_mode: str = "explicit", func: str = "main"):
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        self.plan, self.pad_mode, self.func = plan, pad_mode, func

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        plan = _resolve_plan(self.plan, mod, self.func)
        f = mod[self.func]
        branches = _BranchBuilder(plan, f, _map_layers(f, len(plan.graph.layers)),
                                  self.pad_mode)
        rw = _MainRewriter(mod, plan, branches)
        new_main = rw.visit_expr(f)
        new_main = relax.analysis.remove_all_unused(new_main)
        new_main = new_main.with_attr("quantmcu.split_layer", plan.split_layer)
        new_main = new_main.with_attr("quantmcu.grid", list(plan.grid))
        rw.builder_.update_func(mod.get_global_var(self.func), new_main)
        out = rw.builder_.get()
        # the unsplit function stays, public so that dead-code elimination keeps it: the
        # float layer graph later passes and the integer reference read
        out[LAYERS_FUNC] = layers_function(f)
        return out


def patch_functions(mod: tvm.IRModule) -> dict[tuple[int, int], str]:
    """(row, col) → name of the branch function of every patch in a PatchSplit module."""
    out = {}
    for gv, f in mod.functions.items():
        if isinstance(f, relax.Function) and f.attrs is not None and "quantmcu.patch" in f.attrs:
            r, c = (int(i) for i in f.attrs["quantmcu.patch"])
            out[(r, c)] = gv.name_hint
    return out


def branch_feature_maps(func: relax.Function) -> dict[str, relax.Var]:
    """Layer name → the variable that completes that layer in a branch function, in dataflow
    order (the first entry is the branch's first feature map)."""
    names = [str(n) for n in func.attrs["quantmcu.layers"]]
    found = {b.var.name: b.var for blk in func.body.blocks for b in blk.bindings}
    return {n: found[n] for n in names if n in found}
