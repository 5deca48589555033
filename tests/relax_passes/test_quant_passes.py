"""AnnotateBits → VDPCRouting → LowerToQuantMCUKernels: the lowered module on the Relax VM
equals the golden integer simulator (logits and routing decisions) bit-exactly."""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

from helpers import VDPC_POLICY, requires_dataset, trained, widen_pass, zoo_policy
from relax_passes import (AnnotateBits, LowerToQuantMCUKernels, PatchSplit,
                          VDPCRouting, layer_graph, patch_functions, policy_of,
                          vdpc_thresholds)
from tvm_quantmcu import data, frontend, pipeline, quant
from tvm_quantmcu.graph import run_float
from tvm_quantmcu.patch import analyze
from tvm_quantmcu.relax_build import build, compile_vm, passes
from tvm_quantmcu.search import Policy, Simulator

PASS_NAMES = ["PatchSplit", "AnnotateBits", "VDPCRouting", "LowerToQuantMCUKernels"]
# Unoptimised LLVM: the same integer results, compiled 2-3x faster than at -O2.
FAST_TARGET = {"kind": "llvm", "opt-level": 0}


@functools.lru_cache(maxsize=None)
def policy(model: str, name: str) -> Policy:
    """The shipped policy of a zoo model (or the test VDPC policy, helpers.VDPC_POLICY)."""
    if not trained(model):
        pytest.skip(f"{model} has no trained checkpoint")
    return zoo_policy(model, name)


def quantized_test_images(n: int, start: int = 0) -> np.ndarray:
    return quant.quantize_input(data.load("test").images(64, start, start + n))


@tvm.instrument.pass_instrument
class RecordPasses:
    def __init__(self):
        self.names = []

    def run_before_pass(self, mod, info):
        self.names.append(info.name)


def check_against_simulator(mod, pol: Policy, x_q: np.ndarray):
    """(logits, flags) of the VM after asserting they equal Simulator.run's."""
    got, got_flags = compile_vm(mod, FAST_TARGET).run(x_q)
    want, want_flags = Simulator(pipeline.load(pol.model).graph, pol).run(x_q)
    assert got.shape == want.shape and got_flags.shape == want_flags.shape
    bad = np.flatnonzero((got != want).any(axis=1))
    assert bad.size == 0, f"{bad.size}/{len(x_q)} images differ in logits, first {bad[:5]}"
    assert (got_flags == want_flags).all(), \
        f"{int((got_flags != want_flags).sum())} routing decisions differ"
    return got, got_flags


@requires_dataset
@pytest.mark.parametrize("name", ["int8", "quantmcu", VDPC_POLICY])
def test_lowered_mbv2_equals_simulator_on_20_images(name):
    pol = policy("mbv2-fmnist", name)
    rec = RecordPasses()
    with tvm.transform.PassContext(instruments=[rec]):
        mod = build("mbv2-fmnist", None, pol)
    assert [n for n in rec.names if n in PASS_NAMES] == PASS_NAMES
    text = mod["main"].script() + "".join(mod[n].script() for n in patch_functions(mod).values())
    assert "R.nn.conv2d" not in text and "R.call_tir" in text
    x_q = quantized_test_images(20)
    _, flags = check_against_simulator(mod, pol, x_q)
    p, q = pol.grid
    assert flags.shape == (20, p * q)
    if pol.vdpc:   # both continuations ran on these images
        assert "if " in text and flags.any() and not flags.all()
    else:
        assert "if " not in text and not flags.any()


def test_vdpc_thresholds_are_the_simulators():
    pol = policy("mbv2-fmnist", VDPC_POLICY)
    sim = Simulator(pipeline.load("mbv2-fmnist").graph, pol)
    for t in (pol.threshold, 0.01, 1e6):
        p = Policy.from_json(dict(pol.to_json(), threshold=t))
        s = Simulator(sim.graph, p, sim.plan)
        assert vdpc_thresholds(p) == (s.threshold_q, s.threshold_q_lo)


def test_annotations_land_where_the_policy_says():
    pol = policy("mbv2-fmnist", VDPC_POLICY)
    imp = pipeline.load("mbv2-fmnist")
    plan = analyze(imp.graph, pol.split_index, pol.grid)
    annotated = tvm.transform.Sequential([PatchSplit(plan), AnnotateBits(pol)])(imp.relax_mod)
    stage = [l.name for l in plan.stage_layers]
    for name in patch_functions(annotated).values():
        f = annotated[name]
        low = {str(k): int(v) for k, v in f.attrs["quantmcu.bits_low"].items()}
        assert low == {t: pol.act_bits(t) for t in stage}
        assert set(int(v) for v in f.attrs["quantmcu.bits8"].values()) == {8}
    main = annotated["main"]
    assert [str(n) for n in main.attrs["quantmcu.computes"]] == \
        [l.name for l in plan.rest_layers]
    assert {str(k): int(v) for k, v in main.attrs["quantmcu.bits"].items()} == \
        {l.name: pol.act_bits(l.output) for l in plan.rest_layers}
    routed = VDPCRouting()(annotated)
    f = routed["patch_0_0"]
    assert [str(x) for x in f.attrs["quantmcu.computes"]] == \
        stage[:stage.index(pol.classification_map) + 1]
    assert "if outlier" in f.script()
    assert sorted(patch_functions(routed)) == sorted(patch_functions(annotated))


# ---------------------------------------------------------------------------------------------
# A small residual net: the check after l1, while the skip l0 crosses it


class _Residual(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 4, 3, 2, 1)
        self.pw = torch.nn.Conv2d(4, 6, 1)
        self.dw = torch.nn.Conv2d(6, 6, 3, 1, 1, groups=6)
        self.proj = torch.nn.Conv2d(6, 4, 1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        a = torch.nn.functional.relu6(self.stem(x))
        b = torch.relu(self.pw(a))
        return self.fc((a + self.proj(self.dw(b))).mean(dim=(2, 3)))


@functools.lru_cache(maxsize=None)
def residual_case():
    """(Imported, VDPC policy, quantized images): stage l0..l4 (the add), check after l1,
    low-bit branch at 4/2 bits; the threshold is the first that routes some patches each way."""
    torch.manual_seed(1)
    mod, g = frontend.import_model(_Residual().eval(), (1, 16, 16))
    imp = pipeline.Imported("residual", None, mod, g, 16)
    x = np.random.default_rng(1).random((12, 1, 16, 16)).astype(np.float32)
    env = run_float(g, x, keep=True)
    ranges = {t: (float(v.min()), float(v.max())) for t, v in env.items()}
    bits = {"l0": 4, "l1": 4, "l2": 2, "l3": 4}
    top = max(abs(r) for r in ranges["l1"])
    x_q = quant.quantize_input(x)
    for frac in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        pol = Policy("quantmcu", "residual", "", 4, (2, 2), ranges, vdpc=True,
                     classification_map="l1", threshold=frac * top, bits_low=bits,
                     ranges_low={t: ranges[t] for t in bits})
        flags = Simulator(g, pol).run(x_q)[1]
        if flags.any() and not flags.all():
            return imp, pol, x_q
    pytest.fail("no threshold routes patches both ways")


@pytest.mark.parametrize("pad_mode", ["explicit", pytest.param("attr", marks=pytest.mark.slow)])
def test_residual_net_lowered_equals_simulator_with_both_maps_requantized(pad_mode):
    imp, pol, x_q = residual_case()
    mod = build(imp, None, pol, pad_mode=pad_mode)
    low = mod["patch_1_1_low"]
    assert [str(t) for t in low.attrs["quantmcu.param_tensors"]] == ["l0", "l1"]
    assert mod["patch_1_1"].script().count("qmcu_requant") == 2
    got, want = compile_vm(mod, FAST_TARGET).run(x_q), Simulator(imp.graph, pol).run(x_q)
    assert (got[0] == want[0]).all() and (got[1] == want[1]).all()


def test_a_width_changed_in_the_ir_changes_the_lowered_module_and_its_reference():
    imp, pol, x_q = residual_case()
    plan = analyze(imp.graph, pol.split_index, pol.grid)
    annotated = tvm.transform.Sequential([PatchSplit(plan), AnnotateBits(pol)])(imp.relax_mod)
    assert policy_of(annotated).bits_low == pol.bits_low      # what AnnotateBits wrote
    changed = widen_pass("l2")(annotated)
    assert pol.bits_low["l2"] == 2 and "l2" not in policy_of(changed).bits_low
    lower = tvm.transform.Sequential([VDPCRouting(), LowerToQuantMCUKernels()])
    before = compile_vm(lower(annotated), FAST_TARGET).run(x_q)
    after = compile_vm(lower(changed), FAST_TARGET).run(x_q)
    # the integer reference built from the changed module alone
    ref = Simulator(layer_graph(changed), policy_of(changed)).run(x_q)
    assert (after[0] == ref[0]).all() and (after[1] == ref[1]).all()
    assert not (after[0] == before[0]).all()        # the width reached the kernels


def test_routed_float_module_computes_the_original_logits():
    """Both continuations hold the same float ops, so routing changes no float value."""
    imp, pol, x_q = residual_case()
    plan = analyze(imp.graph, pol.split_index, pol.grid)
    routed = tvm.transform.Sequential([PatchSplit(plan), AnnotateBits(pol),
                                       VDPCRouting()])(imp.relax_mod)
    ex = tvm.compile(routed, target=tvm.target.Target(FAST_TARGET))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    ref = frontend.build_vm(imp.relax_mod)
    x = np.random.default_rng(1).random((4, 1, 1, 16, 16)).astype(np.float32)
    for xi in x:
        logits, flags = vm["main"](tvm.runtime.tensor(xi))
        np.testing.assert_allclose(logits.numpy(), ref(xi), rtol=0, atol=1e-5)
        assert flags.numpy().shape == (4,) and flags.numpy().dtype == bool


def test_pass_order_is_enforced():
    pol = policy("mbv2-fmnist", VDPC_POLICY)
    imp = pipeline.load("mbv2-fmnist")
    split = PatchSplit(analyze(imp.graph, pol.split_index, pol.grid))(imp.relax_mod)
    with pytest.raises(Exception, match="run AnnotateBits before VDPCRouting"):
        VDPCRouting()(split)
    with pytest.raises(Exception, match="run VDPCRouting before lowering"):
        LowerToQuantMCUKernels()(AnnotateBits(pol)(split))
    other = analyze(imp.graph, pol.split_index - 1, (2, 2))
    with pytest.raises(Exception, match="policy .* is for split after"):
        AnnotateBits(pol)(PatchSplit(other)(imp.relax_mod))


# ---------------------------------------------------------------------------------------------
# Layers whose op has no integer kernel


class _Tiny(torch.nn.Module):
    def __init__(self, dilation: int = 1):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 4, 3, 1, 1)
        self.dil = torch.nn.Conv2d(4, 4, 3, 1, dilation, dilation=dilation)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        y = torch.relu(self.dil(torch.relu(self.stem(x))))
        return self.fc(y.mean(dim=(2, 3)))


def _tiny_policy(graph, split_index, grid) -> Policy:
    ranges = {t: (-2.0, 2.0) for t in graph.shapes}
    return Policy("int8", "tiny", "", split_index, grid, ranges)


def test_unsupported_kernel_names_op_and_layer():
    torch.manual_seed(0)
    mod, g = frontend.import_model(_Tiny(dilation=2).eval(), (1, 12, 12))
    pol = _tiny_policy(g, 0, (2, 2))
    seq = tvm.transform.Sequential(passes(pipeline.Imported("tiny", None, mod, g, 12),
                                          analyze(g, 0, (2, 2)), pol))
    with pytest.raises(Exception, match=r"op relax.nn.conv2d .*layer l1.*dilation"):
        seq(mod)


@relax.expr_functor.mutator
class _ReluToSigmoid(relax.PyExprMutator):
    """Replace the activations of main by a sigmoid (no kernel computes one)."""

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if getattr(call.op, "name", "") == "relax.nn.relu":
            return relax.op.sigmoid(call.args[0])
        return call


def test_unknown_op_names_op_and_layer():
    torch.manual_seed(0)
    mod, g = frontend.import_model(_Tiny().eval(), (1, 12, 12))
    pol = _tiny_policy(g, 0, (2, 2))
    annotated = AnnotateBits(pol)(PatchSplit(analyze(g, 0, (2, 2)))(mod))
    annotated["main"] = _ReluToSigmoid(annotated).visit_expr(annotated["main"])
    assert "R.sigmoid" in annotated["main"].script()
    with pytest.raises(Exception, match=r"op relax.sigmoid \(binding .*layer l1"):
        LowerToQuantMCUKernels()(VDPCRouting()(annotated))


# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@requires_dataset
@pytest.mark.parametrize("model", ["mbv2-fmnist", "mcunet-fmnist"])
@pytest.mark.parametrize("name", ["int8", "quantmcu"])
def test_lowered_equals_simulator_on_500_images(model, name):
    pol = policy(model, name)
    _, flags = check_against_simulator(build(model, None, pol), pol, quantized_test_images(500))
    assert flags.shape == (500, pol.grid[0] * pol.grid[1])


@pytest.mark.slow
@requires_dataset
def test_routing_with_a_later_classification_map_and_a_residual_crossing_it():
    """mcunet: stage up to the residual add l10, the check after l7, so the continuations
    receive two maps (l7 and the skip l6), both requantized for the low-bit branch."""
    pol = policy("mcunet-fmnist", "int8")
    d = pol.to_json()
    lo, hi = d["ranges8"]["l7"]
    d.update(name="quantmcu", split_index=10, grid=[1, 2], vdpc=True, classification_map="l7",
             threshold=0.95 * max(abs(lo), abs(hi)), bits_low={"l6": 4, "l7": 4, "l8": 2, "l9": 4})
    d["ranges_low"] = {t: d["ranges8"][t] for t in d["bits_low"]}
    custom = Policy.from_json(json.loads(json.dumps(d)))
    mod = build("mcunet-fmnist", None, custom)
    low = mod["patch_0_1_low"]
    assert [str(t) for t in low.attrs["quantmcu.param_tensors"]] == ["l6", "l7"]
    _, flags = check_against_simulator(mod, custom, quantized_test_images(100))
    assert flags.any() and not flags.all()
