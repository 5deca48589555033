"""Plot 1: SRAM per layer — layer-by-layer, patch-based int8, and QuantMCU (the low-bit
branch's packed buffers, and the buffers VDPC really needs: they must also hold the 8-bit
branch an outlier patch is routed to)."""
from __future__ import annotations

from .style import figure, save


def plot_memory(names: list[str], layerwise: list[int], patch8: list[int], low: list[int],
                split_index: int, budget_bytes: int, title: str, path: str) -> str:
    if not (len(names) == len(layerwise) == len(patch8) == len(low)):
        raise ValueError(f"memory profiles of {len(names)} layers have lengths "
                         f"{len(layerwise)}, {len(patch8)}, {len(low)}")
    kb = lambda v: [b / 1024 for b in v]         # noqa: E731
    fig, ax = figure(max(7.0, 0.24 * len(names)) + 3.5, 4.6)
    x = list(range(len(names)))
    ax.plot(x, kb(layerwise), "o-", color="C0", ms=4, label="layer-by-layer int8")
    ax.plot(x, kb(patch8), "s-", color="C1", ms=4, label="patch-based int8 (MCUNetV2)")
    ax.plot(x, kb(low), "^-", color="C2", ms=4,
            label="QuantMCU low-bit branch alone (packed sub-byte buffers)")
    ax.plot(x, kb(patch8), ":", color="C3", lw=2.5,
            label="QuantMCU with VDPC (buffers also hold the 8-bit branch = patch int8)")
    ax.axhline(budget_bytes / 1024, color="k", ls="--", lw=1,
               label=f"SRAM budget {budget_bytes / 1024:g} KB")
    ax.axvspan(-0.5, split_index + 0.5, color="grey", alpha=0.12, lw=0,
               label="patch stage (per-patch peak)")
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("activation SRAM alive (KB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    # outside the axes: the curves fill the plot area
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return save(fig, path)
