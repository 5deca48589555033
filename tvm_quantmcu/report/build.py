"""Write a whole report into a directory: compute (or reuse) the numbers, draw every plot,
write the markdown, all in a temporary directory moved into place at the end, so a failed
run never leaves a half-written report."""
from __future__ import annotations

import json
import os
import shutil
import tempfile

from .bits import plot_bits, plot_outliers
from .collect import ReportData
from .front import plot_front
from .latency import plot_latency, plot_latency_vs_budget
from .markdown import write_markdown
from .memory import plot_memory

LATENCY_PNG = "latency.png"    # drawn when the deploy benchmark covers the model
LATENCY_BUDGET_PNG = "latency_budget.png"    # drawn when the latency benchmark covers it
PNG_FILES = {"memory": "memory.png", "bits": "bits.png", "outliers": "outliers.png",
             "front": "front.png"}
MARKDOWN = "report.md"
DATA_JSON = "report.json"


class OutputDirError(OSError):
    """The report directory cannot be created or replaced."""


def check_output_dir(out: str) -> str:
    """The absolute report directory, after checking it can be written (before any work)."""
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputDirError(f"output {out} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and \
            not os.path.exists(os.path.join(out, MARKDOWN)):
        raise OutputDirError(f"output directory {out} holds files that are not a report; "
                             "choose another --out")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"cannot create {parent}: {e.strerror}") from e
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputDirError(f"output directory {parent} is not writable")
    return out


def render(d: ReportData, out_dir: str) -> dict[str, str]:
    """Draw the plots and write the markdown and JSON into out_dir (must exist)."""
    p = {k: os.path.join(out_dir, v) for k, v in PNG_FILES.items()}
    plot_memory(d.layer_names, d.mem_layerwise, d.mem_patch8, d.mem_low, d.split_index,
                d.sram_budget_bytes, f"{d.model}: activation SRAM per layer", p["memory"])
    plot_bits(d.stage_maps, d.bits_low,
              f"{d.model}: bits per patch-stage feature map on each VDPC branch", p["bits"])
    if d.outlier_per_position is None:
        raise ValueError(f"{d.model}: no outlier rates per patch position to plot")
    plot_outliers(d.outlier_per_position, f"{d.model}: outlier patches per position",
                  p["outliers"])
    plot_front(d.front, d.policies, f"{d.model}: patch-stage BitOPs vs top-1", p["front"])
    images = dict(PNG_FILES)
    if d.latency:
        p["latency"] = plot_latency(d.latency, f"{d.model}: latency per policy",
                                    os.path.join(out_dir, LATENCY_PNG))
        images["latency"] = LATENCY_PNG
    if d.latency_budget:
        p["latency_budget"] = plot_latency_vs_budget([d.latency_budget],
                                                     os.path.join(out_dir, LATENCY_BUDGET_PNG))
        images["latency_budget"] = LATENCY_BUDGET_PNG
    p["markdown"] = write_markdown(d, images, os.path.join(out_dir, MARKDOWN))
    p["json"] = os.path.join(out_dir, DATA_JSON)
    with open(p["json"], "w") as f:
        json.dump(d.__dict__, f, indent=1,
                  default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    return p


def build_report(d: ReportData, out: str) -> dict[str, str]:
    """Render into a fresh temporary directory next to `out`, then swap it into place.
    Returns the final paths (markdown, json and every PNG)."""
    out = check_output_dir(out)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=os.path.dirname(out))
    try:
        files = render(d, tmp)
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-",
                                   dir=os.path.dirname(out))
            os.rename(out, os.path.join(old, "report"))
        try:
            os.rename(tmp, out)
        except OSError:
            if old:                              # put the previous report back
                os.rename(os.path.join(old, "report"), out)
            raise
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {k: os.path.join(out, os.path.basename(v)) for k, v in files.items()}
