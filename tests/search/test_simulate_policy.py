"""Exact integer simulation of policies, routing, VDQS, baselines and policy files."""
import numpy as np
import pytest

from tvm_quantmcu import data, quant, search
from tvm_quantmcu.search.vdqs import conditional_entropy, entropy
from helpers import have, trained


@pytest.fixture(scope="module")
def ctx():
    if not trained("mbv2-fmnist"):
        pytest.skip("mbv2-fmnist has no trained checkpoint "
                    "(python -m tvm_quantmcu.models.train --model mbv2-fmnist)")
    return search.prepare("mbv2-fmnist", search.SearchParams(calibration_images=64,
                                                             entropy_images=16))


def _images(n=24, start=0):
    return data.load("test").images(64, start, start + n)


def test_all_8bit_policy_equals_reference_bit_exactly(ctx):
    x_q = quant.quantize_input(_images())
    want = quant.run_int(ctx.base("int8").qgraph8(ctx.graph), x_q)
    for name in ("int8", "layerwise-int8"):
        got, flags = search.Simulator(ctx.graph, ctx.base(name), ctx.plan).run(x_q)
        assert (got == want).all(), name
    # a VDPC policy whose two branches are the same 8-bit graph routes but changes nothing
    pol, _ = search.quantmcu_policy(ctx, 1.0)
    pol.bits_low, pol.ranges_low = {}, {}
    got, flags = search.Simulator(ctx.graph, pol, ctx.plan).run(x_q)
    assert (got == want).all()
    assert flags.shape == (len(x_q), ctx.plan.grid[0] * ctx.plan.grid[1])


def test_routing_is_reproducible_and_follows_the_threshold(ctx):
    pol, _ = search.quantmcu_policy(ctx, 0.0)
    sim = search.Simulator(ctx.graph, pol, ctx.plan)
    x_q = quant.quantize_input(_images(32, 100))
    out1, f1 = sim.run(x_q)
    out2, f2 = sim.run(x_q)
    assert (out1 == out2).all() and (f1 == f2).all()
    # the decision: some 8-bit value of the classification map in the patch is ≥ T_q
    assert f1.any() and not f1.all()
    c = quant.run_int(sim.qg8, x_q, keep=True)[pol.classification_map]
    for i, p in enumerate(ctx.plan.all_patches()):
        r = p.regions[pol.classification_map]
        reg = c[:, r.h0:r.h1, r.w0:r.w1, :].reshape(len(c), -1)
        want = (reg.max(axis=1) >= sim.threshold_q) | (reg.min(axis=1) <= sim.threshold_q_lo)
        assert (want == f1[:, i]).all()


def test_vdqs_extremes_and_scores(ctx):
    v = ctx.vdqs()
    top = v.search(1.0)                            # only entropy counts: stay at 8 bits
    assert top.bits == {} and top.w_bits == {}
    res = v.search(0.0)                            # only BitOPs count: the lowest width
    low = res.bits
    assert set(low) == set(v.maps) and set(low.values()) == {2}
    assert res.w_bits == {l: 4 for l in v.wlayers}
    for m in v.maps:
        assert v.phi(m, 2) > v.phi(m, 4) > v.phi(m, 8) == 0
        om = v.omega_table((), m) if m == v.maps[0] else None
        if om:
            assert om[8] == 0 and 0 < om[4] < om[2]       # hb: not bounded by 1
    with pytest.raises(ValueError):
        v.search(1.5)


def test_weight_widths_are_searched_after_the_classification_map(ctx):
    v = ctx.vdqs()
    layers = [l for l in ctx.plan.stage_layers if l.weight is not None]
    first = ctx.graph.producer(ctx.cal.classification_map).name
    # every patch computes the classification map at 8 bits before routing: its weights stay
    assert first not in v.wlayers
    assert v.wlayers == [l.name for l in layers if l.name != first]
    prefix = ((ctx.cal.classification_map, 8, 8),)
    l = ctx.plan.stage_layers[1]
    om = v.omega_w_table(prefix, l.output)
    assert om[8] == 0 and 0 < om[4] < 1
    for w in (4, 2):
        assert v.phi_w(l.name, w, 8) == v.layer_macs[l.name] * 8 * (8 - w) / v.stage_bitops8
    only_acts = search.VDQS(ctx.graph, ctx.plan, ctx.cal, ctx.ranges8,
                            ctx.cal_images[:ctx.params.entropy_images], candidate_w_bits=(8,))
    assert only_acts.wlayers == [] and only_acts.search(0.0).w_bits == {}
    pol, _ = search.quantmcu_policy(ctx, 0.0)
    assert pol.w_bits == {l: 4 for l in v.wlayers}
    assert search.Simulator(ctx.graph, pol, ctx.plan).qg8.qlayer(v.wlayers[0]).w_bits == 4


def test_conditional_entropy():
    y = np.tile(np.arange(256), 3)
    assert abs(conditional_entropy(y, y, 8)) < 1e-9              # nothing lost
    assert abs(conditional_entropy(y, y >> 4, 8) - 4.0) < 1e-9   # a function of y: H(y) - H(z)
    assert abs(conditional_entropy(y, np.zeros_like(y), 8) - 8.0) < 1e-9


def test_conditional_entropy_equals_the_joint_histogram_formula_exactly():
    rng = np.random.default_rng(1)
    for bits, n in ((8, 100_000), (4, 5000), (2, 77), (8, 1)):
        y = rng.integers(0, 1 << bits, n)
        for z in (y >> 1, rng.integers(0, 1 << bits, n).astype(np.int32), np.zeros_like(y),
                  np.minimum(y, 3).astype(np.uint8)):
            want = entropy(y.astype(np.int64) * (1 << bits) + z, 2 * bits) - entropy(z, bits)
            assert conditional_entropy(y.astype(np.int32), z, bits) == want
    # values outside the width take the general form, as before
    y = np.array([0, 300, 5])
    assert conditional_entropy(y, y, 8) == entropy(y * 256 + y, 16) - entropy(y, 8)


def test_cold_search_starts_empty_and_finds_the_same_widths(ctx):
    v = ctx.vdqs()
    warm = {lam: v.search(lam) for lam in (0.0, 0.1, 1.0)}
    filled = len(v._env_cache)
    cold = v.search(0.1, cold=True)
    # only the branch tensors of λ=0.1's own path were rebuilt
    assert 0 < len(v._env_cache) < filled
    assert cold.bits == warm[0.1].bits and cold.ranges == warm[0.1].ranges


def test_normalisation_options_change_the_scores_as_documented(ctx):
    v = ctx.vdqs()
    p = ctx.params
    assert (v.phi_norm, v.omega_norm) == ("stage", "hb")
    alt = search.VDQS(ctx.graph, ctx.plan, ctx.cal, ctx.ranges8,
                      ctx.cal_images[:p.entropy_images], p.candidate_bits, p.range_method,
                      phi_norm="consumer", omega_norm="h8")
    m = v.maps[0]
    for b in (4, 2):
        assert alt.phi(m, b) == (8 - b) / 8 > v.phi(m, b)
    omb, om8 = v.omega_table((), m), alt.omega_table((), m)
    # same entropies, other denominator: H8/Hb times the h8 loss
    for b in (4, 2):
        assert omb[b] > om8[b] > 0
    assert omb[2] / om8[2] > omb[4] / om8[4]      # the lower width is penalised more
    with pytest.raises(ValueError, match="omega_norm"):
        search.VDQS(ctx.graph, ctx.plan, ctx.cal, ctx.ranges8, ctx.cal_images[:4],
                    omega_norm="h4")


@pytest.mark.skipif(not have("gcc"), reason="the C engine builds the policy with gcc")
def test_c_engine_gives_the_simulators_predictions_and_routing(ctx):
    pol, _ = search.quantmcu_policy(ctx, 0.1)
    assert pol.vdpc and pol.bits_low
    by = {e: search.evaluate_policy(ctx, pol, "test", 30, engine=e) for e in ("sim", "c")}
    sim, c = by["sim"], by["c"]
    assert (sim["engine"], c["engine"]) == ("sim", "c")
    assert (c["predictions"] == sim["predictions"]).all()
    assert c["routing"].shape == sim["routing"].shape == (30, ctx.plan.grid[0] * ctx.plan.grid[1])
    assert (c["routing"] == sim["routing"]).all()
    assert sim["routing"].any() and not sim["routing"].all()    # both branches ran
    for k in ("top1", "images", "bitops_patch_stage", "bitops_total", "outlier_patch_rate",
              "outlier_patch_rate_per_position", "peak_sram_bytes", "flash_bytes"):
        assert c[k] == sim[k], k


def test_unknown_engine_is_refused(ctx):
    with pytest.raises(search.SearchError, match="engine 'gpu'"):
        search.evaluate_policy(ctx, ctx.base("int8"), "test", 2, engine="gpu")


def test_entropy():
    assert entropy(np.zeros(100, np.int32), 8) == 0
    assert abs(entropy(np.arange(256), 8) - 8.0) < 1e-9
    assert abs(entropy(np.array([0, 1, 2, 3] * 10), 2) - 2.0) < 1e-9


def test_lower_bits_lower_bitops(ctx):
    pol, _ = search.quantmcu_policy(ctx, 0.0)
    sim = search.Simulator(ctx.graph, pol, ctx.plan)
    assert (sim.bitops_stage_low < sim.bitops_stage8).all()
    none = np.zeros((3, len(sim.bitops_stage8)), bool)
    every = ~none
    assert (sim.stage_bitops(every) == sim.bitops_stage8.sum()).all()
    assert (sim.stage_bitops(none) == sim.bitops_stage_low.sum()).all()


def test_policy_file_round_trip_and_refusals(ctx, tmp_path):
    pol, _ = search.quantmcu_policy(ctx, 0.1)
    f = tmp_path / "p.json"
    pol.save(str(f))
    back = search.Policy.load(str(f), "mbv2-fmnist", ctx.model_hash, ctx.plan.split_index,
                              ctx.plan.grid)
    assert back.bits_low == pol.bits_low and back.threshold == pol.threshold
    assert back.ranges_low == pol.ranges_low
    with pytest.raises(search.PolicyMismatchError, match="mcunet"):
        search.Policy.load(str(f), "mcunet-fmnist")
    with pytest.raises(search.PolicyMismatchError, match="hash"):
        search.Policy.load(str(f), "mbv2-fmnist", "0000")
    with pytest.raises(search.PolicyMismatchError, match="plan"):
        search.Policy.load(str(f), "mbv2-fmnist", ctx.model_hash, ctx.plan.split_index + 1,
                           (3, 3))


def test_memory_driven_meets_its_budget(ctx):
    base = ctx.base("int8")
    peak8 = search.api.peak_sram(ctx, base)
    pol = search.memory_driven(ctx, base, int(peak8 * 0.6), None)
    assert pol.bits_low and search.api.peak_sram(ctx, pol) <= peak8 * 0.6
    with pytest.raises(search.BudgetError):
        search.memory_driven(ctx, base, 16, None)
    # Flash is the firmware's weights section: weight cuts pay only where the layer's kernel
    # stores sub-byte weights packed (low-bit inputs), so the RAM cuts come first
    flash = search.weight_bytes(ctx.graph, pol)
    cut = search.memory_driven(ctx, base, int(peak8 * 0.6), flash - 1)
    assert cut.w_bits and search.weight_bytes(ctx.graph, cut) < flash
    # below what 2-bit weights everywhere store (biases, requantization constants and the
    # depthwise layers' weights stay): refused
    with pytest.raises(search.BudgetError, match="Flash budget"):
        search.memory_driven(ctx, base, int(peak8 * 0.6), flash // 8)


def test_rl_agent_improves_on_a_known_reward():
    maps = ["a", "b", "c", "d"]
    # reward: lowering 'a' and 'b' is free, lowering 'c'/'d' costs accuracy
    def evaluate(bits):
        saving = sum({8: 0, 4: 5, 2: 8}[bits[m]] for m in maps)
        drop = sum({8: 0, 4: 2, 2: 6}[bits[m]] for m in ("c", "d"))
        return drop, saving
    res = search.rl.run_agent(maps, lambda i, prev: [i / 4, prev], evaluate, lambda b: True,
                              episodes=60, seconds=30, kappa=1.0)
    assert res.reward >= 10 and res.episodes == 60
