"""Accuracy / BitOPs benchmark of every policy on the trained zoo models.

    python benchmarks/search.py [--models mbv2-fmnist mcunet-fmnist] [--images 10000]

Writes benchmarks/results/search.json, search.md and search_front.png. Every number comes from
the exact integer simulation (the device's routing included) on the Fashion-MNIST test set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tvm_quantmcu import search  # noqa: E402
from tvm_quantmcu.cli.search import int8_bitops  # noqa: E402

RESULTS = os.path.join(HERE, "results")


def measure(ctx, pol, images, info=None, s8=None, t8=None) -> dict:
    r = search.evaluate_policy(ctx, pol, "test", images)
    stage = r["bitops_patch_stage"]
    if pol.split_index is None:
        stage = float(sum(ctx.graph.macs(l) * 64 for l in ctx.plan.stage_layers))
    return {"policy": pol.name, "lambda": pol.lam, "top1": r["top1"], "images": r["images"],
            "bitops_patch_stage": stage, "bitops_total": r["bitops_total"],
            "bitops_patch_stage_vs_int8": s8 / stage, "bitops_total_vs_int8": t8 / r["bitops_total"],
            "outlier_patch_rate": r["outlier_patch_rate"],
            "outlier_patch_rate_per_position": r.get("outlier_patch_rate_per_position"),
            "peak_sram_bytes": r["peak_sram_bytes"], "flash_bytes": r["flash_bytes"],
            "search_seconds": (info or {}).get("search_seconds", 0.0),
            "bits": pol.bits_low, "w_bits": pol.w_bits, "params": {
                k: v for k, v in pol.params.items() if k in ("ram_budget_bytes", "episodes")}}


def sensitivity(ctx, images: int) -> list[dict]:
    """Top-1 on validation with ONE map of the low-bit branch at 4 or 2 bits (VDPC routing on),
    everything else at 8: what limits the BitOPs ratio."""
    v = ctx.vdqs()
    base = search.evaluate_policy(ctx, ctx.base("int8"), "val", images)["top1"]
    rows = []
    for m in v.maps:
        for b in (4, 2):
            pol, _ = search.quantmcu_policy(ctx, 1.0)
            pol.bits_low = {m: b}
            pol.ranges_low = {k: v.low_ranges[(k, pol.bits_low.get(k, 8))] for k in v.maps}
            r = search.evaluate_policy(ctx, pol, "val", images)
            rows.append({"map": m, "bits": b, "kind": ctx.graph.producer(m).kind,
                         "act": ctx.graph.producer(m).act,
                         "drop_pt": round(100 * (base - r["top1"]), 2),
                         "phi": round(v.phi(m, b), 4)})
    return rows


def bench_model(name: str, images: int, rl_seconds: float, log, val_images: int = 2000,
                sens_images: int = 1000) -> dict:
    t0 = time.time()
    ctx = search.prepare(name, search.SearchParams(val_images=val_images))
    log(f"{name}: plan split after {ctx.plan.split_layer} grid {ctx.plan.grid}, threshold "
        f"{ctx.cal.threshold:.4f}, calibration outlier rate {ctx.cal.outlier_rate:.3f}")
    s8, t8 = int8_bitops(ctx)
    rows = []

    def add(pol, info=None):
        rows.append(measure(ctx, pol, images, info, s8, t8))
        r = rows[-1]
        log(f"  {r['policy']:<16} λ={r['lambda']} top1 {r['top1']:.4f} "
            f"stage {r['bitops_patch_stage_vs_int8']:.2f}x total {r['bitops_total_vs_int8']:.2f}x "
            f"outliers {r['outlier_patch_rate']:.3f} bits {r['bits']}")
        return r

    add(ctx.base("layerwise-int8"))
    int8 = add(ctx.base("int8"))
    pol, info = search.make_policy(ctx, "quantmcu", "auto")
    qm = add(pol, info)
    qm["auto_lambda_seconds"] = info.get("auto_lambda_seconds")
    # the λ front on the test set (distinct policies measured once)
    front = search.api.sweep_lambdas(
        ctx, lambda p, secs: measure(ctx, p, images, {"search_seconds": secs}, s8, t8))
    for r in front:
        log(f"  front λ={r['lambda']}: top1 {r['top1']:.4f} "
            f"stage {r['bitops_patch_stage_vs_int8']:.2f}x")
    # ablations at the automatic λ
    p, secs = search.quantmcu_policy(ctx, qm["lambda"], vdpc=False)
    add(p, {"search_seconds": secs})
    for b in (4, 2):
        p, _ = search.quantmcu_policy(ctx, 0.0, uniform_bits=b)
        add(p)
    # memory-driven at three RAM budgets, and the RL agent
    peak8 = int8["peak_sram_bytes"]
    for frac in (0.75, 0.5, 0.35):
        p, info = search.make_policy(ctx, "memory-driven", ram_kb=peak8 * frac / 1024)
        add(p, info)
    p, info = search.make_policy(ctx, "rl", rl_seconds=rl_seconds)
    add(p, info)
    drop_ok = [r for r in front if r["top1"] >= int8["top1"] - 0.005]
    at22 = [r for r in front if r["bitops_patch_stage_vs_int8"] >= 2.2]
    summary = {
        "best_ratio_at_0.5pt": max((r["bitops_patch_stage_vs_int8"] for r in drop_ok),
                                   default=None),
        "drop_pt_at_2.2x": round(100 * (int8["top1"] - max(r["top1"] for r in at22)), 2)
        if at22 else None,
        "quantmcu_ratio": qm["bitops_patch_stage_vs_int8"],
        "quantmcu_drop_pt": round(100 * (int8["top1"] - qm["top1"]), 2),
    }
    sens = sensitivity(ctx, sens_images)
    return {"model": name, "plan": {"split_layer": ctx.plan.split_layer,
                                    "grid": list(ctx.plan.grid),
                                    "sram_kb": ctx.params.sram_kb},
            "threshold": ctx.cal.threshold, "params": ctx.params.to_json(),
            "policies": rows, "front": front, "summary": summary, "sensitivity": sens,
            "seconds": round(time.time() - t0, 1)}


def write_markdown(res: dict, path: str) -> None:
    out = ["# Search benchmark", "",
           f"Exact integer simulation on {res['images']} Fashion-MNIST test images. BitOPs = "
           "MACs × weight bits × input-activation bits, patches counted with their halo; "
           "ratios are int8 (MCUNetV2) / policy.", ""]
    for m in res["models"]:
        s = m["summary"]
        out += [f"## {m['model']} (split after {m['plan']['split_layer']}, grid "
                f"{m['plan']['grid'][0]}×{m['plan']['grid'][1]}, {m['plan']['sram_kb']} KB)", "",
                "| policy | λ | top-1 | patch-stage BitOPs vs int8 | total vs int8 | "
                "outlier patches | peak SRAM B | flash B | search s |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in m["policies"]:
            out.append(f"| {r['policy']} | {r['lambda'] if r['lambda'] is not None else '-'} | "
                       f"{r['top1']:.4f} | {r['bitops_patch_stage_vs_int8']:.2f}× | "
                       f"{r['bitops_total_vs_int8']:.2f}× | {100 * r['outlier_patch_rate']:.1f}% | "
                       f"{r['peak_sram_bytes']:,} | {r['flash_bytes']:,} | "
                       f"{r['search_seconds'] or 0:.1f} |")
        out += ["", f"Best patch-stage ratio within 0.5 pt of int8 on the λ front: "
                f"**{s['best_ratio_at_0.5pt'] and round(s['best_ratio_at_0.5pt'], 2)}×**; "
                f"accuracy drop at ≥ 2.2×: **{s['drop_pt_at_2.2x']} pt**.", "",
                "λ front (test set):", "", "| λ | bits | top-1 | stage vs int8 |",
                "| --- | --- | --- | --- |"]
        for r in m["front"]:
            out.append(f"| {r['lambda']} | {r['bits'] or 'all 8'} | {r['top1']:.4f} | "
                       f"{r['bitops_patch_stage_vs_int8']:.2f}× |")
        out += ["", f"Per-map sensitivity (one map lowered, VDPC on, {res['sensitivity_images']} "
                "validation images):",
                "", "| map | layer | act | bits | drop pt | Φ |", "| --- | --- | --- | --- | --- | --- |"]
        for r in m["sensitivity"]:
            out.append(f"| {r['map']} | {r['kind']} | {r['act']} | {r['bits']} | {r['drop_pt']} "
                       f"| {r['phi']} |")
        out.append("")
    with open(path, "w") as f:
        f.write("\n".join(out))


def plot(res: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(res["models"]), figsize=(6.5 * len(res["models"]), 4.8),
                             squeeze=False)
    markers = {"int8": "s", "layerwise-int8": "D", "memory-driven": "v", "rl": "^",
               "vdqs-no-vdpc": "x", "vdpc-uniform4": "P", "vdpc-uniform2": "*"}
    for ax, m in zip(axes[0], res["models"]):
        fr = sorted(m["front"], key=lambda r: r["bitops_patch_stage_vs_int8"])
        ax.plot([r["bitops_patch_stage_vs_int8"] for r in fr], [100 * r["top1"] for r in fr],
                "o-", label="QuantMCU λ front")
        for r in m["policies"]:
            if r["policy"] == "quantmcu":
                ax.plot(r["bitops_patch_stage_vs_int8"], 100 * r["top1"], "o", ms=12,
                        mfc="none", color="C3", label="QuantMCU (auto λ)")
            else:
                ax.plot(r["bitops_patch_stage_vs_int8"], 100 * r["top1"],
                        markers.get(r["policy"], "."), label=r["policy"])
        ax.set_xlabel("patch-stage BitOPs reduction vs int8 (×)")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(m["model"])
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["mbv2-fmnist", "mcunet-fmnist"])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--rl-seconds", type=float, default=120.0)
    ap.add_argument("--val-images", type=int, default=2000,
                    help="validation images for the automatic λ")
    ap.add_argument("--sensitivity-images", type=int, default=1000)
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    res = {"images": args.images, "val_images": args.val_images,
           "sensitivity_images": args.sensitivity_images, "models": []}
    for name in args.models:
        res["models"].append(bench_model(name, args.images, args.rl_seconds,
                                         lambda s: print(s, flush=True), args.val_images,
                                         args.sensitivity_images))
    with open(os.path.join(args.out, "search.json"), "w") as f:
        json.dump(res, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    write_markdown(res, os.path.join(args.out, "search.md"))
    plot(res, os.path.join(args.out, "search_front.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
