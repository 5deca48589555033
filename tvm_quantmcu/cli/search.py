"""`quantmcu search`: make a quantization policy (QuantMCU or a baseline) and measure it."""
from __future__ import annotations

import json
import sys
import time

from . import UserError
from .options import add_model_options, data_source, model_ref
from .outputs import atomic_file


def _lambda(v: str):
    if v == "auto":
        return v
    try:
        lam = float(v)
    except ValueError:
        raise UserError(f"--lambda must be a number in [0, 1] or 'auto', got {v!r}") from None
    if not 0.0 <= lam <= 1.0:
        raise UserError(f"--lambda must be in [0, 1], got {lam}")
    return lam


def register(sub) -> None:
    from ..search import DEFAULT_SRAM_KB, POLICIES
    p = sub.add_parser(
        "search", help="search a mixed-precision policy (QuantMCU or a baseline) and measure it",
        description="Plan patch-based inference for the SRAM budget, calibrate, make the "
                    "policy, and measure it on the test set with the exact integer simulation "
                    "(runtime VDPC routing included). quantmcu = VDPC + VDQS; int8 = MCUNetV2 "
                    "(patches, uniform int8); layerwise-int8 = no patches; memory-driven = "
                    "Rusci et al.; rl = HAQ-style agent (Fariselli et al.).")
    add_model_options(p)
    p.add_argument("--policy", default="quantmcu", choices=POLICIES)
    p.add_argument("--sram-kb", type=float, default=DEFAULT_SRAM_KB,
                   help=f"SRAM budget for activations in KB (default {DEFAULT_SRAM_KB})")
    p.add_argument("--flash-kb", type=float, default=None,
                   help="Flash budget for weights in KB (memory-driven)")
    p.add_argument("--ram-kb", type=float, default=None,
                   help="RAM budget of the memory-driven rule (default: half of --sram-kb)")
    p.add_argument("--lambda", dest="lam", default="auto", metavar="L",
                   help="VDQS λ in [0, 1], or 'auto' (choose on the validation split for "
                        "--max-drop; default)")
    p.add_argument("--phi", choices=("bitops", "device"), default="bitops",
                   help="VDQS Φ: bitops = BitOPs saved (the paper's; default); device = "
                        "modelled Cortex-M4 cycles of the real kernels saved, activation and "
                        "weight widths chosen as pairs (each distinct kernel is timed once on "
                        "QEMU and cached)")
    p.add_argument("--max-drop", type=float, default=0.5,
                   help="accuracy-drop bound in points for --lambda auto (default 0.5)")
    p.add_argument("--limit", type=int, default=None,
                   help="test images to measure on (default all)")
    p.add_argument("--engine", choices=("auto", "sim", "c"), default="auto",
                   help="how images are run: c = the policy's generated C on the host "
                        "(bit-exact with sim, several times faster on many images; needs "
                        "gcc), sim = the numpy integer simulator; auto (default) = c when gcc "
                        "is found")
    p.add_argument("--classification-map", default=None, metavar="TENSOR",
                   help="VDPC classification point: the patch-stage feature map whose per-patch "
                        "max |x| decides the branch (default: the first one computed in the "
                        "branch; the names are the layer outputs of `quantmcu plan --json`)")
    p.add_argument("--threshold-pct", type=float, default=99.99,
                   help="VDPC threshold T: this percentile of |x| of the classification map on "
                        "calibration (default 99.99)")
    p.add_argument("--rl-seconds", type=float, default=120.0,
                   help="search-time budget of the RL agent (default 120 s)")
    p.add_argument("--out", default=None, metavar="policy.json", help="save the policy here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _engine(choice: str) -> str:
    from ..search import fastest_engine
    if choice == "auto":
        return fastest_engine()
    if choice == "c" and fastest_engine() != "c":
        raise UserError("--engine c needs gcc on PATH (apt-get install gcc), or use --engine sim")
    return choice


def run(args) -> int:
    from .. import pipeline, search
    from ..search.baselines import BudgetError

    lam = _lambda(args.lam)
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if args.sram_kb <= 0 or (args.flash_kb is not None and args.flash_kb <= 0):
        raise UserError("budgets must be positive")
    show = not (args.json or args.no_progress)
    if not 0.0 < args.threshold_pct <= 100.0:
        raise UserError("--threshold-pct must be in (0, 100]")
    params = search.SearchParams(sram_kb=args.sram_kb, drop_pt=args.max_drop,
                                 threshold_pct=args.threshold_pct,
                                 classification_map=args.classification_map, phi=args.phi)
    t0 = time.time()
    ref = model_ref(args)
    src = data_source(args, ref.input_shape)
    ctx = search.prepare(ref, params, engine=_engine(args.engine), data_source=src)
    bar = pipeline.progress(0, f"search {args.policy}", show)
    try:
        pol, info = search.make_policy(ctx, args.policy, lam, args.flash_kb, args.ram_kb,
                                       args.rl_seconds, bar)
    except BudgetError as e:
        raise UserError(str(e)) from e
    bar.close()
    n = min(args.limit or 10 ** 9, len(src.split("test")))
    bar = pipeline.progress(n, f"measure {args.policy}", show)
    res = search.evaluate_policy(ctx, pol, "test", args.limit, bar)
    bar.close()
    s8, t8 = search.int8_bitops(ctx)
    stage = res["bitops_patch_stage"]
    if pol.split_index is None:      # layer by layer: the same layers without patches
        stage = float(sum(ctx.graph.macs(l) * 64 for l in ctx.plan.stage_layers))
    out = {
        "model": ctx.name, "data": src.name, "policy": args.policy, "top1": res["top1"], "images": res["images"],
        "bitops_patch_stage": stage, "bitops_total": res["bitops_total"],
        "bitops_patch_stage_vs_int8": s8 / stage, "bitops_total_vs_int8": t8 / res["bitops_total"],
        "outlier_patch_rate": res["outlier_patch_rate"],
        "outlier_patch_rate_per_position": res.get("outlier_patch_rate_per_position"),
        "peak_sram_bytes": res["peak_sram_bytes"], "flash_bytes": res["flash_bytes"],
        "search_seconds": info.get("search_seconds"), "lambda": pol.lam,
        "bits": pol.bits_low, "w_bits": pol.w_bits,
        "plan": {"split_layer": ctx.plan.split_layer, "grid": list(ctx.plan.grid)},
        "threshold": pol.threshold, "phi": args.phi, "engine": ctx.engine,
        "seconds": round(time.time() - t0, 1),
    }
    if pol.vdpc:
        out["vdpc_calibration"] = ctx.cal.routing()
        if "warning" in out["vdpc_calibration"]:
            print(f"quantmcu search: warning: {out['vdpc_calibration']['warning']}",
                  file=sys.stderr)
    for k in ("auto_lambda_seconds", "int8_val_top1"):
        if k in info:
            out[k] = info[k]
    if args.out:
        with atomic_file(args.out, "--out") as tmp:
            pol.save(tmp)
        out["policy_file"] = args.out
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{ctx.name} {args.policy}: top-1 {out['top1']:.4f} on {out['images']} images; "
              f"patch-stage BitOPs {stage:,.0f} ({out['bitops_patch_stage_vs_int8']:.2f}x fewer "
              f"than int8), total {out['bitops_total_vs_int8']:.2f}x; outlier patches "
              f"{100 * out['outlier_patch_rate']:.1f}%; peak SRAM {out['peak_sram_bytes']:,} B; "
              f"λ={pol.lam}; activation bits {pol.bits_low or 'all 8'}; weight bits "
              f"{pol.w_bits or 'all 8'}")
    return 0
