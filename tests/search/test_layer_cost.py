"""Per-layer cost of a policy next to int8 patches: every layer once, sums are the totals."""
import pytest

from helpers import requires_trained
from tvm_quantmcu.search.devcost import KernelCost


class MacCost:
    """A stand-in kernel cost model (no QEMU): cycles and instructions grow with the MACs and
    shrink with narrower activations, so the int8 and low-bit rows differ."""
    metric, board = "cycles", "fake"

    def costs(self, specs):
        return {s: KernelCost(instructions=s.macs * s.in_bits // 8 + 50,
                              cycles=s.macs * s.in_bits // 4 + 90) for s in specs}


@requires_trained("mbv2-fmnist")
def test_side_by_side_covers_every_layer_and_sums_to_the_totals():
    from tvm_quantmcu import pipeline
    from tvm_quantmcu.models.policies import load_policy
    from tvm_quantmcu.search.layer_cost import side_by_side
    imp = pipeline.load("mbv2-fmnist")
    pol = load_policy("mbv2-fmnist", "quantmcu")
    res = side_by_side(imp.graph, pol, 0.0, MacCost())
    assert [r["layer"] for r in res["layers"]] == [l.name for l in imp.graph.layers]
    for key in ("cycles", "instructions", "int8_cycles", "int8_instructions"):
        assert sum(r[key] for r in res["layers"]) == pytest.approx(res[key], abs=1)
    assert res["speedup_cycles"] == pytest.approx(res["int8_cycles"] / res["cycles"])
    assert 0 < res["stage_cycles"] < res["cycles"]
    # the layers after the patch stage run the same kernels under both policies here
    rest = [r for r in res["layers"][pol.split_index + 1:]]
    assert all(r["cycles"] == r["int8_cycles"] for r in rest if not pol.bits_low.get(r["layer"]))
