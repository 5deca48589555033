"""Device cost model (modelled kernel cost per spec, cached by source digest) and device Φ."""
import json

import pytest

from tvm_quantmcu import search
from tvm_quantmcu.codegen.program import build_program
from tvm_quantmcu.relax_build import lower
from tvm_quantmcu.search import devcost
from tvm_quantmcu.search.devcost import DeviceCost, KernelCost, NetworkSpecs
from tvm_quantmcu.topi import KernelSpec
from helpers import have, trained


@pytest.fixture(scope="module")
def ctx():
    if not trained("mbv2-fmnist"):
        pytest.skip("mbv2-fmnist has no trained checkpoint")
    return search.prepare("mbv2-fmnist", search.SearchParams(calibration_images=64,
                                                             entropy_images=16))


def _policy(ctx):
    pol, _ = search.quantmcu_policy(ctx, 0.0)       # low bits and 4-bit weights everywhere
    assert pol.bits_low and pol.w_bits
    return pol


def test_network_specs_are_the_generated_programs_kernels(ctx):
    pol = _policy(ctx)
    prog = build_program(lower(ctx.graph, pol, ctx.plan), "m")
    ns = NetworkSpecs(ctx.graph, ctx.plan)
    for c in prog.calls:
        bits = {} if c.branch == "8" else pol.bits_low
        got = ns.call(c.layer, bits, pol.w_bits)
        assert got.spec == c.kernel.spec, c.tag
        assert got.runs == (len(ctx.plan.all_patches()) if c.layer in ns.stage_names else 1)


class FakeDevice(DeviceCost):
    """Costs from a formula instead of QEMU: packed ≤ 4-bit weights with ≤ 4-bit inputs
    halve a conv2d, every other width costs as int8."""

    def __init__(self):
        super().__init__(progress=False)
        self.asked = []

    def costs(self, specs):
        out = {}
        for s in specs:
            self.asked.append(s)
            half = s.op == "conv2d" and s.w_bits <= 4 and s.in_bits <= 4
            out[s] = KernelCost(s.macs // (2 if half else 1) + 100, None)
        return out


def test_device_phi_chooses_activation_and_weight_widths_as_pairs(ctx):
    v = search.VDQS(ctx.graph, ctx.plan, ctx.cal, ctx.ranges8, ctx.cal_images[:16],
                    phi="device", device=FakeDevice())
    assert v.device.asked            # every candidate spec asked for before the search
    res = v.search(0.0)
    # only pairs pay: every low-bit map feeds a layer with packed weights, and those layers
    # read a low-bit map; depthwise inputs and outputs stay at 8 bits (no saving)
    assert res.bits and res.w_bits
    for layer, w in res.w_bits.items():
        assert w == 4 and res.bits.get(ctx.graph.layer(layer).inputs[0], 8) <= 4, layer
    for m in res.bits:
        consumers = ctx.graph.consumers(m)
        assert any(c.name in res.w_bits for c in consumers), m
    assert any(r["kind"] == "activation+weight" for r in res.table)
    assert v.search(1.0).bits == {}                 # only entropy counts: stay at 8 bits


def test_device_phi_searches_the_layer_wise_rest_when_asked(ctx):
    rest = {l.name for l in ctx.plan.rest_layers}
    samples = {}

    def samples_of(t):
        if t not in samples:
            samples[t] = ctx.samples_all(t)
        return samples[t]

    v = search.VDQS(ctx.graph, ctx.plan, ctx.cal, ctx.ranges8, ctx.cal_images[:16],
                    vdpc=False, phi="device", device=FakeDevice(), rest=True,
                    samples_of=samples_of)
    res = v.search(0.0)
    low_rest = {m for m in res.bits if ctx.graph.producer(m).name in rest}
    w_rest = {l for l in res.w_bits if l in rest}
    assert low_rest and w_rest
    # a pair pays only when a packed-weight pointwise layer reads the low-bit map
    for m in low_rest:
        assert res.bits[m] == 4 and any(c.name in res.w_bits for c in ctx.graph.consumers(m))
        assert m in res.ranges
    assert ctx.graph.output not in res.bits
    assert not {m for m in v.search(1.0).bits if ctx.graph.producer(m).name in rest}
    # the policy computes what the search chose, layer by layer after the stage
    pol = ctx.base("int8")
    pol.bits_low, pol.w_bits, pol.ranges_low = res.bits, res.w_bits, res.ranges
    r = search.evaluate_policy(ctx, pol, "val", 64, engine="sim")
    assert r["bitops_total"] < search.evaluate_policy(ctx, ctx.base("int8"), "val", 64,
                                                      engine="sim")["bitops_total"]
    # not searched without the flag, nor with VDPC
    v8 = search.VDQS(ctx.graph, ctx.plan, ctx.cal, ctx.ranges8, ctx.cal_images[:16],
                     vdpc=True, phi="device", device=FakeDevice(), rest=True,
                     samples_of=samples_of)
    assert not v8.rest


def test_fixed_stage_weight_width_is_kept_and_only_activations_are_searched(ctx):
    import dataclasses
    c = dataclasses.replace(ctx, params=dataclasses.replace(ctx.params, stage_w_bits=4),
                            _vdqs={})
    pol, _ = search.quantmcu_policy(c, 1.0, vdpc=False)
    weighted = [l.name for l in ctx.plan.stage_layers if l.weight is not None]
    assert pol.w_bits == {l: 4 for l in weighted} and pol.bits_low == {}
    assert not any(r.get("kind") == "weight" for r in pol.params["vdqs_table"])
    s8 = search.int8_bitops(ctx)[0]
    r = search.evaluate_policy(c, pol, "val", 32, engine="sim")
    assert r["bitops_patch_stage"] == pytest.approx(s8 / 2)


def test_device_phi_is_a_search_parameter(ctx):
    with pytest.raises(search.SearchError, match="unknown Φ"):
        search.prepare_graph(ctx.graph, ctx.cal_images, search.SearchParams(phi="macs"))
    assert search.SearchParams().to_json()["phi"] == "bitops"


@pytest.mark.skipif(not (have("arm-none-eabi-gcc") and have("qemu-system-arm")),
                    reason="needs the Arm toolchain and qemu-system-arm")
def test_kernel_costs_are_measured_once_and_invalidated_by_the_source(tmp_path, monkeypatch):
    spec = KernelSpec("conv2d", (4, 4, 8), 8, (1, 1))
    spec4 = KernelSpec("conv2d", (4, 4, 8), 8, (1, 1), in_bits=4, w_bits=4)
    d = DeviceCost(cache=tmp_path, progress=False)
    c = d.costs([spec, spec4, spec])
    assert d.measured == 2 and c[spec].instructions > 0
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2
    assert json.loads(files[0].read_text())["instructions"] > 0
    again = DeviceCost(cache=tmp_path, progress=False)
    assert again.costs([spec])[spec] == c[spec] and again.measured == 0
    # another kernel source (e.g. a faster kernel landed) is another key: measured again
    monkeypatch.setattr(devcost, "MEASURE_VERSION", devcost.MEASURE_VERSION + 1)
    fresh = DeviceCost(cache=tmp_path, progress=False)
    # the measuring program holds every kernel of its batch, which moves this one's count by a
    # few instructions (3,732-3,734 here, alone or with spec4): the same kernel, not the same bytes
    assert fresh.costs([spec])[spec].instructions == pytest.approx(c[spec].instructions,
                                                                   rel=0.01)
    assert fresh.measured == 1


def test_device_search_without_vdpc_keeps_the_widths_within_the_budget(ctx):
    from tvm_quantmcu.patch import analyze
    # a plan whose peak is in the patch stage (at 2x2 after l6 the rest sets it)
    c = search.api.with_plan(ctx, analyze(ctx.graph, 12, (2, 3)))
    plan = c.plan
    peak8 = analyze(ctx.graph, plan.split_index, plan.grid).peak_sram_patch_bytes
    low = {m: 2 for m in (l.output for l in plan.stage_layers) if m != plan.stage_output}
    floor = analyze(ctx.graph, plan.split_index, plan.grid, low).peak_sram_patch_bytes
    assert floor < peak8
    budget = (floor + peak8) // 2
    v = search.VDQS(ctx.graph, plan, c.cal, ctx.ranges8, ctx.cal_images[:16], vdpc=False,
                    phi="device", device=FakeDevice(), budget_bytes=budget)
    res = v.search(1.0)            # entropy alone would keep 8 bits: the budget forbids it
    assert res.bits
    assert analyze(ctx.graph, plan.split_index, plan.grid,
                   res.bits).peak_sram_patch_bytes <= budget
    assert any(r.get("fits") is False for r in res.table)


def test_memory_aware_plans_fit_only_with_low_bit_maps(ctx):
    from tvm_quantmcu.patch import analyze
    c = search.api.with_plan(ctx, ctx.plan)
    assert c.plan is ctx.plan and c.params is ctx.params
    plans = search.api.memory_aware_plans(ctx)
    assert 0 < len(plans) <= ctx.params.extra_plans
    budget = ctx.params.sram_kb * 1024
    for p in plans:
        assert (p.split_index, p.grid) != (ctx.plan.split_index, ctx.plan.grid)
        bits = {l.output: ctx.params.plan_bits for l in p.stage_layers
                if l.output != p.stage_output}
        assert analyze(ctx.graph, p.split_index, p.grid, bits).peak_sram_patch_bytes <= budget


@pytest.mark.skipif(not (have("arm-none-eabi-gcc") and have("qemu-system-arm")),
                    reason="needs the Arm toolchain and qemu-system-arm")
def test_speedup_over_int8_patches_is_one_for_int8_itself(ctx):
    pol = ctx.base("int8")
    pol.params["sram_kb"] = 32
    sp = search.api.speedup_vs_int8(ctx.graph, pol, 0.0, DeviceCost(progress=False))
    assert sp["int8_fits"] and sp["int8_plan"] == [ctx.plan.split_layer, list(ctx.plan.grid)]
    assert sp["speedup_cycles"] == 1.0 and sp["speedup_instructions"] == 1.0
    assert sp["cycles"] > sp["instructions"] > 0


def test_device_quantmcu_keeps_a_policy_within_a_budget_below_the_int8_plan(ctx, monkeypatch):
    import dataclasses
    peak8 = search.api.peak_sram(ctx, ctx.base("int8"))
    kb = (peak8 - 1) // 1024           # VDPC's 8-bit branch on the int8 plan cannot fit
    c = dataclasses.replace(ctx, params=dataclasses.replace(ctx.params, sram_kb=kb,
                                                            extra_plans=1), _vdqs={})
    tried = []

    def auto_lambda(cc, bar=None, vdpc=True):
        tried.append(vdpc)
        # the int8 plan looks the fastest: it would be chosen if its policy fitted
        return 0.0, [{"lambda": 0.0, "top1": 0.9,
                      "device_cycles": 1.0 if cc.plan is c.plan else 2.0}], 0.9
    monkeypatch.setattr(search.api, "auto_lambda", auto_lambda)
    pol, info = search.api.device_quantmcu(c)
    assert tried and True not in tried
    assert search.api.peak_sram(c, pol) <= kb * 1024
    assert all("fits" in t for t in info["candidates"])
