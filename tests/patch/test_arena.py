"""The planner's peak SRAM is the firmware's arena: for plans of both Fashion-MNIST models,
int8 and QuantMCU (with and without VDPC routing), the planner's figure (from the layer graph
and the widths) equals the arena the C generator plans from the lowered module."""
import dataclasses

import pytest

from tvm_quantmcu import pipeline
from tvm_quantmcu.codegen import build_program
from tvm_quantmcu.models.policies import load_policy
from tvm_quantmcu.patch import analyze, policy_peak, split_candidates
from tvm_quantmcu.patch.arena import Buffer, check_arena, lower_bound, plan_arena
from tvm_quantmcu.relax_build import lower

# (split layer, grid); None: layer by layer. mbv2-fmnist's first two are the plans whose
# firmware arena the planner once underestimated (20,048 B and 31,984 B).
PLANS = {
    "mbv2-fmnist": [("l12", (4, 7)), ("l9", (2, 3)), ("l6", (2, 2)), ("l12", (3, 4)),
                    ("l5", (3, 2)), None],
    "mcunet-fmnist": [("l10", (8, 8)), ("l6", (1, 3)), ("l6", (3, 3)), ("l12", (2, 4)), None],
}
KNOWN = {("mbv2-fmnist", "l12", (4, 7)): 20_048, ("mbv2-fmnist", "l9", (2, 3)): 31_984}


def _variants(model):
    q = load_policy(model, "quantmcu")
    return {"int8": load_policy(model, "int8"), "quantmcu": q,
            "quantmcu-no-vdpc": dataclasses.replace(q, vdpc=False)}


@pytest.mark.parametrize("model", sorted(PLANS))
def test_planner_peak_is_firmware_arena(model):
    g = pipeline.load(model).graph
    names = [l.name for l in g.layers]
    valid = {names[i] for i in split_candidates(g)}
    for name, pol0 in _variants(model).items():
        for plan in PLANS[model]:
            if plan is None:
                pol = dataclasses.replace(pol0, split_index=None, grid=None)
            else:
                assert plan[0] in valid, f"{model}: no split after {plan[0]}"
                pol = dataclasses.replace(pol0, split_index=names.index(plan[0]), grid=plan[1])
            prog = build_program(lower(g, pol), model, "host", compile_kernels=False)
            check_arena(list(prog.buffers.values()))
            assert policy_peak(g, pol) == prog.predicted_peak == prog.arena_bytes, \
                (model, name, plan, policy_peak(g, pol), prog.arena_bytes)
            if plan is not None and not pol.vdpc:
                bits = {t: pol.act_bits(t) for t in g.shapes}
                assert analyze(g, names.index(plan[0]), plan[1], bits) \
                    .peak_sram_patch_bytes == prog.arena_bytes
            if plan is not None and (model, *plan) in KNOWN and name == "int8":
                assert prog.arena_bytes == KNOWN[(model, *plan)]


def test_planner_chooses_only_plans_whose_arena_fits():
    """At the budgets where the planner once chose plans over budget, the chosen plan's
    firmware arena is within the budget."""
    from tvm_quantmcu.patch import plan as make_plan
    g = pipeline.load("mbv2-fmnist").graph
    int8 = load_policy("mbv2-fmnist", "int8")
    for kb in (18, 30):
        chosen = make_plan(g, kb * 1024, allow_layerwise=False).chosen
        pol = dataclasses.replace(int8, split_index=chosen.split_index, grid=chosen.grid)
        arena = build_program(lower(g, pol), "m", "host", compile_kernels=False).arena_bytes
        assert arena == chosen.peak_sram_patch_bytes <= kb * 1024, (kb, arena)


def test_arena_placement_is_valid_and_bounded():
    """Buffers alive at the same step never share bytes, offsets are aligned, and the arena
    is at least the most bytes alive at one step."""
    bufs = [Buffer("a", 10, 0, 1), Buffer("b", 7, 1, 2), Buffer("c", 12, 2, 3),
            Buffer("d", 5, 0, 3)]
    size = plan_arena(bufs)
    check_arena(bufs)
    assert all(b.offset % 4 == 0 for b in bufs)
    assert size >= lower_bound(bufs) == 24
    bufs[1].offset = bufs[0].offset
    with pytest.raises(AssertionError):
        check_arena(bufs)


def test_in_place_buffer_shares_bytes_with_its_input_only():
    """A depthwise output written in place sits `below` bytes under its input (which it may
    overlap), clears every other buffer alive with it, and the lower bound counts only the
    bytes it adds."""
    from tvm_quantmcu.patch.arena import depthwise_below
    # 3×3 s1 pad 1 over 8×8×16 at 8 bits: one row and three pixels, (8 + 3)·16
    d = depthwise_below([(8, 1, 1)], (8, 8), (1, 1), [(16, 16)])
    assert d == (8 + 3) * 16
    # a window starting inside the held region (negative padding) needs less
    assert depthwise_below([(10, -1, -1)], (8, 8), (1, 1), [(16, 16)]) < d
    bufs = [Buffer("x", 1024, 0, 1), Buffer("keep", 100, 0, 2),
            Buffer("y", 1024, 1, 2, over="x", below=d), Buffer("z", 64, 2, 3)]
    size = plan_arena(bufs)
    check_arena(bufs)
    by = {b.name: b for b in bufs}
    assert by["y"].offset == by["x"].offset - d
    assert lower_bound(bufs) == 1024 + d + 100
    assert size == lower_bound(bufs)
