"""The report's markdown: the plan, the policy table, the plots (relative links) and what is
not measured yet."""
from __future__ import annotations

from .collect import ReportData
from .latency import budget_latency_markdown, latency_markdown



def _ratio(v) -> str:
    return "-" if v is None else f"{v:.2f}×"


def _bits(bits: dict | None) -> str:
    if not bits:
        return "all 8"
    return ", ".join(f"{m}:{b}" for m, b in bits.items())


def plan_section(d: ReportData) -> list[str]:
    s = d.plan
    hw = s["input_patch_hw"]
    red = s["peak_sram_layerwise_bytes"] / s["peak_sram_patch_bytes"]
    return [
        "## Patch plan", "",
        "| | |", "| --- | --- |",
        f"| SRAM budget (activations) | {d.sram_budget_bytes:,} B "
        f"({d.sram_budget_bytes / 1024:g} KB) |",
        f"| split after | `{s['split_layer']}` (stage output "
        f"{'×'.join(map(str, s['stage_output_shape']))}, C×H×W) |",
        f"| grid | {s['grid'][0]}×{s['grid'][1]} patches |",
        f"| input patch | {hw[0]}×{hw[1]} pixels (largest window, halo included) |",
        f"| MACs | {s['macs_total']:,} (layer-by-layer {s['macs_total_layerwise']:,}) |",
        f"| MAC overhead | {s['overhead_patch_stage_pct']:.1f}% of the patch stage, "
        f"{s['overhead_total_pct']:.1f}% of the network |",
        f"| peak SRAM, layer-by-layer int8 | {s['peak_sram_layerwise_bytes']:,} B |",
        f"| peak SRAM, patch-based int8 | {s['peak_sram_patch_bytes']:,} B "
        f"({red:.2f}× lower; stage {s['peak_sram_stage_bytes']:,} B, rest "
        f"{s['peak_sram_rest_bytes']:,} B) |",
        f"| peak SRAM, QuantMCU low-bit branch alone | {max(d.mem_low):,} B |",
        ""]


def policy_table(d: ReportData) -> list[str]:
    out = ["## Policies", "",
           "BitOPs = MACs × weight bits × input-activation bits, patches counted with their "
           "halo; ratios are patch-based int8 (MCUNetV2) / policy, so higher is cheaper. "
           "Top-1 comes from the exact integer simulation, VDPC routing included. Peak SRAM of "
           "a VDPC policy counts buffers sized for the 8-bit branch (an outlier patch may need "
           "it). Flash is the weights section of the policy's firmware (weights, bias and "
           "requantization constants as its kernels store them).", "",
           "| policy | λ | top-1 | images | patch-stage BitOPs vs int8 | total BitOPs vs int8 "
           "| outlier patches | peak SRAM B | flash B | low-bit maps |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in d.policies:
        lam = "-" if r.get("lambda") is None else f"{r['lambda']:g}"
        out.append(f"| {r['policy']} | {lam} | {r['top1']:.4f} | {r.get('images') or '-'} | "
                   f"{_ratio(r['bitops_patch_stage_vs_int8'])} | "
                   f"{_ratio(r['bitops_total_vs_int8'])} | "
                   f"{100 * (r['outlier_patch_rate'] or 0):.1f}% | {r['peak_sram_bytes']:,} | "
                   f"{'-' if r['flash_bytes'] is None else format(r['flash_bytes'], ',')} | "
                   f"{_bits(r.get('bits'))} |")
    for name, why in d.skipped.items():
        out.append(f"| {name} | - | not measured: {why} | | | | | | | |")
    out.append("")
    return out


def front_table(d: ReportData) -> list[str]:
    out = ["λ front (each distinct policy measured once; ★ = Pareto-optimal):", "",
           "| λ | top-1 | patch-stage BitOPs vs int8 | low-bit maps |", "| --- | --- | --- | --- |"]
    for r in d.front:
        star = " ★" if r.get("pareto") else ""
        out.append(f"| {r['lambda']:g}{star} | {r['top1']:.4f} | "
                   f"{_ratio(r['bitops_patch_stage_vs_int8'])} | {_bits(r.get('bits'))} |")
    out.append("")
    return out


def write_markdown(d: ReportData, images: dict[str, str], path: str) -> str:
    """images: plot key → file name relative to the markdown (memory, bits, outliers, front)."""
    lam = "-" if d.lam is None else f"{d.lam:g}"
    thr = "" if d.threshold is None else f", VDPC threshold T = {d.threshold:.4g} on |x|"
    out = [f"# QuantMCU report: {d.model}", "",
           f"Measurements {d.source}.", "",
           *plan_section(d),
           "### Memory per layer", "",
           "The QuantMCU low-bit branch stores its feature maps packed at their searched "
           "widths; with VDPC an outlier patch switches to the all-8-bit branch, so the "
           "deployed buffers must be sized for the 8-bit branch and the real peak equals "
           "patch-based int8. Both are shown.", "",
           f"![SRAM per layer]({images['memory']})", "",
           *policy_table(d),
           "## Bit widths", "",
           f"QuantMCU policy (λ = {lam}{thr}): the outlier branch runs every feature map at "
           "8 bits, the low-bit branch at the widths VDQS chose.", "",
           f"![bit width per feature map]({images['bits']})", "",
           f"Outlier-patch rate per patch position ({d.outlier_source}):", "",
           f"![outlier patches per position]({images['outliers']})", "",
           "## BitOPs / accuracy", "",
           f"![BitOPs vs top-1 over λ]({images['front']})", "",
           *front_table(d),
           "## Latency", "",
           *latency_markdown(d.latency, d.model, images.get("latency")),
           *budget_latency_markdown(d.latency_budget, d.model, images.get("latency_budget"))]
    with open(path, "w") as f:
        f.write("\n".join(out))
    return path
