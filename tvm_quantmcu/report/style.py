"""Figure creation and saving shared by the plot modules (no pyplot: no global state)."""
from __future__ import annotations

from matplotlib.figure import Figure

DPI = 110


def figure(width: float, height: float, ncols: int = 1, **kw):
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False, **kw)[0]
    return fig, (axes[0] if ncols == 1 else axes)


def save(fig: Figure, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path
