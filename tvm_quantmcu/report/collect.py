"""The numbers of a report: the patch plan, the memory profiles, the QuantMCU bit widths, the
outlier rates, every policy's measurements and the λ front. Taken from the search benchmark's
JSON when it covers the model and budget, otherwise computed on a number of test images."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

from .latency import budget_latency, latency_rows

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHMARK_JSON = os.path.join(REPO, "benchmarks", "results", "search.json")
DEFAULT_IMAGES = 2000
DEFAULT_RL_SECONDS = 60.0
# the policies of the report's table and front plot (the benchmark adds ablations)
BASELINES = ("int8", "layerwise-int8", "memory-driven", "rl")
ROW_KEYS = ("policy", "lambda", "top1", "images", "bitops_patch_stage",
            "bitops_patch_stage_vs_int8", "bitops_total_vs_int8", "outlier_patch_rate",
            "peak_sram_bytes", "flash_bytes", "bits", "search_seconds")


@dataclass
class ReportData:
    model: str
    sram_budget_bytes: int
    plan: dict                       # PatchPlan.summary(budget)
    layer_names: list[str]
    split_index: int
    mem_layerwise: list[int]         # bytes alive per layer, layer by layer, 8 bits
    mem_patch8: list[int]            # patch-based, every tensor at 8 bits
    mem_low: list[int]               # patch-based, QuantMCU low-bit branch packed
    stage_maps: list[str]            # patch-stage feature maps searched by VDQS, in order
    bits_low: dict[str, int]         # QuantMCU low-bit branch (maps absent are 8-bit)
    outlier_per_position: list[list[float]] | None   # p×q, fraction of patches routed to 8 bits
    outlier_source: str
    policies: list[dict]             # one row per policy, ROW_KEYS
    front: list[dict]                # one row per λ: lambda, bits, top1, ..._vs_int8, pareto
    source: str                      # where the measurements come from, for the markdown
    lam: float | None = None         # the λ of the QuantMCU policy
    threshold: float | None = None
    skipped: dict[str, str] = field(default_factory=dict)   # policy → why it is missing
    latency: list[dict] = field(default_factory=list)        # deploy benchmark rows
    latency_budget: dict | None = None       # latency benchmark's entry (latency vs budget)

    def policy(self, name: str) -> dict | None:
        return next((r for r in self.policies if r["policy"] == name), None)


def memory_profiles(graph, plan, bits_low: dict[str, int]) -> tuple[list[int], list[int],
                                                                    list[int]]:
    """(layer-by-layer, patch-based 8-bit, patch-based low-bit branch) bytes per layer."""
    from ..patch import analyze
    _, lw, p8 = plan.memory_profile()
    low = analyze(graph, plan.split_index, plan.grid, dict(bits_low) or None,
                  layerwise_profile=lw).memory_profile()[2]
    return lw, p8, low


def _plan_part(graph, plan, budget: int, bits_low: dict) -> dict:
    lw, p8, low = memory_profiles(graph, plan, bits_low)
    maps = [l.output for l in plan.stage_layers if l.output != plan.stage_output]
    return dict(plan=plan.summary(budget), layer_names=[l.name for l in graph.layers],
                split_index=plan.split_index, mem_layerwise=lw, mem_patch8=p8, mem_low=low,
                stage_maps=maps)


def _row(r: dict) -> dict:
    return {k: r.get(k) for k in ROW_KEYS}


def _pareto(rows: list[dict]) -> None:
    for r in rows:
        r["pareto"] = not any(o["bitops_patch_stage_vs_int8"] > r["bitops_patch_stage_vs_int8"]
                              and o["top1"] >= r["top1"] for o in rows)


def _benchmark_entry(path: str, name: str, sram_kb: float) -> tuple[dict, dict] | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            res = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    for m in res.get("models", []):
        if m.get("model") == name and float(m["plan"]["sram_kb"]) == float(sram_kb):
            return res, m
    return None


def _architecture_plan(name: str, budget: int):
    """Graph and patch plan of a model (the plan depends on the architecture only)."""
    from .. import frontend, models, patch
    mi = models.info(name)
    _, graph = frontend.import_model(models.get(name, pretrained=False), mi.input_shape)
    return graph, patch.plan(graph, budget, allow_layerwise=False).chosen


def from_benchmark(name: str, sram_kb: float, path: str = BENCHMARK_JSON) -> ReportData | None:
    """The report's numbers from the search benchmark's JSON, or None when it does not cover
    this model at this SRAM budget."""
    found = _benchmark_entry(path, name, sram_kb)
    if found is None:
        return None
    res, m = found
    budget = int(sram_kb * 1024)
    graph, plan = _architecture_plan(name, budget)
    if (plan.split_layer, list(plan.grid)) != (m["plan"]["split_layer"], list(m["plan"]["grid"])):
        return None                  # the benchmark was run on another plan: recompute
    rows = {r["policy"]: r for r in m["policies"]}
    qm = rows.get("quantmcu", {})
    bits = {k: int(v) for k, v in (qm.get("bits") or {}).items()}
    policies = [_row(r) for r in m["policies"]]
    front = [dict(_row(r), pareto=False) for r in m["front"]]
    _pareto(front)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(path)))
    rel = os.path.relpath(path, REPO)
    return ReportData(
        model=name, sram_budget_bytes=budget, **_plan_part(graph, plan, budget, bits),
        bits_low=bits, outlier_per_position=qm.get("outlier_patch_rate_per_position"),
        outlier_source=f"QuantMCU policy on {qm.get('images', res.get('images'))} test images",
        policies=policies, front=front, lam=qm.get("lambda"), threshold=m.get("threshold"),
        source=f"reused from the search benchmark `{rel}` (written {when}, "
               f"{res.get('images')} Fashion-MNIST test images per policy)",
        latency=latency_rows(name), latency_budget=budget_latency(name))


def _measure(ctx, pol, images: int, info: dict | None, s8: float, t8: float) -> dict:
    from .. import search
    r = search.evaluate_policy(ctx, pol, "test", images)
    stage = r["bitops_patch_stage"]
    if pol.split_index is None:      # layer by layer: the same stage layers without halos
        stage = float(sum(ctx.graph.macs(l) * 64 for l in ctx.plan.stage_layers))
    return {"policy": pol.name, "lambda": pol.lam, "top1": r["top1"], "images": r["images"],
            "bitops_patch_stage": stage, "bitops_patch_stage_vs_int8": s8 / stage,
            "bitops_total_vs_int8": t8 / r["bitops_total"],
            "outlier_patch_rate": r["outlier_patch_rate"],
            "outlier_patch_rate_per_position": r.get("outlier_patch_rate_per_position"),
            "peak_sram_bytes": r["peak_sram_bytes"], "flash_bytes": r["flash_bytes"],
            "bits": dict(pol.bits_low), "search_seconds": (info or {}).get("search_seconds")}


def collect(name, sram_kb: float, images: int = DEFAULT_IMAGES,
            rl_seconds: float = DEFAULT_RL_SECONDS, log=lambda s: None,
            data_source=None) -> ReportData:
    """Compute the report's numbers: plan and calibrate, make every policy (QuantMCU with the
    automatic λ chosen on `images` validation images), measure each on `images` test images.
    name: a zoo name, FILE.pt2, FILE.py:factory or a ModelRef; data_source: the images
    (default Fashion-MNIST)."""
    from .. import search
    from ..search.baselines import BudgetError

    params = search.SearchParams(sram_kb=sram_kb,
                                 val_images=min(images, search.api.VAL_IMAGES_AUTO))
    ctx = search.prepare(name, params, data_source=data_source)
    name = ctx.name
    log(f"plan: split after {ctx.plan.split_layer}, grid {ctx.plan.grid[0]}x{ctx.plan.grid[1]}")
    s8, t8 = search.int8_bitops(ctx)
    rows, skipped = [], {}

    def add(pol, info=None):
        rows.append(_measure(ctx, pol, images, info, s8, t8))
        log(f"{pol.name}: top-1 {rows[-1]['top1']:.4f}")
        return rows[-1]

    add(ctx.base("layerwise-int8"))
    add(ctx.base("int8"))
    log("quantmcu: choosing λ on the validation split")
    pol, info = search.make_policy(ctx, "quantmcu", "auto")
    qm = add(pol, info)
    try:
        add(*search.make_policy(ctx, "memory-driven"))
    except BudgetError as e:
        skipped["memory-driven"] = str(e)
    if rl_seconds > 0:
        log(f"rl: agent for up to {rl_seconds:g} s")
        add(*search.make_policy(ctx, "rl", rl_seconds=rl_seconds))
    else:
        skipped["rl"] = "not run (--rl-seconds 0)"
    front = [_row(r) for r in search.api.sweep_lambdas(
        ctx, lambda p, secs: _measure(ctx, p, images, {"search_seconds": secs}, s8, t8))]
    log(f"λ front: {len({tuple(sorted((r['bits'] or {}).items())) for r in front})} "
        "distinct policies measured")
    _pareto(front)
    per_pos = qm.get("outlier_patch_rate_per_position")
    budget = int(sram_kb * 1024)
    return ReportData(
        model=name, sram_budget_bytes=budget,
        **_plan_part(ctx.graph, ctx.plan, budget, qm["bits"]),
        bits_low=qm["bits"],
        outlier_per_position=per_pos or ctx.cal.outlier_rate_per_patch(),
        outlier_source=(f"QuantMCU policy on {qm['images']} test images" if per_pos else
                        f"{len(ctx.cal_images)} calibration images"),
        policies=[_row(r) for r in rows], front=front, lam=qm["lambda"],
        threshold=ctx.cal.threshold, skipped=skipped,
        source=f"computed for this report on {images} {ctx.data.name} test images per policy"
               f" (λ chosen on {params.val_images} validation images)",
        latency=latency_rows(name), latency_budget=budget_latency(name))
