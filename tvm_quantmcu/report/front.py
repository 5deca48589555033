"""Plot 3: patch-stage BitOPs reduction vs top-1 over λ, with the baselines as markers."""
from __future__ import annotations

from .style import figure, save

MARKERS = {"int8": "s", "layerwise-int8": "D", "memory-driven": "v", "rl": "^",
           "vdqs-no-vdpc": "x", "vdpc-uniform4": "P", "vdpc-uniform2": "*"}


def plot_front(front: list[dict], policies: list[dict], title: str, path: str) -> str:
    if not front:
        raise ValueError("the λ front is empty")
    fig, ax = figure(7.2, 4.8)
    fr = sorted(front, key=lambda r: (r["bitops_patch_stage_vs_int8"], r["lambda"]))
    xs = [r["bitops_patch_stage_vs_int8"] for r in fr]
    ax.plot(xs, [100 * r["top1"] for r in fr], "o-", color="C0", ms=5,
            label="QuantMCU, λ sweep")
    labelled = set()
    for r in fr:
        key = (round(r["bitops_patch_stage_vs_int8"], 4), round(r["top1"], 5))
        if key not in labelled:          # several λ give the same policy: label it once
            labelled.add(key)
            ax.annotate(f"λ={r['lambda']:g}", (r["bitops_patch_stage_vs_int8"], 100 * r["top1"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=6, color="C0")
    colour = 1
    for r in policies:
        x, y = r["bitops_patch_stage_vs_int8"], 100 * r["top1"]
        if r["policy"] == "quantmcu":
            ax.plot(x, y, "o", ms=13, mfc="none", mew=2, color="C3",
                    label=f"QuantMCU (automatic λ={r['lambda']:g})")
        else:
            ax.plot(x, y, MARKERS.get(r["policy"], "."), ms=8, ls="none",
                    color=f"C{colour % 10}", label=r["policy"])
            colour += 1 + (colour == 2)          # skip C3, used by QuantMCU
    ax.set_xlabel("patch-stage BitOPs reduction vs patch-based int8 (×, higher is cheaper)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="lower left")
    return save(fig, path)
