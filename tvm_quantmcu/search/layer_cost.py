"""Per-layer modelled Cortex-M4 cost of a policy next to int8 patches at its SRAM budget
(``python -m tvm_quantmcu.search.layer_cost``): where a policy's speed-up comes from, and
where it does not (kernel calls only, see devcost.py)."""
from __future__ import annotations

import argparse
import json


def side_by_side(graph, pol, outlier_rate: float = 0.0, device=None) -> dict:
    """Per layer: modelled cycles and instructions of `pol` (both VDPC branches summed) and
    of int8 patches (the planner's int8 plan for the policy's budget); totals and patch-stage
    totals of both."""
    from .api import speedup_vs_int8
    sp = speedup_vs_int8(graph, pol, outlier_rate, device, layers=True)
    if not sp["int8_fits"]:
        raise ValueError(f"int8 patches do not fit {sp['sram_kb']} KB: nothing to compare with")
    rows = {}
    for key, prof in (("", sp["profile"]), ("int8_", sp["int8_profile"])):
        for r in prof["layers"]:
            row = rows.setdefault(r["layer"], {"layer": r["layer"], "kernels": [],
                                               "cycles": 0.0, "instructions": 0.0,
                                               "int8_cycles": 0.0, "int8_instructions": 0.0})
            row[key + "cycles"] += r["cycles"]
            row[key + "instructions"] += r["instructions"]
            if not key:
                row["kernels"].append(r["kernel"] + (f" [{r['branch']}]" if r["branch"] else ""))
    out = {k: v for k, v in sp.items() if k not in ("profile", "int8_profile")}
    out["layers"] = [rows[l.name] for l in graph.layers]
    for key, prof in (("", sp["profile"]), ("int8_", sp["int8_profile"])):
        out[key + "stage_cycles"] = prof["stage_cycles"]
    out["outlier_rate"] = outlier_rate
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Per-layer modelled Cortex-M4 cycles of a policy "
                                "and of int8 patches at its SRAM budget (kernel costs measured "
                                "on QEMU and cached, see search/devcost.py).")
    p.add_argument("--model", default="mbv2-fmnist")
    p.add_argument("--policy", default="quantmcu", help="shipped policy of the zoo model")
    p.add_argument("--policy-file", default=None, help="a saved policy instead")
    p.add_argument("--outlier-rate", type=float, default=None,
                   help="share of patches on the 8-bit VDPC branch (default: the rate the "
                        "policy's calibration recorded; 0 without VDPC)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    from .. import pipeline
    from ..models.policies import load_policy
    from ..quant.policy import Policy
    imp = pipeline.load(a.model)
    pol = Policy.load(a.policy_file, model=imp.name, model_hash=imp.model_hash,
                      graph=imp.graph) if a.policy_file else load_policy(imp.name, a.policy)
    rate = a.outlier_rate
    if rate is None:
        rate = (pol.params or {}).get("calibration_outlier_rate", 0.0) if pol.vdpc else 0.0
    res = side_by_side(imp.graph, pol, rate)
    if a.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"{a.model} at {res['sram_kb']} KB: int8 patches {res['int8_plan'][0]} "
          f"{res['int8_plan'][1][0]}x{res['int8_plan'][1][1]}; {pol.name} split "
          f"{pol.split_index} grid {pol.grid}, VDPC {pol.vdpc} (outlier rate {rate:.3f})")
    print(f"{'layer':6} {'int8 cycles':>12} {'cycles':>12} {'ratio':>6} {'int8 %':>6}  kernels")
    for r in res["layers"]:
        print(f"{r['layer']:6} {r['int8_cycles']:12,.0f} {r['cycles']:12,.0f} "
              f"{r['int8_cycles'] / r['cycles']:6.3f} "
              f"{100 * r['int8_cycles'] / res['int8_cycles']:5.1f}%  {'; '.join(r['kernels'])}")
    rest8 = res["int8_cycles"] - res["int8_stage_cycles"]
    rest = res["cycles"] - res["stage_cycles"]
    print(f"stage  {res['int8_stage_cycles']:12,} {res['stage_cycles']:12,} "
          f"{res['int8_stage_cycles'] / res['stage_cycles']:6.3f}")
    print(f"rest   {rest8:12,} {rest:12,} {rest8 / rest:6.3f}")
    print(f"total  {res['int8_cycles']:12,} {res['cycles']:12,} {res['speedup_cycles']:6.3f}  "
          f"instructions {res['int8_instructions']:,} vs {res['instructions']:,} "
          f"({res['speedup_instructions']:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
