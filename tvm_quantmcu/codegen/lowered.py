"""Read a lowered Relax module: the kernel calls, patch branches and routing it holds.

The C generator's only input is the module ``relax_passes.LowerToQuantMCUKernels`` produced.
This walker reads, without any knowledge of the layer graph or the policy object:

* ``main``: its input (the quantized image), the patch functions it calls (the patch loop),
  the whole-tensor layers after them, the output tensor and its bits;
* each patch function (``quantmcu.role`` = ``patch``, row-major by ``quantmcu.patch``): its
  tile and input window, the layer kernels it calls and, when it routes (VDPC), the outlier
  check, the ``relax.If`` and the two continuation functions with the requantizations of the
  maps handed to the low-bit one;
* every ``call_tir``: the kernel's :class:`KernelSpec` and input window from the TIR
  function's attributes, its parameters from the call's constants, its input tensors from the
  dataflow. Layer names come from each function's ``quantmcu.computes`` (in call order),
  tensor names of parameters from ``quantmcu.param_tensors``; a layer's output tensor is named
  after the layer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from relax_passes.int_kernels import (ATTR_CHECK, ATTR_REQUANT, ATTR_SPEC, ATTR_WINDOW,
                                      spec_of_attr)

from ..patch.geometry import Box
from ..topi.compute import KernelSpec
from ..topi.params import KernelParams

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


class LoweredModuleError(ValueError):
    """The module is not one LowerToQuantMCUKernels produced (names what is missing)."""


@dataclass
class LayerCall:
    """One call of a layer kernel."""
    layer: str
    spec: KernelSpec
    window: tuple[int, int, int, int]      # in_h, in_w, pad_t, pad_l of this call
    inputs: list[str]                      # input tensors in argument order
    params: KernelParams


@dataclass
class RequantCall:
    """A map re-expressed in the low-bit branch's quantization."""
    tensor: str
    hwc: tuple[int, int, int]
    src_bits: int
    dst_bits: int
    mult: int
    shift: int
    zp_src: int
    zp_dst: int


@dataclass
class OutlierCheck:
    tensor: str
    hwc: tuple[int, int, int]
    hi: int                                # outlier when a value >= hi or <= lo
    lo: int


@dataclass
class PatchBranch:
    """One patch function: without routing all its layers are in `low`."""
    row: int
    col: int
    tile: Box
    window: Box
    head: list[LayerCall] = field(default_factory=list)    # before the check (8-bit)
    check: OutlierCheck | None = None
    branch8: list[LayerCall] = field(default_factory=list)
    requants: list[RequantCall] = field(default_factory=list)
    low: list[LayerCall] = field(default_factory=list)

    @property
    def calls(self) -> list[LayerCall]:
        return self.head + self.branch8 + self.low


@dataclass
class LoweredModel:
    model: str
    policy: str
    input_tensor: str
    input_hwc: tuple[int, int, int]
    output_tensor: str
    output_bits: int
    output_channels: int
    split_layer: str | None
    grid: tuple[int, int] | None
    patches: list[PatchBranch]             # row-major; empty without a patch stage
    rest: list[LayerCall]
    predicted_peak: int
    target: str                            # what the kernels were lowered for (topi.TARGETS)

    @property
    def stage_output(self) -> str | None:
        return self.patches[0].low[-1].layer if self.patches else None


def _attr(func, key: str, default=None):
    if func.attrs is None or key not in func.attrs:
        return default
    return func.attrs[key]


def _need(func, key: str, where: str):
    v = _attr(func, key)
    if v is None:
        raise LoweredModuleError(f"{where} has no {key} attribute: generate C from a module "
                                 "lowered by relax_passes.LowerToQuantMCUKernels")
    return v


def _const(e) -> np.ndarray:
    if not isinstance(e, Constant):
        raise LoweredModuleError(f"kernel argument {e} is not a constant")
    return e.value.numpy()


def _ints(v) -> list[int]:
    return [int(x) for x in v]


class _FunctionWalk:
    """The kernel calls of one function; `tensors` maps Relax vars to tensor names."""

    def __init__(self, mod, name: str, outer_tensors: dict | None = None):
        """A function of `mod`, or (outer_tensors given) an If branch inside function
        `name`, which has no layers of its own."""
        self.mod, self.name = mod, name
        if outer_tensors is None:
            self.func = mod[name]
            self.layers = [str(s) for s in _need(self.func, "quantmcu.computes", name)]
            params = [str(s) for s in _need(self.func, "quantmcu.param_tensors", name)]
            self.tensors: dict = dict(zip(self.func.params, params))
        else:
            self.func, self.layers, self.tensors = None, [], outer_tensors
        self.calls: list[LayerCall] = []
        self.requants: list[RequantCall] = []
        self.check: OutlierCheck | None = None
        self.callees: list[_FunctionWalk] = []            # the functions it calls
        self.branches = None                               # (true walk, false walk) of an If

    def run(self) -> "_FunctionWalk":
        for blk in self.func.body.blocks:
            for b in blk.bindings:
                self.binding(b.var, b.value)
        if len(self.calls) != len(self.layers):
            raise LoweredModuleError(f"{self.name}: {len(self.calls)} layer kernels but "
                                     f"quantmcu.computes names {len(self.layers)}")
        self.result = self.tensor(self.func.body.body)
        return self

    def tensor(self, e):
        """Tensor name of a var (a tuple of names for tuples; None for routing flags)."""
        if isinstance(e, relax.Var):
            return self.tensors.get(e)
        if isinstance(e, relax.Tuple):
            return tuple(self.tensor(f) for f in e.fields)
        return None

    def binding(self, v, e):
        if isinstance(e, relax.Var):
            self.tensors[v] = self.tensors.get(e)
        elif isinstance(e, relax.TupleGetItem):
            t = self.tensors.get(e.tuple_value)
            self.tensors[v] = t[e.index] if isinstance(t, tuple) else None
        elif isinstance(e, relax.Tuple):
            self.tensors[v] = tuple(self.tensor(f) for f in e.fields)
        elif isinstance(e, relax.If):
            self.branches = tuple(self.branch(s) for s in (e.true_branch, e.false_branch))
            self.tensors[v] = self.tensor(e.true_branch.body)
        elif isinstance(e, relax.Call) and e.op == _CALL_TIR:
            self.call_tir(v, e)
        elif isinstance(e, relax.Call) and isinstance(e.op, relax.GlobalVar):
            callee = _FunctionWalk(self.mod, e.op.name_hint).run()
            self.callees.append(callee)
            self.tensors[v] = callee.result
        elif isinstance(e, relax.Call):
            # data movement (window crops, tile concatenation, reshapes): the same tensor
            src = [self.tensor(a) for a in e.args if isinstance(a, relax.Var)]
            if not src and e.args and isinstance(e.args[0], relax.Tuple):
                src = [self.tensor(f) for f in e.args[0].fields]
            self.tensors[v] = src[0] if src else None
        else:
            raise LoweredModuleError(f"{self.name}: binding {v.name_hint} "
                                     f"({type(e).__name__}) is not supported")

    def branch(self, seq) -> "_FunctionWalk":
        """The calls of one If branch (a continuation call, after requantizations)."""
        walk = _FunctionWalk(self.mod, self.name, self.tensors)
        for blk in seq.blocks:
            for b in blk.bindings:
                walk.binding(b.var, b.value)
        return walk

    def call_tir(self, v, e):
        gv, args = e.args[0], list(e.args[1].fields)
        prim = self.mod[gv]
        inputs = [a for a in args if not isinstance(a, Constant)]
        consts = [_const(a) for a in args if isinstance(a, Constant)]
        names = [self.tensor(a) for a in inputs]
        if _attr(prim, ATTR_SPEC) is not None:
            i = len(self.calls)
            if i >= len(self.layers):
                raise LoweredModuleError(f"{self.name}: more layer kernels than "
                                         "quantmcu.computes names")
            spec = spec_of_attr(prim.attrs[ATTR_SPEC])
            if spec.op == "add":            # the second input takes the weights' slot
                consts = [np.zeros(1, np.int8)] + consts
            params = KernelParams(*consts)
            self.calls.append(LayerCall(self.layers[i], spec,
                                        tuple(_ints(prim.attrs[ATTR_WINDOW])), names, params))
            self.tensors[v] = self.layers[i]
        elif _attr(prim, ATTR_REQUANT) is not None:
            h, w, c, sb, db = _ints(prim.attrs[ATTR_REQUANT])
            mult, shift, qp = consts
            self.requants.append(RequantCall(names[0], (h, w, c), sb, db, int(mult[0]),
                                             int(shift[0]), int(qp[0]), int(qp[1])))
            self.tensors[v] = names[0]
        elif _attr(prim, ATTR_CHECK) is not None:
            thr = consts[0]
            self.check = OutlierCheck(names[0], tuple(_ints(prim.attrs[ATTR_CHECK])),
                                      int(thr[0]), int(thr[1]))
            self.tensors[v] = None
        else:
            raise LoweredModuleError(f"{self.name}: call_tir of {gv.name_hint}, which is not "
                                     "a QuantMCU kernel")


def _continuation(mod, walk: _FunctionWalk) -> tuple[list[LayerCall], _FunctionWalk]:
    if len(walk.callees) != 1:
        raise LoweredModuleError(f"{walk.name}: an If branch must call one continuation")
    return walk.callees[0].calls, walk


def _patch(mod, walk: _FunctionWalk) -> PatchBranch:
    name, f = walk.name, walk.func
    r, c = _ints(_need(f, "quantmcu.patch", name))
    p = PatchBranch(r, c, Box(*_ints(_need(f, "quantmcu.tile", name))),
                    Box(*_ints(_need(f, "quantmcu.window", name))))
    if walk.branches is None:
        if walk.callees or walk.requants or walk.check:
            raise LoweredModuleError(f"{name} calls functions, requantizes or checks for "
                                     "outliers but does not route")
        p.low = walk.calls
        return p
    if walk.check is None:
        raise LoweredModuleError(f"{name} branches without an outlier check")
    p.head, p.check = walk.calls, walk.check
    p.branch8, t = _continuation(mod, walk.branches[0])
    p.low, f_walk = _continuation(mod, walk.branches[1])
    if t.requants:
        raise LoweredModuleError(f"{name}: the 8-bit branch requantizes")
    p.requants = f_walk.requants
    return p


def read_lowered(mod, func: str = "main") -> LoweredModel:
    """The :class:`LoweredModel` of a module LowerToQuantMCUKernels produced."""
    if func not in [gv.name_hint for gv in mod.functions]:
        raise LoweredModuleError(f"the module has no function {func!r}")
    main = mod[func]
    q = json.loads(str(_need(main, "quantmcu.quantization", func)))
    walk = _FunctionWalk(mod, func).run()
    if walk.requants or walk.check or walk.branches:
        raise LoweredModuleError(f"{func}: requantizations, outlier checks and branches are "
                                 "supported inside patch functions only")
    for callee in walk.callees:
        if str(_attr(callee.func, "quantmcu.role", "")) != "patch":
            raise LoweredModuleError(f"{func} calls {callee.name}, which is not a patch "
                                     "function")
    patches = sorted((_patch(mod, w) for w in walk.callees), key=lambda p: (p.row, p.col))
    split = _attr(main, "quantmcu.split_layer")
    grid = _attr(main, "quantmcu.grid")
    if patches and (split is None or grid is None):
        raise LoweredModuleError(f"{func} calls patch functions but has no split layer/grid")
    (h, w, c) = (int(d) for d in main.params[0].ty.shape)
    return LoweredModel(
        model=str(q.get("model", "")), policy=str(q.get("name", "")),
        input_tensor=str(_need(main, "quantmcu.param_tensors", func)[0]), input_hwc=(h, w, c),
        output_tensor=str(_need(main, "quantmcu.output_tensor", func)),
        output_bits=int(_need(main, "quantmcu.output_bits", func)),
        output_channels=int(_need(main, "quantmcu.output_channels", func)),
        split_layer=None if split is None else str(split),
        grid=None if grid is None else tuple(_ints(grid)),
        patches=patches, rest=walk.calls,
        predicted_peak=int(_need(main, "quantmcu.predicted_peak_sram_bytes", func)),
        target=str(_need(main, "quantmcu.target", func)))
