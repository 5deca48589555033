"""`quantmcu plan`: the patch-based inference plan of a zoo model for an SRAM budget."""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import UserError
from .options import add_model_options, model_ref
from .outputs import atomic_file


def register(sub) -> None:
    p = sub.add_parser(
        "plan", help="choose a patch split and grid for an SRAM budget",
        description="Enumerate the split points and p×q grids of patch-based inference "
                    "(MCUNetV2-style) for a model, and choose the plan with the least MAC "
                    "overhead whose peak SRAM fits the budget. Prints the chosen plan and the "
                    "table of every candidate.")
    add_model_options(p, data=False)
    p.add_argument("--sram-kb", type=float, required=True,
                   help="SRAM budget for activations in KB (1 KB = 1024 bytes)")
    p.add_argument("--bits", type=int, default=8, choices=[8, 4, 2],
                   help="activation bits of every feature map (packed; default 8)")
    p.add_argument("--max-grid", type=int, default=8,
                   help="largest number of patch rows / columns to try (default 8)")
    p.add_argument("--patch-only", action="store_true",
                   help="always choose a patch plan, even when layer-by-layer fits")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="plot memory per layer, layer-by-layer vs patch-based")
    p.set_defaults(func=run)


def _layer_graph(ref):
    from .. import frontend, models, pipeline
    if ref.kind == "zoo" and ref.checkpoint is None:
        # the plan depends on the architecture only: random weights need no checkpoint
        _, graph = frontend.import_model(models.get(ref.name, pretrained=False),
                                         ref.input_shape)
        return graph
    return pipeline.load(ref).graph


def _fmt_row(r: dict) -> str:
    grid = f"{r['grid'][0]}x{r['grid'][1]}"
    hw = f"{r['input_patch_hw'][0]}x{r['input_patch_hw'][1]}"
    return (f"{r['split_layer']:>6} {grid:>5} {hw:>7} {r['macs_total']:>13,} "
            f"{r['overhead_patch_stage_pct']:>9.1f} {r['overhead_total_pct']:>9.1f} "
            f"{r['peak_sram_patch_bytes']:>11,} {'yes' if r['fits'] else 'no':>4}")


def _plot(path: str, plan, layerwise: list[int], names: list[str], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(names)), 4))
    x = range(len(names))
    ax.plot(x, [b / 1024 for b in layerwise], "o-", label="layer-by-layer")
    if plan is not None:
        _, _, patched = plan.memory_profile()
        ax.plot(x, [b / 1024 for b in patched], "s-",
                label=f"patch-based (split after {plan.split_layer}, "
                      f"{plan.grid[0]}x{plan.grid[1]})")
        ax.axvline(plan.split_index + 0.5, color="grey", ls=":", lw=1)
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel("SRAM (KB)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_file(path, "--plot") as tmp:
            fig.savefig(tmp, dpi=120, format=Path(path).suffix.lstrip(".") or "png")
    except OSError as e:
        raise UserError(f"cannot write the plot {path}: {e.strerror}") from e
    finally:
        plt.close(fig)


def run(args) -> int:
    from .. import patch

    if not (math.isfinite(args.sram_kb) and args.sram_kb > 0):
        raise UserError(f"--sram-kb {args.sram_kb}: give a positive number of KB")
    if args.max_grid < 2:
        raise UserError("--max-grid must be at least 2")
    budget = int(args.sram_kb * 1024)
    ref = model_ref(args)
    name = ref.name
    graph = _layer_graph(ref)
    try:
        search = patch.plan(graph, budget, args.max_grid, args.bits,
                            allow_layerwise=not args.patch_only)
    except patch.NoPlanFitsError as e:
        raise UserError(f"{name}: {e}") from e
    chosen, table = search.chosen, search.table()
    lw_names = [l.name for l in graph.layers]
    lw_prof = patch.layerwise_profile(graph, args.bits)
    if args.plot:
        _plot(args.plot, chosen, lw_prof, lw_names,
              f"{name}: SRAM per layer ({args.bits}-bit activations)")
    res = {"model": name, "sram_budget_bytes": budget, "bits": args.bits,
           "peak_sram_layerwise_bytes": search.layerwise_peak_bytes}
    if chosen is None:
        res.update({"split_layer": None, "grid": [1, 1], "layerwise": True, "fits": True,
                    "peak_sram_patch_bytes": search.layerwise_peak_bytes,
                    "macs_total": sum(graph.macs(l) for l in graph.layers),
                    "overhead_total_pct": 0.0})
    else:
        res.update(chosen.summary(budget))
        res["layerwise"] = False
        res["patches"] = chosen.patches_json()
        res["peak_reduction"] = round(search.layerwise_peak_bytes
                                      / chosen.peak_sram_patch_bytes, 3)
    if args.json:
        res["candidates"] = table
        print(json.dumps(res))
        return 0
    kb = search.layerwise_peak_bytes / 1024
    print(f"{name}: SRAM budget {budget:,} B ({args.sram_kb:g} KB), {args.bits}-bit "
          f"activations, layer-by-layer peak {search.layerwise_peak_bytes:,} B ({kb:.1f} KB)")
    if chosen is None:
        print("chosen: layer-by-layer inference fits the budget (no patches, no overhead)")
    else:
        print(f"chosen: split after {chosen.split_layer} "
              f"(stage output {'x'.join(map(str, res['stage_output_shape']))}), grid "
              f"{chosen.grid[0]}x{chosen.grid[1]}, input patch "
              f"{res['input_patch_hw'][0]}x{res['input_patch_hw'][1]}")
        print(f"  MACs {res['macs_total']:,} (layer-by-layer {res['macs_total_layerwise']:,}): "
              f"overhead {res['overhead_patch_stage_pct']:.1f}% of the patch stage, "
              f"{res['overhead_total_pct']:.1f}% of the network")
        print(f"  peak SRAM {res['peak_sram_patch_bytes']:,} B (stage "
              f"{res['peak_sram_stage_bytes']:,} B, rest {res['peak_sram_rest_bytes']:,} B), "
              f"{res['peak_reduction']:.2f}x below layer-by-layer")
    print(f"\ncandidates ({len(table)}; fitting first, by MAC overhead):")
    print(f"{'split':>6} {'grid':>5} {'in-patch':>7} {'MACs':>13} {'stage %':>9} "
          f"{'total %':>9} {'peak B':>11} {'fits':>4}")
    for r in table:
        print(_fmt_row(r))
    if args.plot:
        print(f"\nplot written to {args.plot}")
    return 0
