"""Small helpers shared by the quantization passes: attribute names, binding walks, layer
grouping and variable substitution on the Relax modules that PatchSplit produces."""
from __future__ import annotations

from tvm import relax

from tvm_quantmcu.frontend import from_relax

from .patch_split import LAYERS_FUNC, layers_function  # noqa: F401  (shared with the passes)
from .patch_split import patch_functions as _patch_positions

# Function attributes written by AnnotateBits / VDPCRouting and read by the lowering.
ATTR_POLICY = "quantmcu.policy"
ATTR_COMPUTES = "quantmcu.computes"        # layer names whose ops this function holds
ATTR_QUANT = "quantmcu.quant"              # "8bit" | "low": which integer graph of the policy
ATTR_BITS = "quantmcu.bits"                # {tensor: bits} of the tensors this function makes
ATTR_BITS8 = "quantmcu.bits8"              # patch functions: the all-8-bit branch
ATTR_BITS_LOW = "quantmcu.bits_low"        # patch functions: the low-bit branch
ATTR_W_BITS = "quantmcu.w_bits"            # {layer: weight bits} below 8
ATTR_PARAMS = "quantmcu.param_tensors"     # graph tensor carried by each parameter
ATTR_VDPC = "quantmcu.vdpc"
ATTR_ROLE = "quantmcu.role"                # "patch" | "continuation" | "vdpc_check" | "main"
ATTR_ROUTING = "quantmcu.routing"          # {"map", "threshold_q", "threshold_q_lo"}
# main: the policy's ranges, VDPC classification map and threshold, plan and provenance (JSON);
# the widths are the functions' ATTR_BITS* / ATTR_W_BITS attributes
ATTR_QUANTIZATION = "quantmcu.quantization"

QUANT_8BIT, QUANT_LOW = "8bit", "low"
INPUT_TENSOR = "input"                     # the image tensor of frontend.from_relax graphs

# A layer starts at one of these ops (an add starts one when both operands are
# activations); bias adds, activations and flattening continue the current layer. This is
# the grouping of frontend.from_relax.
LAYER_START_OPS = ("relax.nn.conv2d", "relax.matmul", "relax.mean", "relax.nn.avg_pool2d",
                   "relax.nn.adaptive_avg_pool2d", "relax.nn.max_pool2d")
ACT_OPS = ("relax.clip", "relax.nn.relu", "relax.nn.relu6")


class QuantPassError(ValueError):
    """A module or policy the quantization passes cannot handle; the message says what."""


def op_name(call) -> str:
    return call.op.name if hasattr(call.op, "name") else str(call.op)


def bindings(func) -> list:
    return [b for blk in func.body.blocks for b in blk.bindings]


def all_bindings(func) -> list:
    """Every binding of a function, those inside If branches included (before the If)."""
    def flat(blocks):
        for blk in blocks:
            for b in blk.bindings:
                if isinstance(b.value, relax.If):
                    yield from flat(b.value.true_branch.blocks)
                    yield from flat(b.value.false_branch.blocks)
                yield b
    return list(flat(func.body.blocks))


def attr(func, key: str, default=None):
    if func.attrs is None or key not in func.attrs:
        return default
    return func.attrs[key]


def attrs_dict(func) -> dict:
    """A function's attributes as a mutable dict (to extend and pass to a new function)."""
    if func.attrs is None:
        return {}
    return {str(k): func.attrs[k] for k in func.attrs.keys()}


def str_list(v) -> list[str]:
    return [str(s) for s in v]


def int_map(v) -> dict[str, int]:
    return {str(k): int(x) for k, x in v.items()} if v is not None else {}


def layer_graph(mod, func: str = "main"):
    """The float layer graph of a module: read off the unsplit function PatchSplit keeps
    (``quantmcu_layers``), or off `func` when the module was not split."""
    name = LAYERS_FUNC if any(gv.name_hint == LAYERS_FUNC for gv in mod.functions) else func
    return from_relax(mod, name)


def _merge_bits(found: dict, bits: dict, where: str) -> None:
    for t, b in bits.items():
        if found.setdefault(t, (b, where))[0] != b:
            raise QuantPassError(f"{t} has {found[t][0]} bits in {found[t][1]} but {b} in "
                                 f"{where}: one width per feature map and branch")


def policy_of(mod, func: str = "main"):
    """The policy the annotated module `mod` carries: ranges, routing and plan from the
    attributes AnnotateBits wrote on `func`, widths from every function's attributes (so a
    pass that changes a width in the IR changes this policy too)."""
    import json

    from tvm_quantmcu.quant.policy import Policy
    main = mod[func]
    q = attr(main, ATTR_QUANTIZATION)
    if q is None:
        raise QuantPassError(f"{func} carries no {ATTR_QUANTIZATION}; run AnnotateBits first")
    d = json.loads(str(q))
    low, w_bits = {}, {}
    for gv, f in mod.functions.items():
        if not isinstance(f, relax.Function):
            continue
        name = gv.name_hint
        if attr(f, ATTR_BITS_LOW) is not None:                   # patch functions
            _merge_bits(low, int_map(f.attrs[ATTR_BITS_LOW]), name)
        elif attr(f, ATTR_QUANT) == QUANT_LOW and attr(f, ATTR_BITS) is not None:
            _merge_bits(low, int_map(f.attrs[ATTR_BITS]), name)  # main, low continuations
        _merge_bits(w_bits, int_map(attr(f, ATTR_W_BITS)), name)
    d["bits_low"] = {t: b for t, (b, _) in low.items() if b != 8}
    d["w_bits"] = {t: b for t, (b, _) in w_bits.items() if b != 8}
    return Policy.from_json(d)


def patch_functions(mod) -> dict[str, relax.Function]:
    """name → function of every patch branch of a PatchSplit module, row-major."""
    return {name: mod[name] for _, name in sorted(_patch_positions(mod).items())}


def ints(expr) -> list[int]:
    """Integers of a Relax tuple of PrimValues, a ShapeExpr or an attribute array."""
    if isinstance(expr, relax.Tuple):
        return [int(f.value) for f in expr.fields]
    if isinstance(expr, relax.ShapeExpr):
        return [int(v) for v in expr.values]
    return [int(v) for v in expr]


def shape_of(expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape)


def subst(expr, remap: dict):
    """`expr` with variables replaced by `remap` (the flat expressions PatchSplit emits:
    calls, tuples, tuple items, variables, constants)."""
    if isinstance(expr, relax.Var):
        return remap.get(expr, expr)
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [subst(a, remap) for a in expr.args], expr.attrs,
                          expr.ty_args)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([subst(f, remap) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(subst(expr.tuple_value, remap), expr.index)
    if isinstance(expr, relax.If):
        raise QuantPassError("nested If expressions are not supported here")
    return expr


def free_vars(expr) -> list:
    found = []
    relax.analysis.post_order_visit(
        expr, lambda e: found.append(e) if isinstance(e, relax.Var) else None)
    return found


class LayerWalker:
    """Groups the bindings of a function into layers the way frontend.from_relax does and
    names them from a list (the function's ``quantmcu.computes``). Values derived only from
    constants (reshaped biases, transposed dense weights) belong to no layer."""

    def __init__(self, func, names: list[str], where: str):
        self.func, self.names, self.where = func, list(names), where
        self.acts = set(func.params)
        self.layer_of: dict = {}       # var → layer name, for activation vars
        self.starts: dict = {}         # var → layer name, for the binding starting a layer
        count = 0
        for b in all_bindings(func):
            v, e = b.var, b.value
            deps = [a for a in free_vars(e) if a in self.acts]
            if not deps:
                continue
            self.acts.add(v)
            op = op_name(e) if isinstance(e, relax.Call) else ""
            if op in LAYER_START_OPS or (op == "relax.add" and len(
                    [a for a in e.args if a in self.acts]) == 2):
                if count >= len(self.names):
                    raise QuantPassError(
                        f"{where}: more layers than the {len(self.names)} named in "
                        f"{ATTR_COMPUTES} ({self.names}); was the module changed after "
                        "AnnotateBits?")
                self.starts[v] = self.layer_of[v] = self.names[count]
                count += 1
            else:
                src = [self.layer_of[a] for a in deps if a in self.layer_of]
                if src:
                    self.layer_of[v] = src[-1]
        if count != len(self.names):
            raise QuantPassError(f"{where}: {count} layers found but {ATTR_COMPUTES} names "
                                 f"{len(self.names)} ({self.names})")

    def is_act(self, expr) -> bool:
        return isinstance(expr, relax.Var) and expr in self.acts
