"""Plot 2: the bit width of every patch-stage feature map on each VDPC branch (outlier
branch all 8-bit, low-bit branch as searched), and the outlier-patch rate per patch position."""
from __future__ import annotations

import numpy as np

from .style import figure, save

BRANCHES = ("outlier branch", "low-bit branch")


def plot_bits(maps: list[str], bits_low: dict[str, int], title: str, path: str) -> str:
    from matplotlib.colors import BoundaryNorm, ListedColormap
    if not maps:
        raise ValueError("the patch stage has no feature maps to show")
    unknown = set(bits_low) - set(maps)
    if unknown:
        raise ValueError(f"bit widths given for tensors outside the patch stage: "
                         f"{', '.join(sorted(unknown))}")
    grid = np.array([[8] * len(maps), [bits_low.get(m, 8) for m in maps]])
    cmap = ListedColormap(["#d7301f", "#fdae61", "#abd9e9", "#2c7bb6"])
    norm = BoundaryNorm([0.5, 2.5, 3.5, 5.5, 8.5], cmap.N)          # 2 | 3 | 4-5 | 6-8 bits
    fig, ax = figure(max(6.5, 0.55 * len(maps) + 2), 3.2)
    im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto")
    for (r, c), b in np.ndenumerate(grid):
        ax.text(c, r, str(b), ha="center", va="center", fontsize=9,
                color="white" if b in (2, 8) else "black")
    ax.set_yticks([0, 1])
    ax.set_yticklabels(BRANCHES)
    ax.set_xticks(range(len(maps)))
    ax.set_xticklabels(maps, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("patch-stage feature map (dataflow order)")
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax, ticks=[2, 3, 4.5, 7])
    cb.ax.set_yticklabels(["2", "3", "4-5", "6-8"])
    cb.set_label("activation bits")
    return save(fig, path)


def plot_outliers(rates: list[list[float]], title: str, path: str) -> str:
    a = np.asarray(rates, dtype=float)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"outlier rates must be a p×q grid, got shape {a.shape}")
    p, q = a.shape
    fig, ax = figure(max(4.5, 1.1 * q + 2), max(3.5, 0.9 * p + 1.5))
    im = ax.imshow(100 * a, cmap="viridis", vmin=0, vmax=max(1.0, 100 * a.max()))
    for (r, c), v in np.ndenumerate(a):
        ax.text(c, r, f"{100 * v:.1f}%", ha="center", va="center", fontsize=9,
                color="white" if v < 0.6 * max(a.max(), 0.01) else "black")
    ax.set_xticks(range(q))
    ax.set_yticks(range(p))
    ax.set_xlabel("patch column")
    ax.set_ylabel("patch row")
    ax.set_title(title)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("patches routed to the 8-bit branch (%)")
    return save(fig, path)
