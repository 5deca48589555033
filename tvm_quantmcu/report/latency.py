"""Latency per policy: guest instructions per inference on the QEMU boards, from the deploy
benchmark (benchmarks/results/deploy.json, made by `python benchmarks/deploy.py`)."""
from __future__ import annotations

import json
import os

from .style import figure, save

DEPLOY_JSON = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "benchmarks", "results", "deploy.json")


def latency_rows(model: str, path: str = DEPLOY_JSON) -> list[dict]:
    """Rows (board, policy, instructions_per_inference, match_rate, images) of `model`, boards
    with an instruction counter only; [] when the benchmark has not covered the model."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return []
    if doc.get("model") != model:
        return []
    return [{k: r.get(k) for k in ("board", "policy", "instructions_per_inference",
                                   "match_rate", "images")}
            for r in doc.get("rows", []) if r.get("instructions_per_inference")]


def plot_latency(rows: list[dict], title: str, path: str) -> str:
    boards = sorted({r["board"] for r in rows})
    policies = sorted({r["policy"] for r in rows})
    fig, ax = figure(7.2, 4.2)
    width = 0.8 / max(len(policies), 1)
    for j, pol in enumerate(policies):
        xs, ys = [], []
        for i, b in enumerate(boards):
            r = next((r for r in rows if r["board"] == b and r["policy"] == pol), None)
            if r:
                xs.append(i + (j - (len(policies) - 1) / 2) * width)
                ys.append(r["instructions_per_inference"] / 1e6)
        ax.bar(xs, ys, width, label=pol, color=f"C{j}")
    top = max(r["instructions_per_inference"] for r in rows) / 1e6
    ax.set_ylim(0, 1.3 * top)                     # room for the legend above the bars
    ax.set_xticks(range(len(boards)), boards)
    ax.set_xlabel("board (QEMU, -icount)")
    ax.set_ylabel("instructions per inference (millions)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="policy", fontsize=8, ncol=len(policies), loc="upper center")
    return save(fig, path)


def latency_markdown(rows: list[dict], model: str, image: str | None) -> list[str]:
    if not rows:
        return ["No device measurements for this model yet: run `python benchmarks/deploy.py "
                f"--model {model}` (guest instructions on QEMU with the generated C model; "
                "never host timing).", ""]
    out = ["Guest instructions per inference on QEMU with the generated C model "
           "(`benchmarks/results/deploy.json`; every device output equal to the integer "
           "reference):", "", "| board | policy | instructions/inference | match rate |",
           "|---|---|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["board"], r["policy"])):
        out.append(f"| {r['board']} | {r['policy']} | {r['instructions_per_inference']:,} | "
                   f"{r['match_rate']:.4f} |")
    if image:
        out += ["", f"![instructions per inference]({image})"]
    return out + [""]
